"""The event models: parsing, rejection and derived ids."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.common import EVENT_ID_NAMESPACE, derive_event_id
from schemas.config import (
    ConfigApplied,
    ManualMembershipAdded,
    ManualMembershipRemoved,
    ProgramDeleted,
    ProgramUpserted,
    RuleDeleted,
    RulePaused,
    RulePublished,
    RulesReordered,
    RuleUpserted,
    SegmentDeleted,
    SegmentUpserted,
    config_event_adapter,
)
from schemas.membership import (
    PAYLOAD_MAX_BYTES,
    DeadLetter,
    MembershipAction,
    MembershipEvent,
)
from schemas.person import (
    PersonDeleted,
    PersonHired,
    PersonSnapshot,
    PersonTerminated,
    PersonUpdated,
    person_event_adapter,
)
from schemas.segments import AllGroup, Role, RuleStatus

ENVELOPE = {
    "schema_version": 1,
    "event_id": "e-1",
    "occurred_at": "2024-06-01T12:00:00Z",
}
PERSON_ENVELOPE = {**ENVELOPE, "person_id": "p-1"}


@pytest.mark.parametrize(
    ("fields", "model"),
    [
        ({"type": "person.hired", "attributes": {"title": "Engineer"}}, PersonHired),
        ({"type": "person.snapshot", "attributes": {}}, PersonSnapshot),
        ({"type": "person.updated", "changes": {"title": None}}, PersonUpdated),
        (
            {"type": "person.terminated", "termination_date": "2024-06-30"},
            PersonTerminated,
        ),
        ({"type": "person.deleted"}, PersonDeleted),
    ],
)
def test_person_event_union_parses_each_type(
    fields: dict[str, Any], model: type
) -> None:
    event = person_event_adapter.validate_python({**PERSON_ENVELOPE, **fields})
    assert type(event) is model
    assert event.person_id == "p-1"
    assert event.occurred_at == datetime(2024, 6, 1, 12, tzinfo=UTC)


def test_person_event_parses_from_json_with_dates_kept_as_dates() -> None:
    event = person_event_adapter.validate_json(
        '{"type": "person.terminated", "event_id": "e-1", "person_id": "p-1",'
        ' "occurred_at": "2024-06-30T23:00:00-10:00", "termination_date": "2024-06-30",'
        ' "effective_at": "2024-07-01"}'
    )
    assert isinstance(event, PersonTerminated)
    assert event.termination_date == date(2024, 6, 30)
    assert event.effective_at == date(2024, 7, 1)
    assert event.schema_version == 1


def test_update_keeps_explicit_nulls_and_nested_values() -> None:
    event = person_event_adapter.validate_python(
        {
            **PERSON_ENVELOPE,
            "type": "person.updated",
            "changes": {"location": None, "skills": ["go"], "custom": {"cc": 1}},
        }
    )
    assert isinstance(event, PersonUpdated)
    assert event.changes == {"location": None, "skills": ["go"], "custom": {"cc": 1}}


@pytest.mark.parametrize(
    "raw",
    [
        {**PERSON_ENVELOPE, "type": "person.promoted"},
        {**PERSON_ENVELOPE, "type": "person.deleted", "schema_version": 2},
        {**PERSON_ENVELOPE, "type": "person.deleted", "schema_version": "one"},
        {**ENVELOPE, "type": "person.deleted"},
        {**PERSON_ENVELOPE, "type": "person.deleted", "person_id": ""},
        {**PERSON_ENVELOPE, "type": "person.deleted", "person_id": 7},
        {**PERSON_ENVELOPE, "type": "person.deleted", "event_id": ""},
        {**PERSON_ENVELOPE, "type": "person.deleted", "occurred_at": "yesterday"},
        {
            **PERSON_ENVELOPE,
            "type": "person.deleted",
            "occurred_at": "2024-06-01T12:00",
        },
        {**PERSON_ENVELOPE, "type": "person.deleted", "surprise": 1},
        {**PERSON_ENVELOPE, "type": "person.updated", "changes": {}},
        {**PERSON_ENVELOPE, "type": "person.updated", "changes": ["title"]},
        {**PERSON_ENVELOPE, "type": "person.hired"},
        {**PERSON_ENVELOPE, "type": "person.hired", "attributes": "title"},
        {**PERSON_ENVELOPE, "type": "person.terminated"},
        {**PERSON_ENVELOPE, "type": "person.terminated", "termination_date": "soon"},
        {**PERSON_ENVELOPE, "type": "person.deleted", "effective_at": "next week"},
        {key: value for key, value in PERSON_ENVELOPE.items() if key != "event_id"}
        | {"type": "person.deleted"},
        {"person_id": "p-1"},
    ],
    ids=[
        "unknown-type",
        "schema-version-2",
        "schema-version-text",
        "missing-person-id",
        "empty-person-id",
        "numeric-person-id",
        "empty-event-id",
        "occurred-at-not-a-time",
        "occurred-at-naive",
        "unknown-field",
        "empty-changes",
        "changes-not-a-mapping",
        "hired-without-attributes",
        "attributes-not-a-mapping",
        "terminated-without-date",
        "termination-date-not-a-date",
        "effective-at-not-a-date",
        "missing-event-id",
        "no-type",
    ],
)
def test_invalid_person_event_is_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        person_event_adapter.validate_python(raw)


def test_events_are_immutable() -> None:
    event = person_event_adapter.validate_python(
        {**PERSON_ENVELOPE, "type": "person.deleted"}
    )
    with pytest.raises(ValidationError):
        event.person_id = "p-2"


SEGMENT = {
    "segment_id": "s1",
    "definition": {"all": [{"attribute": "title", "operator": "exists"}]},
}
RULE = {
    "rule_id": "r1",
    "action": "add",
    "program_id": "p1",
    "role": "mentor",
    "segment_id": "s1",
    "position": 0,
}


@pytest.mark.parametrize(
    ("fields", "model"),
    [
        (
            {"type": "program.upserted", "program": {"program_id": "p1"}},
            ProgramUpserted,
        ),
        ({"type": "program.deleted", "program_id": "p1"}, ProgramDeleted),
        ({"type": "segment.upserted", "segment": SEGMENT}, SegmentUpserted),
        ({"type": "segment.deleted", "segment_id": "s1"}, SegmentDeleted),
        ({"type": "rule.upserted", "rule": RULE}, RuleUpserted),
        ({"type": "rule.deleted", "rule_id": "r1"}, RuleDeleted),
        ({"type": "rules.reordered", "rule_ids": ["r2", "r1"]}, RulesReordered),
        ({"type": "rule.published", "rule_id": "r1"}, RulePublished),
        ({"type": "rule.paused", "rule_id": "r1"}, RulePaused),
        (
            {
                "type": "config.applied",
                "programs": [{"program_id": "p1"}],
                "segments": [SEGMENT],
                "rules": [RULE],
            },
            ConfigApplied,
        ),
        (
            {
                "type": "membership.manual_added",
                "program_id": "p1",
                "role": "mentee",
                "person_id": "p-1",
            },
            ManualMembershipAdded,
        ),
        (
            {
                "type": "membership.manual_removed",
                "program_id": "p1",
                "role": "mentor",
                "person_id": "p-1",
            },
            ManualMembershipRemoved,
        ),
    ],
)
def test_config_event_union_parses_each_type(
    fields: dict[str, Any], model: type
) -> None:
    event = config_event_adapter.validate_python({**ENVELOPE, **fields})
    assert type(event) is model


def test_rule_upsert_defaults_to_a_draft_and_segment_upsert_parses_the_tree() -> None:
    rule_event = config_event_adapter.validate_python(
        {**ENVELOPE, "type": "rule.upserted", "rule": RULE}
    )
    assert isinstance(rule_event, RuleUpserted)
    assert rule_event.rule.status is RuleStatus.DRAFT
    assert rule_event.rule.role is Role.MENTOR
    segment_event = config_event_adapter.validate_python(
        {**ENVELOPE, "type": "segment.upserted", "segment": SEGMENT}
    )
    assert isinstance(segment_event, SegmentUpserted)
    assert isinstance(segment_event.segment.definition, AllGroup)


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "rule.archived", "rule_id": "r1"},
        {"type": "rules.reordered", "rule_ids": []},
        {"type": "rule.published"},
        {"type": "rule.published", "rule_id": ""},
        {"type": "rule.upserted", "rule": {**RULE, "position": -1}},
        {"type": "rule.upserted", "rule": {**RULE, "position": "first"}},
        {"type": "rule.upserted", "rule": {**RULE, "action": "toggle"}},
        {"type": "rule.upserted", "rule": {**RULE, "role": "buddy"}},
        {"type": "rule.upserted", "rule": {**RULE, "status": "live"}},
        {"type": "program.deleted", "program_id": "p1", "schema_version": 0},
        {
            "type": "membership.manual_added",
            "program_id": "p1",
            "role": "mentee",
        },
        {
            "type": "segment.upserted",
            "segment": {"segment_id": "s1", "definition": {"any": []}},
        },
        {
            "type": "segment.upserted",
            "segment": {"segment_id": "s1", "definition": [SEGMENT["definition"]]},
        },
        {"type": "config.applied", "rules": [{**RULE, "position": -1}]},
    ],
    ids=[
        "unknown-type",
        "empty-reorder",
        "missing-rule-id",
        "empty-rule-id",
        "negative-position",
        "position-not-a-number",
        "unknown-action",
        "unknown-role",
        "unknown-status",
        "schema-version-0",
        "manual-without-person",
        "empty-any-group",
        "definition-is-a-list",
        "applied-with-a-bad-rule",
    ],
)
def test_invalid_config_event_is_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config_event_adapter.validate_python({**ENVELOPE, **fields})


CHANGED_AT = datetime(2024, 6, 1, 12, tzinfo=UTC)


def decided(**overrides: Any) -> MembershipEvent:
    fields: dict[str, Any] = {
        "action": MembershipAction.ADDED,
        "program_id": "p1",
        "role": Role.MENTEE,
        "person_id": "p-1",
        "decided_by": "r1",
        "cause_event_id": "e-1",
        "changed_at": CHANGED_AT,
    }
    return MembershipEvent.decided(**(fields | overrides))


def test_membership_event_carries_the_decision() -> None:
    event = decided()
    assert event.type is MembershipAction.ADDED
    assert (event.program_id, event.role, event.person_id) == ("p1", "mentee", "p-1")
    assert (event.decided_by, event.cause_event_id) == ("r1", "e-1")
    assert event.occurred_at == event.changed_at == CHANGED_AT
    assert event.model_dump(mode="json")["type"] == "membership.added"


def test_same_decision_gives_the_same_event_id() -> None:
    assert decided().event_id == decided().event_id
    # The instant of publication and the decider are not part of the decision's id.
    later = datetime(2024, 6, 2, tzinfo=UTC)
    assert decided(changed_at=later).event_id == decided().event_id


@pytest.mark.parametrize(
    "override",
    [
        {"action": MembershipAction.REMOVED},
        {"program_id": "p2"},
        {"role": Role.MENTOR},
        {"person_id": "p-2"},
        {"cause_event_id": "e-2"},
    ],
    ids=["action", "program", "role", "person", "cause"],
)
def test_different_decisions_give_different_event_ids(override: dict[str, Any]) -> None:
    assert decided(**override).event_id != decided().event_id


def test_membership_event_round_trips_through_json() -> None:
    event = decided(action=MembershipAction.REMOVED, decided_by="person_terminated")
    adapter = TypeAdapter(MembershipEvent)
    assert adapter.validate_json(event.model_dump_json()) == event


def test_membership_event_rejects_an_unknown_action() -> None:
    raw = decided().model_dump(mode="json") | {"type": "membership.paused"}
    with pytest.raises(ValidationError):
        MembershipEvent.model_validate(raw)


TEXTS = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)
INSTANTS = st.datetimes(timezones=st.sampled_from([UTC, ZoneInfo("Asia/Kolkata")]))


@settings(max_examples=200)
@given(
    action=st.sampled_from(list(MembershipAction)),
    program_id=TEXTS,
    role=st.sampled_from(list(Role)),
    person_id=TEXTS,
    decided_by=TEXTS,
    cause_event_id=TEXTS.filter(bool),
    changed_at=INSTANTS,
)
def test_decided_json_is_the_json_of_the_decided_event(
    action: MembershipAction,
    program_id: str,
    role: Role,
    person_id: str,
    decided_by: str,
    cause_event_id: str,
    changed_at: datetime,
) -> None:
    decision = (action, program_id, role, person_id, decided_by, cause_event_id)
    expected = MembershipEvent.decided(*decision, changed_at).model_dump(mode="json")
    shared = MembershipEvent.shared_json(changed_at)
    assert MembershipEvent.decided_json(shared, *decision) == expected


@settings(max_examples=200)
@given(parts=st.lists(st.one_of(TEXTS, st.integers()), max_size=5))
def test_derived_ids_are_version_8_uuids_of_the_namespaced_sha256(
    parts: list[object],
) -> None:
    name = "|".join(str(part) for part in parts).encode()
    digest = bytearray(hashlib.sha256(EVENT_ID_NAMESPACE.bytes + name).digest())
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    expected = uuid.UUID(bytes=bytes(digest[:16]))
    assert derive_event_id(*parts) == str(expected)
    assert expected.version == 8


def test_dead_letter_keeps_the_source_position_and_rejects_negative_offsets() -> None:
    letter = DeadLetter(
        event_id="d-1",
        occurred_at=CHANGED_AT,
        error="invalid json",
        source_topic="hr.person-events",
        source_partition=3,
        source_offset=42,
        payload="{not json",
    )
    assert (letter.type, letter.source_partition, letter.source_offset) == (
        "dead_letter",
        3,
        42,
    )
    with pytest.raises(ValidationError):
        DeadLetter.model_validate(letter.model_dump() | {"source_offset": -1})


LETTER_FIELDS: dict[str, Any] = {
    "event_id": "d-1",
    "occurred_at": CHANGED_AT,
    "error": "invalid event",
    "source_topic": "hr.person-events",
    "source_partition": 0,
    "source_offset": 7,
}


def letter_bytes(letter: DeadLetter) -> int:
    return len(json.dumps(letter.model_dump(mode="json"), ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "raw",
    [b'{"title": "x"}', b"\xff\xfe", b'{"a": "\x00"}'],
    ids=["text", "bytes", "nul"],
)
def test_a_dead_letter_keeps_a_small_input_whole(raw: bytes) -> None:
    letter = DeadLetter.of_record(raw, **LETTER_FIELDS)

    kept = (
        letter.payload.encode()
        if letter.payload is not None
        else base64.b64decode(letter.payload_base64 or "")
    )
    assert kept == raw
    assert letter.payload_truncated_from is None


@pytest.mark.parametrize(
    "raw",
    [
        # Pretty-printed JSON grows by a third as a JSON string: quotes and
        # line breaks are escaped.
        json.dumps({f"k{i}": "v" for i in range(60_000)}, indent=2).encode(),
        b'"\x01' * 300_000,
        "\u00e9".encode() * 600_000,
        b"\xff" * 1_200_000,
    ],
    ids=["escaped-text", "control-characters", "multibyte-text", "bytes"],
)
def test_a_dead_letter_of_a_large_input_fits_one_kafka_record(raw: bytes) -> None:
    letter = DeadLetter.of_record(raw, **LETTER_FIELDS)

    # Producers and brokers refuse records over 1 MiB by default.
    assert letter_bytes(letter) < 1024 * 1024 - 1024
    assert letter.payload_truncated_from == len(raw)
    # It keeps as much of the beginning as fits: one escape more would not.
    if letter.payload is not None:
        assert raw.startswith(letter.payload.encode())
        escaped = json.dumps(letter.payload, ensure_ascii=False).encode()
        assert PAYLOAD_MAX_BYTES - 6 < len(escaped) <= PAYLOAD_MAX_BYTES
    else:
        kept = base64.b64decode(letter.payload_base64 or "")
        assert raw.startswith(kept)
        assert len(letter.payload_base64 or "") > PAYLOAD_MAX_BYTES - 4
