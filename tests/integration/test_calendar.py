"""The calendar's work: backlogs of held events and flips, and its lock order."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from infra.settings import KafkaSettings, Settings
from infra.store import Store
from schemas.config import CONFIG_KEY
from schemas.person import PersonUpdated
from tests.integration.test_lifecycle import (
    BUDDIES,
    DAY,
    HIRED_ON,
    feed,
    hire,
    members,
    timers,
)
from workers.clock import BusinessClock
from workers.demo import worker_process
from workers.engine import Engine
from workers.publishing import keyed_by_person, publish_events, wait_until_processed

WRITTEN = datetime(2026, 2, 20, 9, tzinfo=UTC)


def engine_on(store: Store, today: date) -> Engine:
    clock = BusinessClock(ZoneInfo("Europe/Paris"), as_of=today)
    return Engine(store, KafkaSettings(), clock)


def configure(store: Store) -> None:
    engine = engine_on(store, HIRED_ON)
    assert feed(engine, BUDDIES.to_event(), "mentorflow.config") == "applied"


def hire_ahead(store: Store, person_ids: list[str]) -> None:
    """Hire persons who enter the new-hire segment on HIRED_ON, by their timer."""
    engine = engine_on(store, HIRED_ON - 10 * DAY)
    for person_id in person_ids:
        assert feed(engine, hire(person_id)) == "applied"


def test_every_missed_flip_is_applied_by_one_call_past_its_limit(store):
    configure(store)
    person_ids = [f"p{n}" for n in range(5)]
    hire_ahead(store, person_ids)

    changes = engine_on(store, HIRED_ON + 14 * DAY).apply_due_flips(limit=2)

    assert changes == 5
    assert set(members(store)) == set(person_ids)


def test_the_flip_limit_counts_persons_not_changes(store):
    configure(store)
    engine = engine_on(store, HIRED_ON)
    person_ids = [f"p{n}" for n in range(3)]
    for person_id in person_ids:
        feed(engine, hire(person_id))
    assert set(timers(store)) == set(person_ids)

    # Day 31: out of the new-hire segment, but only an add rule exists, so no
    # membership changes; the timers must still all be worked off.
    assert engine_on(store, HIRED_ON + 31 * DAY).apply_due_flips(limit=1) == 0

    assert timers(store) == {}


def test_every_due_held_event_is_released_by_one_call_past_its_limit(store):
    configure(store)
    engine = engine_on(store, HIRED_ON)
    for n in range(3):
        feed(engine, hire(f"p{n}").model_copy(update={"occurred_at": WRITTEN}))
        for attribute in ("title", "department"):
            held = PersonUpdated(
                event_id=f"e-{n}-{attribute}",
                occurred_at=WRITTEN + DAY,
                person_id=f"p{n}",
                effective_at=HIRED_ON + (n + 1) * DAY,
                changes={attribute: f"{attribute}-{n}"},
            )
            assert feed(engine, held) == "held"

    released = engine_on(store, HIRED_ON + 14 * DAY).release_due_events(limit=1)

    assert released == 6
    with store.transaction() as tx:
        rows = tx.conn.execute(
            "SELECT person_id, attributes->>'title', attributes->>'department'"
            " FROM persons ORDER BY person_id"
        ).fetchall()
        left = tx.conn.execute("SELECT count(*) FROM held_events").fetchone()
    assert rows == [(f"p{n}", f"title-{n}", f"department-{n}") for n in range(3)]
    assert left == (0,)


def test_due_flips_lock_the_person_before_its_timer(store, database_url):
    configure(store)
    hire_ahead(store, ["p1"])

    with (
        psycopg.connect(database_url) as batch,
        psycopg.connect(database_url, autocommit=True) as observer,
        ThreadPoolExecutor(1) as thread,
    ):
        # Long enough for PostgreSQL's deadlock check (1 s), short enough
        # that a regression fails rather than hangs.
        batch.execute("SET lock_timeout = '10s'")
        # As a person batch does: the person first, then the person's timer.
        batch.execute("SELECT 1 FROM persons WHERE person_id = 'p1' FOR UPDATE")
        flips = thread.submit(engine_on(store, HIRED_ON).apply_due_flips)
        _wait_for_a_lock_wait(observer)
        batch.execute("UPDATE person_timers SET due_on = due_on WHERE person_id = 'p1'")
        batch.commit()

        assert flips.result(timeout=30) == 1
    assert members(store) == {"p1": "add-new-hires"}


def _wait_for_a_lock_wait(conn: psycopg.Connection[tuple[int]]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.02)
    raise AssertionError("the flips never waited for the person's lock")


def on_day(settings: Settings, today: date) -> Settings:
    """The test's settings on another day, with no calendar pass after the first."""
    worker = settings.worker.model_copy(
        update={"as_of": today, "calendar_interval_s": 3600.0}
    )
    return Settings(settings.postgres, settings.kafka, worker)


def test_a_worker_applies_what_fell_due_while_none_ran_as_it_starts(
    settings: Settings, store: Store, producer, tmp_path: Path
):
    kafka = settings.kafka
    before = on_day(settings, HIRED_ON)
    # p1 is hired in ten days: a timer; p2 becomes a contractor in three: held.
    later_hire = hire("p1", hired_on=HIRED_ON + 10 * DAY)
    p2 = hire("p2", hired_on=HIRED_ON - 5 * DAY).model_copy(
        update={"occurred_at": WRITTEN}
    )
    contracting = PersonUpdated(
        event_id="e-contract",
        occurred_at=WRITTEN + DAY,
        person_id="p2",
        effective_at=HIRED_ON + 3 * DAY,
        changes={"type": "contractor"},
    )
    with worker_process(before, tmp_path / "before.log"):
        ids = publish_events(
            producer, kafka.config_topic, [(CONFIG_KEY, BUDDIES.to_event())]
        )
        wait_until_processed(store, ids)
        people = keyed_by_person([later_hire, p2, contracting])
        wait_until_processed(
            store, publish_events(producer, kafka.person_topic, people)
        )
    assert members(store) == {"p2": "add-new-hires"}
    assert timers(store)["p1"] == HIRED_ON + 10 * DAY

    # No worker ran across both dates; the next one applies both as it starts,
    # long before its next calendar pass or its first sweep.
    with worker_process(on_day(settings, HIRED_ON + 14 * DAY), tmp_path / "after.log"):
        deadline = time.monotonic() + 60
        while members(store) != {"p1": "add-new-hires"}:
            assert time.monotonic() < deadline, members(store)
            time.sleep(0.2)

    with store.transaction() as tx:
        sweeps = tx.conn.execute("SELECT count(*) FROM sweeps").fetchone()
        held = tx.conn.execute("SELECT count(*) FROM held_events").fetchone()
    assert (sweeps, held) == ((0,), (0,))
