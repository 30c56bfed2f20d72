"""HR calendar dates in the attributes of person events."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.common import ACCEPTED_BEFORE
from schemas.person import (
    DATE_ATTRIBUTES,
    PersonHired,
    PersonUpdated,
    person_event_adapter,
)

ENVELOPE = {
    "schema_version": 1,
    "event_id": "e-1",
    "occurred_at": "2024-06-01T12:00:00Z",
    "person_id": "p-1",
}
# Each event type that carries attributes, and the field that holds them.
CARRIERS = [
    ("person.hired", "attributes"),
    ("person.snapshot", "attributes"),
    ("person.updated", "changes"),
]
NOT_DATES = [
    "2026-13-01",
    "2026-02-30",
    "2025-02-29",
    "0000-01-01",
    "2026-1-01",
    "20260101",
    "2026-W01-1",
    " 2026-01-01",
    "2026-01-01T09:00:00Z",
    "2026-01-01\n",
    "２０２６-０１-０１",
    "",
    "soon",
    20260101,
    True,
    ["2026-01-01"],
    {"date": "2026-01-01"},
]


def event(type_: str, field: str, values: dict[str, Any]) -> dict[str, Any]:
    return {**ENVELOPE, "type": type_, field: values}


@pytest.mark.parametrize(("type_", "field"), CARRIERS)
@pytest.mark.parametrize("name", sorted(DATE_ATTRIBUTES))
@pytest.mark.parametrize("value", NOT_DATES)
def test_a_date_attribute_that_is_no_calendar_date_is_refused_by_its_path(
    type_: str, field: str, name: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as raised:
        person_event_adapter.validate_python(
            event(type_, field, {"title": "Engineer", name: value})
        )

    (error,) = raised.value.errors()
    assert error["type"] == "calendar_date"
    assert error["msg"].startswith(f"{field}.{name} is {value!r}, which is no")
    assert "expected a real yyyy-mm-dd date" in error["msg"]


@pytest.mark.parametrize(("type_", "field"), CARRIERS)
@pytest.mark.parametrize("value", ["2026-01-01", "2024-02-29", "0001-01-01", None])
def test_a_real_date_or_null_is_accepted(type_: str, field: str, value: Any) -> None:
    values = {"hire_date": value, "termination_date": value}

    parsed = person_event_adapter.validate_python(event(type_, field, values))

    assert getattr(parsed, field) == values


def test_an_update_may_clear_a_date_attribute() -> None:
    parsed = person_event_adapter.validate_python(
        event("person.updated", "changes", {"termination_date": None})
    )

    assert isinstance(parsed, PersonUpdated)
    assert parsed.changes == {"termination_date": None}


def test_other_attributes_may_hold_any_text() -> None:
    values = {"start": "2026-13-01", "review_date": "soon"}

    parsed = person_event_adapter.validate_python(
        event("person.hired", "attributes", values)
    )

    assert isinstance(parsed, PersonHired)
    assert parsed.attributes == values


def test_a_bad_date_fails_validation_from_json_too() -> None:
    raw = (
        '{"type": "person.hired", "event_id": "e-1", "person_id": "p-1",'
        ' "occurred_at": "2024-06-01T12:00:00Z",'
        ' "attributes": {"hire_date": "2026-13-01"}}'
    )

    with pytest.raises(ValidationError, match=r"attributes\.hire_date is '2026-13-01'"):
        person_event_adapter.validate_json(raw)


def test_an_event_held_before_dates_were_checked_is_still_read() -> None:
    held = event("person.hired", "attributes", {"hire_date": "2026-13-01"})

    parsed = person_event_adapter.validate_python(held, context={ACCEPTED_BEFORE: True})

    assert isinstance(parsed, PersonHired)
    assert parsed.attributes == {"hire_date": "2026-13-01"}


@pytest.mark.parametrize(
    "value", [0, 1704067200, "1704067200", "2024-01-01T00:00:00+09:00", *NOT_DATES]
)
@pytest.mark.parametrize(
    ("event_type", "field", "fields"),
    [
        ("person.terminated", "termination_date", {}),
        ("person.updated", "effective_at", {"changes": {}}),
    ],
)
def test_event_dates_are_calendar_dates_never_numbers_or_instants(
    value: Any, event_type: str, field: str, fields: dict[str, Any]
) -> None:
    document = {"type": event_type, **ENVELOPE, **fields, field: value}

    with pytest.raises(ValidationError) as refused:
        person_event_adapter.validate_python(document)

    assert "no calendar date; expected a real yyyy-mm-dd date" in str(refused.value)


def test_event_dates_take_a_yyyy_mm_dd_text_or_a_date():
    document = {"type": "person.terminated", **ENVELOPE}
    for value in ("2024-06-30", date(2024, 6, 30)):
        event = person_event_adapter.validate_python(
            {**document, "termination_date": value, "effective_at": value}
        )
        assert event.effective_at == date(2024, 6, 30)
