"""Preview and conflicts on PostgreSQL: exact, and changing nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from infra.settings import KafkaSettings
from infra.store import SourcePosition, Store
from schemas.common import new_event_id
from schemas.person import PersonSnapshot
from schemas.segments import Program, Role, RuleAction, Segment
from workers.admin import find_conflicts, near_misses_of, preview_config
from workers.clock import BusinessClock
from workers.config_file import ConfigFile, RuleEntry
from workers.engine import Engine

TODAY = date(2026, 6, 1)


def segment(segment_id: str, attribute: str, value: str) -> Segment:
    condition = {"attribute": attribute, "operator": "eq", "value": value}
    return Segment.model_validate(
        {"segment_id": segment_id, "definition": {"all": [condition]}}
    )


CONFIG = ConfigFile(
    programs=(Program(program_id="guild"),),
    segments=(
        segment("engineers", "department", "Engineering"),
        segment("interns", "level", "intern"),
    ),
    rules=(
        RuleEntry(
            rule_id="add-engineers",
            action=RuleAction.ADD,
            program="guild",
            role=Role.MENTOR,
            segment="engineers",
        ),
        RuleEntry(
            rule_id="no-interns",
            action=RuleAction.REMOVE,
            program="guild",
            role=Role.MENTOR,
            segment="interns",
        ),
    ),
)

PEOPLE: dict[str, dict[str, Any]] = {
    "1": {"department": "Engineering", "level": "senior"},
    "2": {"department": "Engineering", "level": "intern"},
    "3": {"department": "Sales", "level": "intern"},
    "4": {"department": "Engineering"},
}


def load_people(engine: Engine) -> None:
    for offset, (person_id, attributes) in enumerate(PEOPLE.items()):
        event = PersonSnapshot(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id=person_id,
            attributes=attributes,
        )
        raw = json.dumps(event.model_dump(mode="json")).encode()
        engine.handle_person_record(raw, None, SourcePosition("hr", 0, offset))


def state(store: Store) -> tuple[object, ...]:
    with store.transaction() as tx:
        return (
            tx.config_version(),
            [rule.rule_id for rule in tx.load_rules()],
            tx.membership_counts(),
            tx.outbox_backlog(),
        )


def test_preview_lists_the_exact_changes_and_changes_nothing(store):
    engine = Engine(store, KafkaSettings(), BusinessClock(ZoneInfo("UTC"), TODAY))
    load_people(engine)
    before = state(store)

    preview = preview_config(engine, CONFIG)

    assert state(store) == before
    assert {pair: (p.added, p.removed) for pair, p in preview.items()} == {
        ("guild", Role.MENTOR): (["1", "4"], []),
    }

    # Applying the same config makes exactly the previewed changes.
    raw = json.dumps(CONFIG.to_event().model_dump(mode="json")).encode()
    engine.handle_config_record(raw, b"config", SourcePosition("config", 0, 0))
    with store.transaction() as tx:
        members = [row.person_id for row in tx.members("guild")]
    assert members == ["1", "4"]


def test_conflicts_count_people_matched_by_both_rules_of_a_pair(store):
    engine = Engine(store, KafkaSettings(), BusinessClock(ZoneInfo("UTC"), TODAY))
    load_people(engine)
    raw = json.dumps(CONFIG.to_event().model_dump(mode="json")).encode()
    engine.handle_config_record(raw, b"config", SourcePosition("config", 0, 0))

    conflicts = find_conflicts(store, TODAY)

    ((pair, people),) = conflicts.items()
    assert (pair.add_rule_id, pair.remove_rule_id, people) == (
        "add-engineers",
        "no-interns",
        1,
    )
    assert pair.winner == "no-interns"


def test_near_misses_count_the_values_of_active_people(store):
    engine = Engine(store, KafkaSettings(), BusinessClock(ZoneInfo("UTC"), TODAY))
    titled = ConfigFile(
        programs=(Program(program_id="guild"),),
        segments=(
            Segment.model_validate(
                {
                    "segment_id": "seniors",
                    "aliases": {"Sr.": "Senior"},
                    "definition": {
                        "all": [
                            {
                                "attribute": "title",
                                "operator": "starts_with",
                                "value": "Senior",
                            }
                        ]
                    },
                }
            ),
        ),
    )
    raw = json.dumps(titled.to_event().model_dump(mode="json")).encode()
    engine.handle_config_record(raw, b"config", SourcePosition("config", 0, 0))
    for offset, title in enumerate(["Sr. Analyst", "Sr. Analyst", "Senoir Analyst"]):
        event = PersonSnapshot(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id=f"t{offset}",
            attributes={"title": title},
        )
        raw = json.dumps(event.model_dump(mode="json")).encode()
        engine.handle_person_record(raw, None, SourcePosition("hr", 0, offset))

    misses = near_misses_of(store, "seniors")

    assert {(miss.value, miss.kind): n for miss, n in misses.items()} == {
        ("Sr. Analyst", "alias"): 2,
        ("Senoir Analyst", "edit"): 1,
    }
