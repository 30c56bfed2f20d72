"""The batched person path: one transaction a batch, the per-record path's effect."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from infra import bulk
from infra.settings import KafkaSettings, Settings
from infra.store import SourcePosition, Store
from rules.person_state import PersonState, PersonStatus
from rules.search import search_document
from schemas.common import EventBase, new_event_id
from schemas.config import CONFIG_KEY
from schemas.person import PersonHired, PersonUpdated
from tests.fix_worker import TEST_TODAY
from tests.integration.workload import CONFIG, T0, generate_events, oracle
from workers import app as worker_app
from workers import batch as batch_module
from workers.batch import BatchTurn, PersonRecord
from workers.clock import BusinessClock
from workers.engine import Engine
from workers.engine_process import EngineProcess
from workers.errors import AgentFailedError, InvalidRecordError, PredecessorFailedError
from workers.health import Health
from workers.metrics import WorkerMetrics

TOPIC = "hr.person-events"
_offsets = itertools.count()


def build_engine(store: Store) -> Engine:
    clock = BusinessClock(ZoneInfo("UTC"), as_of=TEST_TODAY)
    return Engine(store, KafkaSettings(), clock)


def record(event: EventBase | bytes, key: str | None = None) -> PersonRecord:
    if isinstance(event, bytes):
        raw = event
    else:
        raw = json.dumps(event.model_dump(mode="json", by_alias=True)).encode()
        # Person events are keyed by their person.
        key = key or getattr(event, "person_id", None)
    encoded = None if key is None else key.encode()
    return PersonRecord(raw, encoded, SourcePosition(TOPIC, 0, next(_offsets)))


def person_agent_wiring(
    engine: Engine, engine_process: EngineProcess | None = None
) -> worker_app.Wiring:
    """What the person agent's batch handling needs, without a relay."""
    return worker_app.Wiring(
        Settings(),
        engine,
        cast(Any, None),
        Health((worker_app.PERSON_AGENT,)),
        WorkerMetrics(),
        engine_process=engine_process,
    )


