"""The pipeline on Apache Kafka and PostgreSQL: events in, memberships out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.settings import Settings
from infra.store import Store
from schemas.common import derive_event_id, new_event_id
from schemas.config import CONFIG_KEY
from schemas.person import PersonHired, PersonUpdated
from schemas.segments import Program, Role, RuleAction, Segment
from workers.config_file import ConfigFile, RuleEntry
from workers.demo import worker_process
from workers.publishing import (
    keyed_by_person,
    publish_events,
    read_topic,
    wait_until_outbox_empty,
    wait_until_processed,
)
from workers.runtime import build_engine

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)

ENGINEERING = ConfigFile(
    programs=(Program(program_id="eng", name="Engineering mentorship"),),
    segments=(
        Segment.model_validate(
            {
                "segment_id": "engineers",
                "definition": {
                    "all": [
                        {"attribute": "title", "operator": "eq", "value": "Engineer"}
                    ]
                },
            }
        ),
        Segment.model_validate(
            {
                "segment_id": "seniors",
                "definition": {
                    "all": [
                        {
                            "attribute": "title",
                            "operator": "starts_with",
                            "value": "senior",
                        }
                    ]
                },
            }
        ),
    ),
    rules=(
        RuleEntry(
            rule_id="eng-mentees",
            action=RuleAction.ADD,
            program="eng",
            role=Role.MENTEE,
            segment="engineers",
        ),
        RuleEntry(
            rule_id="eng-mentors",
            action=RuleAction.ADD,
            program="eng",
            role=Role.MENTOR,
            segment="seniors",
        ),
        RuleEntry(
            rule_id="eng-graduates",
            action=RuleAction.REMOVE,
            program="eng",
            role=Role.MENTEE,
            segment="seniors",
        ),
    ),
)


def publish_config(
    settings: Settings, producer: Any, store: Store, config: ConfigFile
) -> None:
    keyed = [(CONFIG_KEY, config.to_event())]
    ids = publish_events(producer, settings.kafka.config_topic, keyed)
    wait_until_processed(store, ids)


def publish_people(
    settings: Settings, producer: Any, store: Store, *events: Any
) -> None:
    ids = publish_events(producer, settings.kafka.person_topic, keyed_by_person(events))
    wait_until_processed(store, ids)
    wait_until_outbox_empty(store)


def membership_events(settings: Settings) -> list[dict[str, Any]]:
    return read_topic(settings.kafka, settings.kafka.membership_topic, idle_timeout_s=2)


def summary(event: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        event["type"],
        event["program_id"],
        event["role"],
        event["person_id"],
        event["decided_by"],
    )


def memberships(store: Store) -> set[tuple[str, Role, str, str]]:
    with store.transaction() as tx:
        return {
            (row.program_id, row.role, row.person_id, row.decided_by)
            for row in tx.members("eng")
        }


@pytest.fixture
def hire() -> PersonHired:
    return PersonHired(
        event_id=new_event_id(),
        occurred_at=T0,
        person_id="p-1",
        attributes={
            "title": "Engineer",
            "department": "R&D",
            "hire_date": "2026-05-01",
        },
    )


@pytest.fixture
def promotion() -> PersonUpdated:
    return PersonUpdated(
        event_id=new_event_id(),
        occurred_at=T0 + timedelta(days=30),
        person_id="p-1",
        changes={"title": "Senior Engineer"},
    )


def test_hire_and_title_change_publish_the_exact_membership_events(
    settings, store, producer, worker_factory, hire, promotion
):
    worker_factory()
    publish_config(settings, producer, store, ENGINEERING)

    publish_people(settings, producer, store, hire)
    publish_people(settings, producer, store, promotion)

    events = membership_events(settings)
    # One event's decisions come in (program, role) order.
    assert [summary(event) for event in events] == [
        ("membership.added", "eng", "mentee", "p-1", "eng-mentees"),
        ("membership.removed", "eng", "mentee", "p-1", "eng-graduates"),
        ("membership.added", "eng", "mentor", "p-1", "eng-mentors"),
    ]
    assert [event["cause_event_id"] for event in events] == [
        hire.event_id,
        promotion.event_id,
        promotion.event_id,
    ]
    assert events[0]["event_id"] == derive_event_id(
        hire.event_id, "eng", "mentee", "p-1", "membership.added"
    )
    assert memberships(store) == {("eng", Role.MENTOR, "p-1", "eng-mentors")}
    with store.transaction() as tx:
        person = tx.load_person("p-1", for_update=False)
    assert person is not None
    assert person.attributes["title"] == "Senior Engineer"
    assert person.attributes["department"] == "R&D"


def test_a_redelivered_event_changes_nothing_and_a_sweep_after_changes_nothing(
    settings, store, producer, worker_factory, hire, promotion
):
    worker_factory()
    publish_config(settings, producer, store, ENGINEERING)
    publish_people(settings, producer, store, hire, promotion)
    before_events = membership_events(settings)
    before_rows = memberships(store)

    # The same events again, as a redelivery would bring them, then an event
    # behind them in the same partition to know they were consumed.
    marker = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=T0 + timedelta(days=40),
        person_id="p-1",
        changes={"location": "Lyon"},
    )
    publish_people(settings, producer, store, hire, promotion, marker)

    assert membership_events(settings) == before_events
    assert memberships(store) == before_rows
    with store.transaction() as tx:
        outcomes = tx.outcome_counts()
    assert outcomes == {"applied": 3 + 1}

    result = build_engine(settings, store).sweep()
    assert result is not None
    assert (result.persons, result.changes) == (1, 0)
    assert memberships(store) == before_rows


def test_an_older_update_arriving_late_is_ignored_as_stale(
    settings, store, producer, worker_factory, hire, promotion
):
    worker_factory()
    publish_config(settings, producer, store, ENGINEERING)
    late = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=T0 + timedelta(days=10),
        person_id="p-1",
        changes={"title": "Engineer"},
    )
    publish_people(settings, producer, store, hire, promotion, late)

    assert memberships(store) == {("eng", Role.MENTOR, "p-1", "eng-mentors")}
    with store.transaction() as tx:
        assert tx.outcome_counts()["stale"] == 1


def test_invalid_input_is_dead_lettered_verbatim_and_the_worker_carries_on(
    settings, store, producer, worker_factory, hire
):
    worker_factory()
    publish_config(settings, producer, store, ENGINEERING)
    producer.send(settings.kafka.person_topic, key="p-1", value=b"{not json")
    publish_people(settings, producer, store, hire)

    letters = read_topic(settings.kafka, settings.kafka.dead_letter_topic, 2)
    assert len(letters) == 1
    assert letters[0]["payload"] == "{not json"
    assert letters[0]["source_topic"] == settings.kafka.person_topic
    assert letters[0]["error"].startswith("invalid event")
    assert memberships(store) == {("eng", Role.MENTEE, "p-1", "eng-mentees")}


def wait_for_zero_lag(cli_factory: Any) -> None:
    # faust commits offsets every few seconds, not per event.
    deadline = time.monotonic() + 60
    while (shown := cli_factory("lag", "--max-lag", "0")).returncode != 0:
        assert time.monotonic() < deadline, shown.stdout
        time.sleep(1)


def test_every_consumed_offset_is_committed_whatever_the_event_came_to(
    settings, store, producer, worker_factory, cli_factory, hire, promotion
):
    worker_factory()
    publish_config(settings, producer, store, ENGINEERING)
    publish_people(settings, producer, store, hire, promotion)
    # A commit on p-1's partition first: faust's first commit of a partition
    # skips records left unacknowledged before it, and any later one skips a
    # single such record, so only two in a row behind a commit show one.
    wait_for_zero_lag(cli_factory)

    def update(days: int, **changes: Any) -> PersonUpdated:
        return PersonUpdated(
            event_id=new_event_id(),
            occurred_at=T0 + timedelta(days=days),
            person_id="p-1",
            changes=changes,
        )

    # Two in a row of each outcome that changes no membership.
    unrelated = [update(40, location="Lyon"), update(41, location="Paris")]
    stale = [update(1, title="Engineer"), update(2, title="Engineer")]
    topic = settings.kafka.person_topic
    publish_events(producer, topic, keyed_by_person([*unrelated, *stale]))
    # Redelivered, then invalid.
    publish_events(producer, topic, keyed_by_person([hire, promotion]))
    for _ in range(2):
        producer.send(topic, key="p-1", value=b"{not json").get(timeout=30)
    last = update(42, location="Nantes")
    publish_people(settings, producer, store, last)

    with store.transaction() as tx:
        outcomes = tx.outcome_counts()
    # The config, the hire, the promotion, three unrelated changes.
    assert outcomes == {"applied": 6, "stale": 2, "dead_letter": 2}
    wait_for_zero_lag(cli_factory)


def test_the_worker_sweeps_on_its_cadence_and_repairs_drift(
    settings, store, producer, hire, tmp_path
):
    swept_often = Settings(
        settings.postgres,
        settings.kafka,
        settings.worker.model_copy(update={"sweep_interval_s": 1.0}),
    )
    with worker_process(swept_often, tmp_path / "worker.log"):
        publish_config(settings, producer, store, ENGINEERING)
        publish_people(settings, producer, store, hire)
        # Drift: the membership disappears behind the engine's back.
        with store.transaction() as tx:
            tx.conn.execute("DELETE FROM memberships WHERE person_id = 'p-1'")

        deadline = time.monotonic() + 60
        while not memberships(store) and time.monotonic() < deadline:
            time.sleep(0.2)
        wait_until_outbox_empty(store)

    assert memberships(store) == {("eng", Role.MENTEE, "p-1", "eng-mentees")}
    added = [summary(event) for event in membership_events(settings)]
    assert added == [("membership.added", "eng", "mentee", "p-1", "eng-mentees")] * 2
    with store.transaction() as tx:
        repaired = tx.conn.execute(
            "SELECT count(*) FROM sweeps WHERE changes = 1"
        ).fetchone()
    assert repaired == (1,)
