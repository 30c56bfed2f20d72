"""Config changes at scale and with a large blast radius, on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import workers.engine
from infra.settings import KafkaSettings
from infra.store import SourcePosition, Store
from schemas.common import EventBase, new_event_id
from schemas.config import ConfigConfirmed
from schemas.person import PersonSnapshot
from schemas.segments import Program, Role, RuleAction, Segment
from workers.clock import BusinessClock
from workers.config_file import ConfigFile, RuleEntry
from workers.engine import Engine

TODAY = date(2026, 6, 1)
PEOPLE = 25


def everyone_in(department: str) -> Segment:
    condition = {"attribute": "department", "operator": "eq", "value": department}
    return Segment.model_validate(
        {"segment_id": f"in-{department}", "definition": {"all": [condition]}}
    )


def rule(rule_id: str, action: RuleAction, segment: str) -> RuleEntry:
    return RuleEntry(
        rule_id=rule_id,
        action=action,
        program="guild",
        role=Role.MENTEE,
        segment=segment,
    )


ADD_ENGINEERS = ConfigFile(
    programs=(Program(program_id="guild"),),
    segments=(everyone_in("eng"), everyone_in("ops")),
    rules=(rule("add-eng", RuleAction.ADD, "in-eng"),),
)
# Appends a remove rule matching most of the guild.
REMOVE_OPS = ConfigFile(
    programs=ADD_ENGINEERS.programs,
    segments=ADD_ENGINEERS.segments,
    rules=(
        rule("add-eng", RuleAction.ADD, "in-eng"),
        rule("remove-ops", RuleAction.REMOVE, "in-ops"),
    ),
)


def engine(store: Store, share: float = 1.0) -> Engine:
    clock = BusinessClock(ZoneInfo("UTC"), as_of=TODAY)
    return Engine(
        store,
        KafkaSettings(),
        clock,
        blast_radius_share=share,
        blast_radius_min_removals=5,
    )


def feed(engine: Engine, event: EventBase, offset: int) -> str:
    raw = json.dumps(event.model_dump(mode="json")).encode()
    position = SourcePosition("t", 0, offset)
    if isinstance(event, PersonSnapshot):
        return engine.handle_person_record(raw, None, position).kind
    return engine.handle_config_record(raw, b"config", position).kind


def load_people(engine: Engine) -> None:
    for number in range(PEOPLE):
        attributes: dict[str, Any] = {"department": "eng", "team": "a"}
        snapshot = PersonSnapshot(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id=f"p{number:03d}",
            attributes=attributes,
        )
        feed(engine, snapshot, number)


def move_to_ops(store: Store, numbers: Iterable[int]) -> None:
    # Written straight to the store: no event re-evaluates these people, so
    # only the config change under test can change their membership.
    with store.transaction() as tx:
        for number in numbers:
            state = tx.load_person(f"p{number:03d}")
            assert state is not None
            tx.save_person(replace(state, attributes={"department": "ops"}))


def members(store: Store) -> list[str]:
    with store.transaction() as tx:
        return [row.person_id for row in tx.members("guild")]


def test_a_config_change_is_applied_chunk_by_chunk_and_resumes_after_a_crash(
    store, monkeypatch
):
    monkeypatch.setattr(workers.engine, "PERSON_CHUNK", 4)
    subject = engine(store)
    load_people(subject)

    # The crash comes right after the config change committed, before any
    # chunk of the re-evaluation ran.
    monkeypatch.setattr(subject, "run_reevaluations", lambda: 0)
    assert feed(subject, ADD_ENGINEERS.to_event(), 100) == "applied"
    assert members(store) == []
    monkeypatch.undo()
    monkeypatch.setattr(workers.engine, "PERSON_CHUNK", 4)

    # A restarted worker picks the job up where it stood.
    assert subject.run_reevaluations() == PEOPLE
    assert len(members(store)) == PEOPLE
    assert subject.run_reevaluations() == 0
    with store.transaction() as tx:
        assert tx.next_reevaluation() is None


def test_a_change_removing_too_many_members_is_held_until_confirmed(store):
    subject = engine(store, share=0.5)
    load_people(subject)
    feed(subject, ADD_ENGINEERS.to_event(), 100)
    assert len(members(store)) == PEOPLE
    move_to_ops(store, range(5, PEOPLE))

    removal = REMOVE_OPS.to_event()
    assert feed(subject, removal, 101) == "held"
    assert len(members(store)) == PEOPLE
    with store.transaction() as tx:
        ((event_id, report, _),) = tx.held_configs()
        assert [rule.rule_id for rule in tx.load_rules()] == ["add-eng"]
    assert event_id == removal.event_id
    assert report == {"guild": {"removals": 20, "members": PEOPLE}}

    confirmation = ConfigConfirmed(
        event_id=new_event_id(), occurred_at=datetime.now(UTC), held_event_id=event_id
    )
    assert feed(subject, confirmation, 102) == "applied"
    assert members(store) == [f"p{number:03d}" for number in range(5)]
    with store.transaction() as tx:
        assert tx.held_configs() == []


def test_the_guard_counts_exactly_the_members_the_change_then_removes(store):
    subject = engine(store, share=0.1)
    load_people(subject)
    feed(subject, ADD_ENGINEERS.to_event(), 100)
    hired = {"recently": TODAY - timedelta(days=30), "long ago": date(2020, 1, 1)}
    with store.transaction() as tx:
        for number in range(PEOPLE):
            state = tx.load_person(f"p{number:03d}")
            assert state is not None
            title = ["Sr. Engineer", "Senior  engineer", "Engineer"][number % 3]
            hire_date = hired["recently" if number % 2 else "long ago"].isoformat()
            attributes = {**state.attributes, "title": title}
            tx.save_person(replace(state, attributes={**attributes, "hire": hire_date}))
        # As migrations leave them: computed again before any SQL reads them.
        tx.conn.execute("UPDATE persons SET search = NULL WHERE person_id < 'p010'")
    seniors = Segment.model_validate(
        {
            "segment_id": "new-seniors",
            "aliases": {"Sr.": "Senior"},
            "definition": {
                "all": [
                    {
                        "attribute": "title",
                        "operator": "eq",
                        "value": "senior engineer",
                    },
                    {"attribute": "hire", "operator": "within_last", "value": 30},
                ]
            },
        }
    )
    change = ConfigFile(
        programs=ADD_ENGINEERS.programs,
        segments=(*ADD_ENGINEERS.segments, seniors),
        rules=(
            rule("add-eng", RuleAction.ADD, "in-eng"),
            rule("remove-new-seniors", RuleAction.REMOVE, "new-seniors"),
        ),
    ).to_event()

    assert feed(subject, change, 101) == "held"
    with store.transaction() as tx:
        ((event_id, report, _),) = tx.held_configs()
    confirmation = ConfigConfirmed(
        event_id=new_event_id(), occurred_at=datetime.now(UTC), held_event_id=event_id
    )
    assert feed(subject, confirmation, 102) == "applied"

    removed = PEOPLE - len(members(store))
    # Odd numbers hired recently, two titles in three senior once aliased.
    assert removed == sum(1 for n in range(PEOPLE) if n % 2 and n % 3 != 2)
    assert report == {"guild": {"removals": removed, "members": PEOPLE}}


def test_a_held_change_cannot_be_confirmed_once_the_config_changed(store):
    subject = engine(store, share=0.5)
    load_people(subject)
    feed(subject, ADD_ENGINEERS.to_event(), 100)
    move_to_ops(store, range(5, PEOPLE))
    removal = REMOVE_OPS.to_event()
    assert feed(subject, removal, 101) == "held"
    with store.transaction() as tx:
        assert tx.stale_held_configs() == set()

    # A newer file, applied meanwhile, keeps the guild as it is.
    newer = ConfigFile(
        programs=ADD_ENGINEERS.programs,
        segments=ADD_ENGINEERS.segments,
        rules=(rule("add-eng", RuleAction.ADD, "in-eng"),),
    )
    assert feed(subject, newer.to_event(), 102) == "applied"
    confirmation = ConfigConfirmed(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        held_event_id=removal.event_id,
    )

    assert feed(subject, confirmation, 103) == "dead_letter"
    assert len(members(store)) == PEOPLE
    with store.transaction() as tx:
        assert [rule.rule_id for rule in tx.load_rules()] == ["add-eng"]
        assert tx.stale_held_configs() == {removal.event_id}
        (row,) = tx.conn.execute(
            "SELECT payload->>'error' FROM outbox"
            " WHERE payload->>'type' = 'dead_letter'"
            " AND payload->>'source_offset' = '103'"
        ).fetchall()
    assert "configuration has changed since" in row[0]


def test_confirming_nothing_held_is_dead_lettered(store):
    subject = engine(store, share=0.5)
    confirmation = ConfigConfirmed(
        event_id=new_event_id(), occurred_at=datetime.now(UTC), held_event_id="nope"
    )
    assert feed(subject, confirmation, 1) == "dead_letter"


@pytest.mark.parametrize(("share", "moved"), [(1.0, 20), (0.5, 12), (0.5, 4), (0.1, 4)])
def test_a_change_within_the_blast_radius_is_applied_at_once(store, share, moved):
    # 12 of 25 is within half; 4 removals are below the minimum of 5.
    subject = engine(store, share=share)
    load_people(subject)
    feed(subject, ADD_ENGINEERS.to_event(), 100)
    move_to_ops(store, range(moved))

    assert feed(subject, REMOVE_OPS.to_event(), 101) == "applied"
    assert len(members(store)) == PEOPLE - moved
