"""Inputs that cannot be processed, each with what its dead letter must say.

Every case goes to the dead-letter topic verbatim; the worker carries on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The tests run the worker with this payload limit.
MAX_EVENT_BYTES = 4096

ENVELOPE = {
    "schema_version": 1,
    "event_id": "corpus-event",
    "occurred_at": "2026-05-01T09:00:00+00:00",
}


@dataclass(frozen=True)
class Case:
    """One input and a fragment its dead letter's error must contain."""

    name: str
    stream: str  # "person" or "config"
    raw: bytes
    error: str


def event(**fields: Any) -> bytes:
    return json.dumps({**ENVELOPE, **fields}).encode()


def segment_event(**condition: Any) -> bytes:
    """A segment upsert whose definition is this one condition."""
    definition = {"all": [condition]}
    return event(
        type="segment.upserted", segment={"segment_id": "s", "definition": definition}
    )


def without(name: str, **fields: Any) -> bytes:
    document = {**ENVELOPE, **fields}
    del document[name]
    return json.dumps(document).encode()


HIRE = {"type": "person.hired", "person_id": "c-1", "attributes": {"title": "x"}}
RULE = {
    "rule_id": "r-corpus",
    "action": "add",
    "program_id": "known",
    "role": "mentor",
    "segment_id": "known",
    "position": 7,
    "status": "published",
}

CASES = [
    Case(
        "malformed json",
        "person",
        b'{"type": "person.hired", ',
        "record: Invalid JSON: EOF while parsing",
    ),
    Case("not an object", "person", b"[1, 2, 3]", "record: Input should be an object"),
    Case("empty record", "person", b"", "record: Invalid JSON: EOF while parsing"),
    # Nested deeper than the standard library's JSON parser can follow.
    Case(
        "json nested a thousand levels",
        "person",
        b"[" * 1000 + b"]" * 1000,
        "record: Invalid JSON: recursion limit exceeded",
    ),
    Case(
        "config json nested a thousand levels",
        "config",
        b'{"type": "rule.upserted", "rule": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        "record: Invalid JSON: recursion limit exceeded",
    ),
    Case(
        "not utf-8",
        "person",
        b"\xff\xfe\x00\x81",
        "record: Invalid JSON: expected value",
    ),
    Case(
        "unknown event type",
        "person",
        event(**{**HIRE, "type": "person.promoted"}),
        "does not match any of the expected tags",
    ),
    Case(
        "unsupported schema version",
        "person",
        event(**HIRE, **{"schema_version": 2}),
        "person.hired.schema_version: Input should be 1",
    ),
    Case(
        "missing person_id",
        "person",
        without("person_id", **HIRE),
        "person.hired.person_id: Field required",
    ),
    Case(
        "missing event_id",
        "person",
        without("event_id", **HIRE),
        "person.hired.event_id: Field required",
    ),
    Case(
        "wrong occurred_at type",
        "person",
        event(**{**HIRE, "occurred_at": "yesterday"}),
        "person.hired.occurred_at: Input should be a valid datetime",
    ),
    Case(
        "naive occurred_at",
        "person",
        event(**{**HIRE, "occurred_at": "2026-05-01T09:00:00"}),
        "person.hired.occurred_at: Input should have timezone info",
    ),
    Case(
        "attributes not an object",
        "person",
        event(**{**HIRE, "attributes": [1]}),
        "person.hired.attributes: Input should be an object",
    ),
    Case(
        "update with no change",
        "person",
        event(type="person.updated", person_id="c-1", changes={}),
        "person.updated.changes: Dictionary should have at least 1 item",
    ),
    # PostgreSQL stores no NUL in text or jsonb; refused before the database.
    Case(
        "NUL character in an attribute",
        "person",
        event(**{**HIRE, "attributes": {"title": "Engi\u0000neer"}}),
        "person.hired: attributes.title contains a NUL character",
    ),
    Case(
        "NUL character in an attribute name",
        "person",
        event(type="person.updated", person_id="c-1", changes={"ti\u0000tle": "x"}),
        "person.updated: changes key 'ti\\x00tle' contains a NUL character",
    ),
    # JSON has no NaN, but json.dumps writes it and parsers read it back;
    # PostgreSQL's jsonb refuses it.
    Case(
        "NaN attribute",
        "person",
        event(**{**HIRE, "attributes": {"title": "x", "salary": float("nan")}}),
        "person.hired: attributes.salary is NaN or infinite",
    ),
    Case(
        "hire date that is no calendar date",
        "person",
        event(**{**HIRE, "attributes": {"title": "x", "hire_date": "2026-13-01"}}),
        "person.hired: attributes.hire_date is '2026-13-01', which is no calendar",
    ),
    Case(
        "termination date change that is no calendar date",
        "person",
        event(
            type="person.updated",
            person_id="c-1",
            changes={"termination_date": "2026-02-30"},
        ),
        "person.updated: changes.termination_date is '2026-02-30', which is no",
    ),
    # Valid UTF-8 holding a NUL byte: dead-lettered as base64, not as text.
    Case(
        "NUL byte after the event",
        "person",
        event(**HIRE) + b"\x00",
        "record: Invalid JSON: trailing characters",
    ),
    Case(
        "payload over the limit",
        "person",
        event(**{**HIRE, "attributes": {"notes": "x" * MAX_EVENT_BYTES}}),
        f"exceeds the limit of {MAX_EVENT_BYTES} bytes",
    ),
    Case(
        "unknown config type",
        "config",
        event(type="rule.exploded", rule_id="r"),
        "does not match any of the expected tags",
    ),
    Case(
        "unsupported config schema version",
        "config",
        event(type="program.deleted", program_id="known", schema_version=2),
        "program.deleted.schema_version: Input should be 1",
    ),
    Case(
        "NUL character in a segment condition",
        "config",
        segment_event(attribute="a", operator="eq", value="b\u0000"),
        "condition: value contains a NUL character",
    ),
    Case(
        "segment comparing with a date that is no calendar date",
        "config",
        segment_event(attribute="hire_date", operator="gt", value="2020-13-45"),
        "condition hire_date gt compares with '2020-13-45', which is no calendar",
    ),
    Case(
        "segment containing blank text",
        "config",
        segment_event(attribute="a", operator="contains", value=" "),
        "condition a contains compares with ' ', which is blank once normalised",
    ),
    Case(
        "rule naming an unknown program",
        "config",
        event(type="rule.upserted", rule={**RULE, "program_id": "ghost"}),
        "unknown program 'ghost'",
    ),
    Case(
        "rule naming an unknown segment",
        "config",
        event(type="rule.upserted", rule={**RULE, "segment_id": "ghost"}),
        "unknown segment 'ghost'",
    ),
    Case(
        "segment with an unknown operator",
        "config",
        segment_event(attribute="a", operator="resembles", value="b"),
        "condition.operator: Input should be 'eq'",
    ),
    Case(
        "rule taking a published rule's position",
        "config",
        event(type="rule.upserted", rule={**RULE, "rule_id": "r-clash", "position": 0}),
        "dashboard position 0",
    ),
]