def configure(engine: Engine) -> None:
    raw = json.dumps(CONFIG.to_event().model_dump(mode="json")).encode()
    position = SourcePosition("mentorflow.config", 0, next(_offsets))
    outcome = engine.handle_config_record(raw, CONFIG_KEY.encode(), position)
    assert outcome.kind == "applied"


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a person event can change, with the instants left out."""
    with store.transaction() as tx:
        conn = tx.conn
        return {
            "persons": conn.execute(
                "SELECT person_id, attributes, search, status, version_at,"
                " version_event_id FROM persons ORDER BY person_id"
            ).fetchall(),
            "members": conn.execute(
                "SELECT program_id, role, person_id, source, decided_by,"
                " cause_event_id FROM memberships ORDER BY 1, 2, 3"
            ).fetchall(),
            "outbox": [
                (row[0], row[1]["event_id"], row[1].get("person_id"))
                for row in conn.execute(
                    "SELECT topic, payload FROM outbox ORDER BY id"
                ).fetchall()
            ],
            "audit": conn.execute(
                "SELECT kind, subject, cause_event_id FROM audit_log"
                " WHERE kind <> 'config.applied' ORDER BY kind, subject, cause_event_id"
            ).fetchall(),
            "processed": conn.execute(
                "SELECT event_id, outcome FROM processed_events"
                " WHERE topic = %s ORDER BY event_id",
                (TOPIC,),
            ).fetchall(),
            "timers": conn.execute(
                "SELECT person_id, due_on FROM person_timers ORDER BY person_id"
            ).fetchall(),
            "held": conn.execute(
                "SELECT event_id, person_id, due_on FROM held_events ORDER BY 1"
            ).fetchall(),
        }


def outbox_by_person(store: Store) -> dict[str, list[str]]:
    with store.transaction() as tx:
        rows = tx.fetch_outbox(100_000)
    order: dict[str, list[str]] = {}
    for row in rows:
        event = row.decoded()
        if "person_id" in event:
            order.setdefault(event["person_id"], []).append(event["event_id"])
    return order


def chunks(items: Sequence[PersonRecord], size: int) -> Iterator[list[PersonRecord]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def test_batches_leave_what_the_per_record_path_leaves_on_the_workload(
    store, other_store
):
    events = generate_events(seed=11)
    records = [record(event, event.person_id) for event in events]
    batched, single = build_engine(store), build_engine(other_store)
    configure(batched)
    configure(single)

    batch_kinds = [
        outcome.kind
        for chunk in chunks(records, 173)
        for outcome in batched.handle_person_batch(chunk)
    ]
    single_kinds = [single.handle_person_record(*r).kind for r in records]

    assert batch_kinds == single_kinds
    assert {"applied", "stale", "duplicate"} <= set(batch_kinds)
    assert snapshot(store) == snapshot(other_store)
    expected = oracle(events)
    assert outbox_by_person(store) == expected.event_ids


def test_a_redelivered_batch_changes_nothing(store):
    engine = build_engine(store)
    configure(engine)
    records = [record(event, event.person_id) for event in generate_events(seed=5)]
    records.append(record(b"not json at all"))
    first = engine.handle_person_batch(records[:1500])
    assert "dead_letter" not in {o.kind for o in first}
    engine.handle_person_batch(records[1500:])
    before = snapshot(store)

    again = engine.handle_person_batch(records[1000:2000])
    again += engine.handle_person_batch(records[2000:])

    assert {outcome.kind for outcome in again} == {"duplicate"}
    assert snapshot(store) == before


def test_invalid_records_of_a_batch_are_dead_lettered_alone(store):
    engine = build_engine(store)
    configure(engine)
    good = hire("p1", level=5)
    records = [record(good), record(b'{"type": "person.hired"}'), record(b"\xff")]
    records.append(record(hire("p2", level=1)))

    kinds = [outcome.kind for outcome in engine.handle_person_batch(records)]

    assert kinds == ["applied", "dead_letter", "dead_letter", "applied"]
    state = snapshot(store)
    assert {m[2] for m in state["members"]} == {"p1", "p2"}
    letters = [row for row in state["outbox"] if row[0] == "mentorflow.dead-letter"]
    assert len(letters) == 2


def test_a_person_s_events_apply_in_order_within_one_batch(store):
    engine = build_engine(store)
    configure(engine)
    at = itertools.count(1)
    steps = [
        hire("p1", level=5, at=next(at)),
        update("p1", {"department": "support"}, at=next(at)),
        hire("p9", level=1, at=next(at)),
        # Older than what p1's record holds by then: stale, ignored.
        update("p1", {"department": "eng"}, at=0),
        update("p1", {"department": "eng"}, at=next(at)),
        update("p1", {"level": 1}, at=next(at)),
    ]

    kinds = [o.kind for o in engine.handle_person_batch([record(e) for e in steps])]

    assert kinds == ["applied", "applied", "applied", "stale", "applied", "applied"]
    with store.transaction() as tx:
        payloads = [row.decoded() for row in tx.fetch_outbox(100)]
        members = {
            (m.role.value, m.person_id, m.decided_by) for m in tx.members("guild")
        }
    p1 = [
        (p["type"], p["role"], p["cause_event_id"])
        for p in payloads
        if p["person_id"] == "p1"
    ]
    assert p1 == [
        ("membership.added", "mentor", steps[0].event_id),
        ("membership.removed", "mentor", steps[1].event_id),
        ("membership.added", "mentor", steps[4].event_id),
        # Rules never undo themselves: leaving "senior" keeps the mentor role.
        ("membership.added", "mentee", steps[5].event_id),
    ]
    assert members == {
        ("mentor", "p1", "mentor-seniors"),
        ("mentee", "p1", "mentee-juniors"),
        ("mentee", "p9", "mentee-juniors"),
    }


def test_a_batch_that_fails_falls_back_and_dead_letters_only_the_poisoned_record(
    store, monkeypatch, caplog
):
    engine = build_engine(store)
    configure(engine)
    real_decide = batch_module.decide

    def poisoned_decide(ruleset: Any, state: PersonState, *args: Any) -> Any:
        if state.person_id == "poison":
            raise ZeroDivisionError("a bug that only this person's data reaches")
        return real_decide(ruleset, state, *args)

    monkeypatch.setattr(batch_module, "decide", poisoned_decide)
    monkeypatch.setattr("workers.engine.decide", poisoned_decide)
    monkeypatch.setattr(worker_app, "backoff_s", lambda failures: 0.0)
    wiring = person_agent_wiring(engine)
    records = [record(hire(p, level=5)) for p in ("p1", "poison", "p2")]

    with caplog.at_level(logging.INFO):
        outcomes = asyncio.run(worker_app._handle_batch(wiring, records))

    assert [o.kind for o in outcomes] == ["applied", "dead_letter", "applied"]
    state = snapshot(store)
    assert {m[2] for m in state["members"]} == {"p1", "p2"}
    assert [row[0] for row in state["outbox"]].count("mentorflow.dead-letter") == 1
    with store.transaction() as tx:
        letters = [row.decoded() for row in tx.fetch_outbox(100)]
    [letter] = [row for row in letters if row.get("type") == "dead_letter"]
    assert letter["error"].startswith("processing failed 3 times: ZeroDivisionError")
    # The exception's own words might quote the data: they stay out of the log.
    assert "ZeroDivisionError" in caplog.text
    assert "only this person" not in caplog.text + letter["error"]


def run_overlapped(
    engine: Engine, batches: Sequence[list[PersonRecord]]
) -> list[list[Any]]:
    """Run batches three at a time, as the worker does, chained by their turns."""
    turns = [BatchTurn() for _ in batches]
    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(
                engine.handle_person_batch,
                batch,
                after=tuple(turns[:index]),
                turn=turns[index],
            )
            for index, batch in enumerate(batches)
        ]
        return [[outcome.kind for outcome in f.result()] for f in futures]


def test_batches_run_at_once_leave_what_one_after_the_other_leaves(store, other_store):
    events = generate_events(seed=11)
    records = [record(event, event.person_id) for event in events]
    overlapped, sequential = build_engine(store), build_engine(other_store)
    configure(overlapped)
    configure(sequential)

    kinds = run_overlapped(overlapped, list(chunks(records, 97)))
    expected_kinds = [
        [o.kind for o in sequential.handle_person_batch(chunk)]
        for chunk in chunks(records, 97)
    ]

    assert kinds == expected_kinds
    overlapped_state, sequential_state = snapshot(store), snapshot(other_store)
    # Each person's events keep their order; persons may interleave otherwise.
    for state in (overlapped_state, sequential_state):
        state["outbox"] = sorted(state["outbox"])
    assert overlapped_state == sequential_state
    assert outbox_by_person(store) == oracle(events).event_ids


def test_a_person_the_batch_before_names_waits_for_its_commit_the_others_do_not(
    store,
):
    engine = build_engine(store)
    configure(engine)
    held_back, first_turn, second_turn = BatchTurn(), BatchTurn(), BatchTurn()
    # The first batch's hire of p1 waits for held_back, which names p1 too.
    held_back.mark_decoded(frozenset({"p1"}))
    first = [record(hire("p1", level=5, at=1))]
    second = [
        record(update("p1", {"level": 1}, at=2)),
        record(hire("p2", level=5, at=2)),
    ]

    with ThreadPoolExecutor(2) as pool:
        creating = pool.submit(
            engine.handle_person_batch, first, after=(held_back,), turn=first_turn
        )
        following = pool.submit(
            engine.handle_person_batch, second, after=(first_turn,), turn=second_turn
        )
        deadline = time.monotonic() + 10
        while "p2" not in {row[0] for row in snapshot(store)["persons"]}:
            assert time.monotonic() < deadline, "p2 waited for the batch before"
            time.sleep(0.05)
        assert not following.done()
        assert snapshot(store)["persons"] == [snapshot(store)["persons"][0]]
        held_back.mark_settled(committed=True)
        kinds = [o.kind for o in creating.result() + following.result()]

    assert kinds == ["applied", "applied", "applied"]
    state = snapshot(store)
    assert [row[:2] for row in state["persons"]] == [
        ("p1", {"department": "eng", "level": 1}),
        ("p2", {"department": "eng", "level": 5}),
    ]
    # p1: a senior mentor by the hire, then also a junior mentee by the update.
    assert {(m[1], m[2]) for m in state["members"]} == {
        ("mentor", "p1"),
        ("mentee", "p1"),
        ("mentor", "p2"),
    }


def test_when_a_batch_fails_the_events_of_its_persons_after_it_give_up_too(store):
    engine = build_engine(store)
    configure(engine)
    engine.handle_person_batch([record(hire("p1", level=5))])
    before = snapshot(store)["persons"]
    failing, first_turn, second_turn = BatchTurn(), BatchTurn(), BatchTurn()
    failing.mark_decoded(frozenset({"p1"}))

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            engine.handle_person_batch,
            [record(update("p1", {"level": 1}, at=5))],
            after=(failing,),
            turn=first_turn,
        )
        second = pool.submit(
            engine.handle_person_batch,
            [record(update("p1", {"level": 2}, at=6)), record(hire("p2", level=5))],
            after=(first_turn,),
            turn=second_turn,
        )
        failing.mark_settled(committed=False)
        for future in (first, second):
            with pytest.raises(PredecessorFailedError):
                future.result()

    # p2's hire did not wait for anyone; p1's updates were all rolled back.
    persons = snapshot(store)["persons"]
    assert persons[0] == before[0]
    assert [row[0] for row in persons] == ["p1", "p2"]


def earlier_batch(task: asyncio.Future[Any]) -> Any:
    """A batch taken before the one under test, handled by task."""
    return worker_app._InFlight([], [], task, BatchTurn(), 0.0)


def refuse_batches(engine: Engine, error: Exception) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise error

    engine.handle_person_batch = refuse  # type: ignore[method-assign]


def test_a_batch_after_one_left_unapplied_is_not_applied_either(store):
    engine = build_engine(store)
    configure(engine)
    # The batch before failed: this one's first attempt is refused after it.
    refuse_batches(engine, PredecessorFailedError("the batch before failed"))
    wiring = person_agent_wiring(engine)

    async def scenario() -> None:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("the batch before was not applied"))
        records = [record(hire("p1"))]
        with pytest.raises(AgentFailedError, match="not applied"):
            await worker_app._handle_batch(wiring, records, (earlier_batch(failed),))

    asyncio.run(scenario())
    assert snapshot(store)["persons"] == []


def test_a_batch_that_falls_back_waits_for_the_batches_before_it(store):
    engine = build_engine(store)
    configure(engine)
    # Not retriable: the batch goes one record at a time at once.
    refuse_batches(engine, InvalidRecordError("cannot be handled as a batch"))
    wiring = person_agent_wiring(engine)

    async def scenario() -> tuple[bool, list[str]]:
        running: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        records = [record(hire("p1"))]
        task = asyncio.ensure_future(
            worker_app._handle_batch(wiring, records, (earlier_batch(running),))
        )
        await asyncio.sleep(0.3)
        waited = not task.done() and snapshot(store)["persons"] == []
        running.set_result([])
        return waited, [outcome.kind for outcome in await task]

    waited, kinds = asyncio.run(scenario())
    assert waited, "the records were handled before the batch before was done"
    assert kinds == ["applied"]


def test_a_key_holding_a_nul_is_dead_lettered_with_the_key_in_base64(store):
    engine = build_engine(store)
    configure(engine)

    def hire_of(person_id: str) -> PersonRecord:
        valid = json.loads(record(hire("p0")).raw)
        raw = json.dumps({**valid, "person_id": person_id}).encode()
        return record(raw, key=person_id)

    batched = engine.handle_person_batch([record(hire("p1")), hire_of("p\x00x")])
    alone = engine.handle_person_record(*hire_of("p\x00y"))

    assert [o.kind for o in batched] == ["applied", "dead_letter"]
    assert alone.kind == "dead_letter"
    with store.transaction() as tx:
        keys = tx.conn.execute(
            "SELECT key FROM outbox WHERE topic = 'mentorflow.dead-letter' ORDER BY id"
        ).fetchall()
    assert keys == [
        (base64.b64encode(b"p\x00x").decode(),),
        (base64.b64encode(b"p\x00y").decode(),),
    ]


PARIS = ZoneInfo("Europe/Paris")
# Offsets of every sign, a zone on both sides of its DST changes, microseconds.
INSTANTS = [
    datetime(2024, 5, 1, 8, 30, 0, 123456, tzinfo=UTC),
    datetime(2024, 5, 1, 8, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
    datetime(2024, 3, 31, 1, 59, 59, 999999, tzinfo=PARIS),
    datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1),
]
AWKWARD = {
    "name": 'Zoë "Q" \\ \' \u2028 \U0001f600 \n',
    "level": 3,
    "ratio": 0.1,
    "big": 2**70,
    "flags": [True, False, None],
    "nested": {"a": [1, "2", {"b": []}]},
    "": "",
}


def test_bulk_writes_store_exactly_what_they_were_given(store):
    states = [
        PersonState(
            f"p-{i}", {**AWKWARD, "i": i}, PersonStatus.ACTIVE, at, f"e'{i}\"\\"
        )
        for i, at in enumerate(INSTANTS)
    ]
    searches = [search_document(state.attributes) for state in states]
    members = [
        bulk.MembershipRow("prog-é", "mentor", state.person_id, "rule", "r", "c", at)
        for state, at in zip(states, reversed(INSTANTS), strict=True)
    ]
    held = [
        bulk.HeldEntry("h1", "p-0", date(1, 1, 1), {"attributes": AWKWARD}),
        bulk.HeldEntry("h2", "p-1", date(9999, 12, 31), {"x": [None]}),
    ]
    with store.transaction() as tx:
        bulk.save_persons(tx.conn, states, searches)
        bulk.upsert_memberships(tx.conn, members)
        bulk.hold_events(tx.conn, held)

    with store.transaction() as tx:
        locked = bulk.lock_persons(tx.conn, [s.person_id for s in states] + ["x"])
        assert [in_utc(locked[s.person_id]) for s in states] == list(
            map(in_utc, states)
        )
        for state, search in zip(states, searches, strict=True):
            # The jsonb that json.dumps text cast to jsonb gives, key order aside.
            same = tx.conn.execute(
                "SELECT attributes = %s::jsonb AND search = %s::jsonb"
                " AND version_at = %s FROM persons WHERE person_id = %s",
                (
                    json.dumps(dict(state.attributes)),
                    json.dumps(search),
                    state.version_at,
                    state.person_id,
                ),
            ).fetchone()
            assert same == (True,)
        stored = tx.conn.execute(
            "SELECT program_id, role, person_id, source, decided_by, cause_event_id,"
            " added_at FROM memberships ORDER BY person_id"
        ).fetchall()
        assert [in_utc(bulk.MembershipRow(*row)) for row in stored] == list(
            map(in_utc, members)
        )
        assert tx.conn.execute(
            "SELECT event_id, person_id, due_on, event = %s::jsonb"
            " FROM held_events ORDER BY event_id",
            (json.dumps(held[0].event),),
        ).fetchall() == [
            ("h1", "p-0", date(1, 1, 1), True),
            ("h2", "p-1", date(9999, 12, 31), False),
        ]


def test_bulk_upserts_overwrite_deletes_remove_and_held_events_stay(store):
    at = INSTANTS[1]
    row = bulk.MembershipRow("g", "mentee", "p1", "rule", "r1", "c1", at)
    with store.transaction() as tx:
        bulk.upsert_memberships(
            tx.conn,
            [row, bulk.MembershipRow("g", "mentor", "p1", "rule", "r", "c", at)],
        )
        bulk.hold_events(tx.conn, [bulk.HeldEntry("h", "p1", date(2030, 1, 2), {})])
        bulk.set_timers(tx.conn, [("p1", date(2030, 1, 1)), ("p2", date(2030, 1, 2))])
        bulk.mark_processed(
            tx.conn, [bulk.ProcessedEntry("e\"1'", "t", 0, 1, "applied")]
        )

    again = bulk.MembershipRow("g", "mentee", "p1", "manual", "ops", "c2", INSTANTS[0])
    with store.transaction() as tx:
        bulk.upsert_memberships(tx.conn, [again])
        bulk.delete_memberships(tx.conn, [("g", "mentor", "p1"), ("g", "mentor", "p9")])
        bulk.hold_events(
            tx.conn, [bulk.HeldEntry("h", "p9", date(2031, 1, 1), {"a": 1})]
        )
        bulk.set_timers(
            tx.conn, [("p1", None), ("p2", date(2031, 1, 1)), ("p3", date(2032, 1, 1))]
        )
        bulk.set_timers(tx.conn, [])
        seen = bulk.processed_ids(tx.conn, {"e\"1'", "e2"})

    assert seen == {"e\"1'"}
    state = snapshot(store)
    assert state["members"] == [("g", "mentee", "p1", "manual", "ops", "c2")]
    assert state["held"] == [("h", "p1", date(2030, 1, 2))]
    assert state["timers"] == [("p2", date(2031, 1, 1)), ("p3", date(2032, 1, 1))]
    with store.transaction() as tx:
        assert tx.conn.execute("SELECT added_at FROM memberships").fetchall() == [
            (INSTANTS[0],)
        ]


def in_utc(row: Any) -> Any:
    """The row with its instant in UTC: Python never finds two instants of
    different zones equal when one falls in a repeated hour (PEP 495)."""
    if isinstance(row, PersonState):
        return replace(row, version_at=row.version_at.astimezone(UTC))
    return replace(row, added_at=row.added_at.astimezone(UTC))


def hire(person_id: str, at: int = 1, **attributes: Any) -> PersonHired:
    return PersonHired(
        event_id=new_event_id(),
        occurred_at=T0 + timedelta(seconds=at),
        person_id=person_id,
        attributes={"department": "eng", **attributes},
    )


def update(person_id: str, changes: dict[str, Any], at: int) -> PersonUpdated:
    return PersonUpdated(
        event_id=new_event_id(),
        occurred_at=T0 + timedelta(seconds=at),
        person_id=person_id,
        changes=changes,
    )
