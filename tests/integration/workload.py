"""A generated stream of person events and the oracle of what it must produce.

The oracle replays the events through the pure rule engine, one person at a
time, in the order Kafka delivers them (by key), dropping repeated event ids.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.settings import KafkaSettings
from infra.store import Store
from rules.evaluation import decide_departure, decide_person
from rules.person_state import PersonState, apply_event
from rules.ruleset import Pair, RuleSet
from schemas.common import derive_event_id, new_event_id
from schemas.person import (
    PersonEvent,
    PersonSnapshot,
    PersonTerminated,
    PersonUpdated,
)
from schemas.segments import Program, Role, RuleAction, Segment
from tests.fix_worker import TEST_TODAY
from workers.config_file import ConfigFile, RuleEntry
from workers.publishing import read_topic

PERSONS = 150
EVENTS = 3000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def condition(attribute: str, operator: str, value: Any) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "value": value}


def segment(segment_id: str, *conditions: dict[str, Any]) -> Segment:
    return Segment.model_validate(
        {"segment_id": segment_id, "definition": {"all": list(conditions)}}
    )


def rule(rule_id: str, action: RuleAction, role: Role, segment_id: str) -> RuleEntry:
    return RuleEntry(
        rule_id=rule_id, action=action, program="guild", role=role, segment=segment_id
    )


CONFIG = ConfigFile(
    programs=(Program(program_id="guild"),),
    segments=(
        segment("senior", condition("level", "gte", 4)),
        segment("support", condition("department", "eq", "support")),
        segment("junior", condition("level", "lte", 2)),
        segment(
            "new-sales",
            condition("level", "eq", 1),
            condition("department", "eq", "sales"),
        ),
    ),
    rules=(
        rule("mentor-seniors", RuleAction.ADD, Role.MENTOR, "senior"),
        rule("no-support-mentors", RuleAction.REMOVE, Role.MENTOR, "support"),
        rule("mentee-juniors", RuleAction.ADD, Role.MENTEE, "junior"),
        rule("no-new-sales", RuleAction.REMOVE, Role.MENTEE, "new-sales"),
    ),
)


def generate_events(seed: int) -> list[PersonEvent]:
    """A stream of hires, changes, terminations, stale and repeated events."""
    chooser = random.Random(seed)
    departments = ["eng", "sales", "support"]
    events: list[PersonEvent] = []
    clock = T0
    for _ in range(EVENTS):
        clock += timedelta(seconds=1)
        person_id = f"p{chooser.randrange(PERSONS):03d}"
        roll = chooser.random()
        occurred_at = clock
        if roll < 0.05 and events:
            # Redelivered by the HR system: the very same event again.
            events.append(chooser.choice(events))
            continue
        if roll < 0.10:
            # An update that was delayed: older than what it follows.
            occurred_at = clock - timedelta(hours=1)
        if roll < 0.13:
            events.append(
                PersonTerminated(
                    event_id=new_event_id(),
                    occurred_at=occurred_at,
                    person_id=person_id,
                    termination_date=TEST_TODAY - timedelta(days=1),
                )
            )
        elif roll < 0.35:
            events.append(
                PersonSnapshot(
                    event_id=new_event_id(),
                    occurred_at=occurred_at,
                    person_id=person_id,
                    attributes={
                        "level": chooser.randint(1, 5),
                        "department": chooser.choice(departments),
                    },
                )
            )
        else:
            change: dict[str, Any] = chooser.choice(
                [
                    {"level": chooser.randint(1, 5)},
                    {"department": chooser.choice(departments)},
                    {"level": None},
                ]
            )
            events.append(
                PersonUpdated(
                    event_id=new_event_id(),
                    occurred_at=occurred_at,
                    person_id=person_id,
                    changes=change,
                )
            )
    return events


@dataclass
class Expected:
    """What a stream of events must leave behind."""

    members: set[tuple[str, str, str]] = field(default_factory=set)
    # Membership event ids of each person, in the order they are decided.
    event_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def all_event_ids(self) -> set[str]:
        """Every membership event id."""
        return {event_id for ids in self.event_ids.values() for event_id in ids}


def oracle(events: list[PersonEvent]) -> Expected:
    """Return the memberships and membership events the events must produce."""
    ruleset = RuleSet.build(CONFIG.to_rules(), CONFIG.segments)
    states: dict[str, PersonState | None] = defaultdict(lambda: None)
    members: dict[str, set[Pair]] = defaultdict(set)
    seen: set[str] = set()
    expected = Expected()
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        transition = apply_event(states[event.person_id], event)
        if not transition.applied:
            continue
        state = states[event.person_id] = transition.state
        held = members[event.person_id]
        reason = state.departure_reason
        if reason is not None:
            decisions = decide_departure(state.person_id, held, reason)
        else:
            decisions = decide_person(
                state.person_id, ruleset, state.attributes, held, TEST_TODAY
            )
        for decision in decisions:
            pair = (decision.program_id, decision.role)
            if decision.action.value == "membership.added":
                held.add(pair)
            else:
                held.discard(pair)
            event_id = derive_event_id(
                event.event_id,
                decision.program_id,
                decision.role.value,
                decision.person_id,
                decision.action.value,
            )
            expected.event_ids.setdefault(decision.person_id, []).append(event_id)
    expected.members = {
        (program_id, role.value, person_id)
        for person_id, pairs in members.items()
        for program_id, role in pairs
    }
    return expected


def first_seen_by_person(published: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each person's membership event ids in topic order, repeats dropped."""
    seen: set[str] = set()
    order: dict[str, list[str]] = {}
    for event in published:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            order.setdefault(event["person_id"], []).append(event["event_id"])
    return order


def read_until_complete(
    kafka: KafkaSettings, expected_ids: set[str], timeout_s: float = 60
) -> list[dict[str, Any]]:
    """Read the membership topic until every expected id is there, or time out."""
    deadline = time.monotonic() + timeout_s
    while True:
        published = read_topic(kafka, kafka.membership_topic, idle_timeout_s=3)
        found = {event["event_id"] for event in published}
        if found >= expected_ids or time.monotonic() > deadline:
            return published
        time.sleep(1)


def guild_members(store: Store) -> set[tuple[str, str, str]]:
    """The memberships of the workload's program, as the oracle gives them."""
    with store.transaction() as tx:
        return {
            (row.program_id, row.role.value, row.person_id)
            for row in tx.members("guild")
        }


def processed_count(store: Store) -> int:
    """How many events the store has processed, whatever their outcome."""
    with store.transaction() as tx:
        return sum(tx.outcome_counts().values())
