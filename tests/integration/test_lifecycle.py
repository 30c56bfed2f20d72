"""Dates, lifecycle and manual membership, driven through the engine on PostgreSQL.

These tests feed records to the engine directly, as the worker's agents do, so
that they can move "today" between events; the Kafka path is covered by
test_pipeline.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from infra.settings import KafkaSettings
from infra.store import SourcePosition, Store
from schemas.common import EventBase, new_event_id
from schemas.config import ManualMembershipAdded, ManualMembershipRemoved
from schemas.person import (
    PersonDeleted,
    PersonHired,
    PersonTerminated,
    PersonUpdated,
)
from schemas.segments import Program, Role, RuleAction, Segment
from workers.batch import PersonRecord
from workers.clock import BusinessClock
from workers.config_file import ConfigFile, RuleEntry
from workers.engine import Engine

DAY = timedelta(days=1)
HIRED_ON = date(2026, 3, 1)

BUDDIES = ConfigFile(
    programs=(Program(program_id="buddies"),),
    segments=(
        Segment.model_validate(
            {
                "segment_id": "new-hires",
                "definition": {
                    "all": [
                        {
                            "attribute": "hire_date",
                            "operator": "within_last",
                            "value": 30,
                        }
                    ]
                },
            }
        ),
        Segment.model_validate(
            {
                "segment_id": "contractors",
                "definition": {
                    "all": [
                        {"attribute": "type", "operator": "eq", "value": "contractor"}
                    ]
                },
            }
        ),
    ),
    rules=(
        RuleEntry(
            rule_id="add-new-hires",
            action=RuleAction.ADD,
            program="buddies",
            role=Role.MENTEE,
            segment="new-hires",
        ),
        RuleEntry(
            rule_id="remove-contractors",
            action=RuleAction.REMOVE,
            program="buddies",
            role=Role.MENTEE,
            segment="contractors",
        ),
    ),
)

# BUDDIES, and new hires leave the program once their first 30 days are over.
SETTLING = ConfigFile(
    programs=BUDDIES.programs,
    segments=(
        *BUDDIES.segments,
        Segment.model_validate(
            {
                "segment_id": "settled",
                "definition": {
                    "all": [
                        {
                            "attribute": "hire_date",
                            "operator": "more_than_ago",
                            "value": 30,
                        }
                    ]
                },
            }
        ),
    ),
    rules=(
        *BUDDIES.rules,
        RuleEntry(
            rule_id="remove-settled",
            action=RuleAction.REMOVE,
            program="buddies",
            role=Role.MENTEE,
            segment="settled",
        ),
    ),
)

EngineAt = Callable[[date], Engine]
_offsets = itertools.count()


@pytest.fixture
def engine_at(store: Store) -> EngineAt:
    """Build an engine whose business date is the given day."""

    def build(today: date) -> Engine:
        clock = BusinessClock(ZoneInfo("Europe/Paris"), as_of=today)
        return Engine(store, KafkaSettings(), clock)

    return build


def feed(engine: Engine, event: EventBase, topic: str = "hr.person-events") -> str:
    raw = json.dumps(event.model_dump(mode="json", by_alias=True)).encode()
    position = SourcePosition(topic, 0, next(_offsets))
    if topic == "mentorflow.config":
        return engine.handle_config_record(raw, b"config", position).kind
    assert isinstance(
        event, PersonHired | PersonUpdated | PersonTerminated | PersonDeleted
    )
    return engine.handle_person_record(raw, event.person_id.encode(), position).kind


def members(store: Store) -> dict[str, str]:
    with store.transaction() as tx:
        return {row.person_id: row.decided_by for row in tx.members("buddies")}


def outbox(store: Store) -> list[dict[str, Any]]:
    with store.transaction() as tx:
        return [row.decoded() for row in tx.fetch_outbox(1000)]


def timers(store: Store) -> dict[str, date]:
    with store.transaction() as tx:
        rows = tx.conn.execute("SELECT person_id, due_on FROM person_timers")
        return dict(rows.fetchall())


def hire(person_id: str, hired_on: date = HIRED_ON, **attributes: Any) -> PersonHired:
    return PersonHired(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        person_id=person_id,
        attributes={"hire_date": hired_on.isoformat(), **attributes},
    )


def manual_add(
    person_id: str, role: Role = Role.MENTOR, program_id: str = "buddies"
) -> ManualMembershipAdded:
    return ManualMembershipAdded(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        program_id=program_id,
        role=role,
        person_id=person_id,
    )


def configure(engine: Engine) -> None:
    assert feed(engine, BUDDIES.to_event(), "mentorflow.config") == "applied"


def test_a_new_hire_leaves_on_day_31_when_the_worker_applies_due_flips(
    store, engine_at
):
    engine = engine_at(HIRED_ON)
    assert feed(engine, SETTLING.to_event(), "mentorflow.config") == "applied"
    feed(engine, hire("p1"))
    assert members(store) == {"p1": "add-new-hires"}
    # Day 31 is the first day outside "within the last 30 days".
    assert timers(store) == {"p1": HIRED_ON + 31 * DAY}

    assert engine_at(HIRED_ON + 30 * DAY).apply_due_flips() == 0
    assert members(store) == {"p1": "add-new-hires"}
    assert timers(store) == {"p1": HIRED_ON + 31 * DAY}

    assert engine_at(HIRED_ON + 31 * DAY).apply_due_flips() == 1
    assert members(store) == {}
    (removal,) = [e for e in outbox(store) if e["type"] == "membership.removed"]
    assert removal["decided_by"] == "remove-settled"
    # Past its last window edge nothing of p1 changes with time any more.
    assert timers(store) == {}


def test_flips_missed_while_no_worker_ran_are_applied_at_the_next_call(
    store, engine_at
):
    configure(engine_at(HIRED_ON))
    # Hired in the future: enters the segment on the hire date.
    feed(engine_at(HIRED_ON - 10 * DAY), hire("p2"))
    assert members(store) == {}

    # The worker was down from the hire date for two weeks.
    assert engine_at(HIRED_ON + 14 * DAY).apply_due_flips() == 1
    assert members(store) == {"p2": "add-new-hires"}
    assert outbox(store)[-1]["type"] == "membership.added"


def test_a_future_dated_change_is_held_and_applied_on_its_date(store, engine_at):
    configure(engine_at(HIRED_ON))
    feed(engine_at(HIRED_ON), hire("p3"))
    change = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        person_id="p3",
        effective_at=HIRED_ON + 5 * DAY,
        changes={"type": "contractor"},
    )
    assert feed(engine_at(HIRED_ON), change) == "held"
    assert members(store) == {"p3": "add-new-hires"}

    assert engine_at(HIRED_ON + 4 * DAY).release_due_events() == 0
    assert engine_at(HIRED_ON + 5 * DAY).release_due_events() == 1
    assert members(store) == {}
    assert outbox(store)[-1]["decided_by"] == "remove-contractors"


def test_termination_removes_every_membership_on_its_date_and_a_rehire_starts_over(
    store, engine_at
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire("p4"))
    manual = manual_add("p4")
    feed(engine, manual, "mentorflow.config")
    leaving = PersonTerminated(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        person_id="p4",
        termination_date=HIRED_ON + 3 * DAY,
    )
    assert feed(engine, leaving) == "held"
    assert set(members(store)) == {"p4"}

    engine_at(HIRED_ON + 3 * DAY).release_due_events()
    assert members(store) == {}
    removals = [e for e in outbox(store) if e["type"] == "membership.removed"]
    assert {(e["role"], e["decided_by"]) for e in removals} == {
        ("mentee", "person_terminated"),
        ("mentor", "person_terminated"),
    }

    # Rehired within 30 days of the new hire date: a new hire again.
    later = HIRED_ON + 60 * DAY
    feed(engine_at(later), hire("p4", hired_on=later))
    assert members(store) == {"p4": "add-new-hires"}


def test_deletion_removes_every_membership_and_a_rehire_starts_over(store, engine_at):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire("p16"))
    manual = manual_add("p16")
    feed(engine, manual, "mentorflow.config")
    with store.transaction() as tx:
        held = {(row.role.value, row.decided_by) for row in tx.members("buddies")}
    assert held == {("mentee", "add-new-hires"), ("mentor", "manual")}

    deleted = PersonDeleted(
        event_id=new_event_id(), occurred_at=datetime.now(UTC), person_id="p16"
    )
    assert feed(engine, deleted) == "applied"
    assert members(store) == {}
    assert {(e["role"], e["decided_by"]) for e in outbox(store)[-2:]} == {
        ("mentee", "person_deleted"),
        ("mentor", "person_deleted"),
    }
    assert timers(store) == {}

    # A deleted person is in no segment, whatever later updates say.
    revived = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        person_id="p16",
        changes={"hire_date": HIRED_ON.isoformat()},
    )
    assert feed(engine, revived) == "applied"
    assert members(store) == {}
    result = engine.sweep()
    assert result is not None and result.changes == 0

    feed(engine, hire("p16"))
    assert members(store) == {"p16": "add-new-hires"}


def test_a_manual_member_is_kept_by_add_rules_and_removed_by_a_matching_remove_rule(
    store, engine_at
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire("p5", hired_on=HIRED_ON - 100 * DAY))
    add = manual_add("p5", Role.MENTEE)
    feed(engine, add, "mentorflow.config")
    assert members(store) == {"p5": "manual"}
    with store.transaction() as tx:
        assert [row.source for row in tx.members("buddies")] == ["manual"]

    # Matching an add rule changes nothing; matching the remove rule removes.
    feed(
        engine,
        PersonUpdated(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id="p5",
            changes={"hire_date": "2026-02-20"},
        ),
    )
    assert members(store) == {"p5": "manual"}
    feed(
        engine,
        PersonUpdated(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id="p5",
            changes={"type": "contractor"},
        ),
    )
    assert members(store) == {}


def test_a_manual_removal_of_a_non_member_changes_nothing(store, engine_at):
    engine = engine_at(HIRED_ON)
    configure(engine)
    removal = ManualMembershipRemoved(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        program_id="buddies",
        role=Role.MENTOR,
        person_id="nobody",
    )
    assert feed(engine, removal, "mentorflow.config") == "applied"
    assert outbox(store) == []


def test_a_manual_change_naming_an_unknown_program_is_dead_lettered(store, engine_at):
    engine = engine_at(HIRED_ON)
    add = manual_add("p6", program_id="nope")
    assert feed(engine, add, "mentorflow.config") == "dead_letter"
    (letter,) = outbox(store)
    assert letter["type"] == "dead_letter"
    assert "unknown program 'nope'" in letter["error"]


def test_a_held_change_survives_an_update_written_later_but_effective_sooner(
    store, engine_at
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    # Written on the dates an HR system would write them, in this test's past.
    hired = hire("p7", hired_on=HIRED_ON - 100 * DAY)
    feed(
        engine,
        hired.model_copy(update={"occurred_at": datetime(2025, 11, 1, tzinfo=UTC)}),
    )
    promotion = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=datetime(2026, 3, 1, 9, tzinfo=UTC),
        person_id="p7",
        effective_at=HIRED_ON + 10 * DAY,
        changes={"type": "contractor"},
    )
    raise_ = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        person_id="p7",
        changes={"salary": 12345},
    )
    assert feed(engine, promotion) == "held"
    assert feed(engine, raise_) == "applied"

    engine_at(HIRED_ON + 10 * DAY).release_due_events()

    with store.transaction() as tx:
        person = tx.load_person("p7", for_update=False)
    assert person is not None
    assert (person.attributes["type"], person.attributes["salary"]) == (
        "contractor",
        12345,
    )


# HR writes these tests' events on pinned instants, in this test's past.
WRITTEN = datetime(2026, 2, 20, 9, tzinfo=UTC)
HELD_ON = HIRED_ON + 5 * DAY


def held_update(
    person_id: str, event_id: str, written_at: datetime, **changes: Any
) -> PersonUpdated:
    return PersonUpdated(
        event_id=event_id,
        occurred_at=written_at,
        person_id=person_id,
        effective_at=HELD_ON,
        changes=changes,
    )


def person(store: Store, person_id: str) -> tuple[str, dict[str, Any]]:
    with store.transaction() as tx:
        state = tx.load_person(person_id, for_update=False)
    assert state is not None
    return state.status.value, dict(state.attributes)


def hire_written(person_id: str, written_at: datetime) -> PersonHired:
    return hire(person_id).model_copy(update={"occurred_at": written_at})


# The second event written has the smaller id, so that deciding their tie by
# event_id would drop it.
@pytest.mark.parametrize("ids", [("e-2", "e-1"), ("e-1", "e-2")])
def test_two_held_updates_effective_on_one_day_are_both_applied(store, engine_at, ids):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire_written("p12", WRITTEN))
    title = held_update("p12", ids[0], WRITTEN + DAY, title="Lead")
    department = held_update("p12", ids[1], WRITTEN + 2 * DAY, department="Sales")
    assert feed(engine, title) == "held"
    assert feed(engine, department) == "held"

    assert engine_at(HELD_ON).release_due_events() == 2

    _, attributes = person(store, "p12")
    assert (attributes["title"], attributes["department"]) == ("Lead", "Sales")


@pytest.mark.parametrize("ids", [("e-2", "e-1"), ("e-1", "e-2")])
def test_held_updates_of_one_attribute_on_one_day_apply_in_the_order_written(
    store, engine_at, ids
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire_written("p13", WRITTEN))
    # Consumed out of the order written: the release order must not depend on it.
    assert feed(engine, held_update("p13", ids[1], WRITTEN + 2 * DAY, title="B"))
    assert feed(engine, held_update("p13", ids[0], WRITTEN + DAY, title="A"))

    engine_at(HELD_ON).release_due_events()

    assert person(store, "p13")[1]["title"] == "B"


@pytest.mark.parametrize("written_first", ["update", "termination"])
def test_a_held_update_and_a_held_termination_on_one_day_are_both_applied(
    store, engine_at, written_first
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire_written("p14", WRITTEN))
    assert members(store) == {"p14": "add-new-hires"}
    # The one written second has the smaller id.
    first, second = (WRITTEN + DAY, "e-2"), (WRITTEN + 2 * DAY, "e-1")
    at, event_id = first if written_first == "update" else second
    update = held_update("p14", event_id, at, department="Sales")
    at, event_id = second if written_first == "update" else first
    leaving = PersonTerminated(
        event_id=event_id,
        occurred_at=at,
        person_id="p14",
        termination_date=HELD_ON,
    )
    for event in sorted([update, leaving], key=lambda event: event.occurred_at):
        assert feed(engine, event) == "held"

    engine_at(HELD_ON).release_due_events()

    status, attributes = person(store, "p14")
    assert (status, attributes["department"]) == ("terminated", "Sales")
    assert members(store) == {}
    assert outbox(store)[-1]["decided_by"] == "person_terminated"


def test_a_held_change_loses_to_an_update_written_after_it_took_effect(
    store, engine_at
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire_written("p15", WRITTEN))
    assert feed(engine, held_update("p15", "e-9", WRITTEN, type="contractor"))
    # Written at 09:00 in Paris on the day the held change took effect.
    correction = PersonUpdated(
        event_id="e-1",
        occurred_at=datetime(2026, 3, 6, 8, tzinfo=UTC),
        person_id="p15",
        changes={"type": "employee"},
    )
    assert feed(engine_at(HELD_ON), correction) == "applied"

    engine_at(HELD_ON).release_due_events()

    assert person(store, "p15")[1]["type"] == "employee"
    assert members(store) == {"p15": "add-new-hires"}


@pytest.mark.parametrize("status", ["unknown", "terminated"])
def test_a_manual_add_of_a_person_who_is_not_active_is_dead_lettered(
    store, engine_at, status
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    if status == "terminated":
        feed(engine, hire("p8"))
        leaving = PersonTerminated(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id="p8",
            termination_date=HIRED_ON,
        )
        assert feed(engine, leaving) == "applied"
    add = manual_add("p8")

    assert feed(engine, add, "mentorflow.config") == "dead_letter"
    assert members(store) == {}
    assert f"the person is {status}" in outbox(store)[-1]["error"]


def test_a_manual_add_that_a_remove_rule_matches_is_undone_at_once(store, engine_at):
    engine = engine_at(HIRED_ON)
    configure(engine)
    feed(engine, hire("p9", hired_on=HIRED_ON - 100 * DAY, type="contractor"))
    add = manual_add("p9", Role.MENTEE)

    feed(engine, add, "mentorflow.config")

    assert members(store) == {}
    assert [(e["type"], e["decided_by"]) for e in outbox(store)] == [
        ("membership.added", "manual"),
        ("membership.removed", "remove-contractors"),
    ]
    result = engine.sweep()
    assert result is not None and result.changes == 0


def test_a_person_event_keyed_as_another_person_is_dead_lettered(store, engine_at):
    engine = engine_at(HIRED_ON)
    event = hire("p10")
    raw = json.dumps(event.model_dump(mode="json")).encode()

    outcome = engine.handle_person_record(raw, b"p11", SourcePosition("hr", 0, 1))

    assert outcome.kind == "dead_letter"
    assert "does not match person_id 'p10'" in outbox(store)[-1]["error"]


@pytest.mark.parametrize("path", ["one record at a time", "in one batch"])
def test_a_termination_delivered_after_a_newer_update_still_removes_the_person(
    store, engine_at, path
):
    engine = engine_at(HIRED_ON)
    configure(engine)
    written = datetime.now(UTC)
    hired = hire("p9").model_copy(update={"occurred_at": written})
    # HR wrote the termination first; it reaches Kafka after the update.
    termination = PersonTerminated(
        event_id=new_event_id(),
        occurred_at=written + timedelta(seconds=1),
        person_id="p9",
        termination_date=HIRED_ON,
    )
    update = PersonUpdated(
        event_id=new_event_id(),
        occurred_at=written + timedelta(seconds=2),
        person_id="p9",
        changes={"location": "Lyon"},
    )

    if path == "in one batch":
        records = [
            PersonRecord(
                json.dumps(event.model_dump(mode="json")).encode(),
                b"p9",
                SourcePosition("hr.person-events", 0, next(_offsets)),
            )
            for event in (hired, update, termination)
        ]
        kinds = [outcome.kind for outcome in engine.handle_person_batch(records)]
    else:
        kinds = [feed(engine, event) for event in (hired, update, termination)]

    assert kinds == ["applied", "applied", "applied"]
    assert members(store) == {}
    (removal,) = [e for e in outbox(store) if e["type"] == "membership.removed"]
    assert removal["decided_by"] == "person_terminated"
    with store.transaction() as tx:
        state = tx.load_person("p9")
    assert state is not None
    assert state.departure_reason == "person_terminated"
    assert state.attributes["location"] == "Lyon"
