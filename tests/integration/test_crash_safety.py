"""Kill -9 the worker at random points: nothing lost, nothing duplicated.

The final memberships and the set of published membership event ids are
compared with an oracle that replays the same events through the pure rule
engine, one person at a time, in the order Kafka delivers them.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.settings import Settings
from infra.store import Store
from rules.evaluation import decide_departure, decide_person
from rules.person_state import PersonState, apply_event
from rules.ruleset import Pair, RuleSet
from schemas.common import derive_event_id, new_event_id
from schemas.config import CONFIG_KEY
from schemas.person import (
    PersonEvent,
    PersonSnapshot,
    PersonTerminated,
    PersonUpdated,
)
from schemas.segments import Program, Role, RuleAction, Segment
from tests.fix_worker import TEST_TODAY
from workers.config_file import ConfigFile, RuleEntry
from workers.publishing import (
    keyed_by_person,
    publish_events,
    read_topic,
    wait_until_processed,
)

PERSONS = 150
EVENTS = 3000
KILLS = 5
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


def oracle(events: list[PersonEvent]) -> tuple[set[tuple[str, str, str]], set[str]]:
    """The memberships and membership event ids the events must produce."""
    ruleset = RuleSet.build(CONFIG.to_rules(), CONFIG.segments)
    states: dict[str, PersonState | None] = defaultdict(lambda: None)
    members: dict[str, set[Pair]] = defaultdict(set)
    seen: set[str] = set()
    event_ids: set[str] = set()
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
            event_ids.add(
                derive_event_id(
                    event.event_id,
                    decision.program_id,
                    decision.role.value,
                    decision.person_id,
                    decision.action.value,
                )
            )
    final = {
        (program_id, role.value, person_id)
        for person_id, pairs in members.items()
        for program_id, role in pairs
    }
    return final, event_ids


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The shortest session Kafka allows: a killed member is noticed quickly.
    kafka = settings.kafka.model_copy(update={"session_timeout_s": 6.0})
    return Settings(settings.postgres, kafka, settings.worker)


def processed_count(store: Store) -> int:
    with store.transaction() as tx:
        return sum(tx.outcome_counts().values())


def test_killing_the_worker_at_random_points_loses_and_duplicates_nothing(
    settings, store, producer, worker_factory
):
    chooser = random.Random(20261203)
    events = generate_events(seed=7)
    expected_members, expected_ids = oracle(events)
    assert len(expected_ids) > 500

    worker = worker_factory("worker-0")
    ids = publish_events(
        producer, settings.kafka.config_topic, [(CONFIG_KEY, CONFIG.to_event())]
    )
    wait_until_processed(store, ids)
    event_ids = publish_events(
        producer, settings.kafka.person_topic, keyed_by_person(events)
    )
    unique_ids = list(dict.fromkeys(event_ids))

    for kill in range(KILLS):
        # Kill once some more events went through, at a random point.
        target = processed_count(store) + chooser.randint(50, 400)
        deadline = time.monotonic() + 90
        while processed_count(store) < target and time.monotonic() < deadline:
            if worker.poll() is not None:
                break
            time.sleep(chooser.uniform(0.01, 0.2))
        worker.kill()
        worker.wait()
        worker = worker_factory(f"worker-{kill + 1}")

    wait_until_processed(store, unique_ids, timeout_s=240)
    published = read_topic(settings.kafka, settings.kafka.membership_topic, 3)
    deadline = time.monotonic() + 60
    while {e["event_id"] for e in published} != expected_ids:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
        published = read_topic(settings.kafka, settings.kafka.membership_topic, 3)

    with store.transaction() as tx:
        rows = {
            (row.program_id, row.role.value, row.person_id)
            for row in tx.members("guild")
        }
    assert rows == expected_members
    assert {event["event_id"] for event in published} == expected_ids
