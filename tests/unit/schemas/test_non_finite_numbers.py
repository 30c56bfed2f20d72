"""No event carries NaN or infinity, which PostgreSQL cannot store in jsonb."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.config import config_event_adapter
from schemas.person import person_event_adapter
from schemas.segments import Condition, Operator

ENVELOPE = (
    '"schema_version": 1, "event_id": "e-1",'
    ' "occurred_at": "2024-06-01T12:00:00Z", "person_id": "p-1"'
)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('"type": "person.hired", "attributes": {"salary": NaN}', "attributes.salary"),
        (
            '"type": "person.snapshot", "attributes": {"salary": -Infinity}',
            "attributes.salary",
        ),
        # A number too large for a double reads as infinity.
        ('"type": "person.updated", "changes": {"salary": 1e999}', "changes.salary"),
        ('"type": "person.updated", "changes": {"marks": [1, NaN]}', "changes.marks.1"),
        (
            '"type": "person.updated", "changes": {"c": {"cc": [{"x": Infinity}]}}',
            "changes.c.cc.0.x",
        ),
    ],
    ids=["nan", "negative-infinity", "overflow", "list-item", "deeply-nested"],
)
def test_a_person_event_with_a_number_that_is_not_finite_is_refused_naming_the_field(
    body: str, field: str
) -> None:
    # JSON has no such tokens, but Python's json module and pydantic read them.
    raw = "{" + ENVELOPE + ", " + body + "}"

    with pytest.raises(ValidationError) as caught:
        person_event_adapter.validate_json(raw)

    [error] = caught.value.errors(include_url=False)
    assert error["type"] == "non_finite_number"
    assert error["msg"].startswith(f"{field} is NaN or infinite")


def test_a_segment_condition_with_a_value_that_is_not_finite_is_refused() -> None:
    condition = {"attribute": "salary", "operator": "gte", "value": float("inf")}
    raw = json.dumps(
        {
            "schema_version": 1,
            "event_id": "e-1",
            "occurred_at": "2024-06-01T12:00:00Z",
            "type": "segment.upserted",
            "segment": {"segment_id": "s1", "definition": condition},
        }
    )

    with pytest.raises(ValidationError) as caught:
        config_event_adapter.validate_json(raw)

    [error] = caught.value.errors(include_url=False)
    assert error["type"] == "non_finite_number"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_models_built_in_python_refuse_a_number_that_is_not_finite(
    value: Any,
) -> None:
    with pytest.raises(ValidationError, match=r"value\.0.* is NaN or infinite"):
        Condition(attribute="salary", operator=Operator.IN, value=[value])


def test_finite_numbers_of_every_kind_are_kept() -> None:
    values = {"a": 0.1, "b": -2.5e300, "c": 10**30, "d": [1.5, {"e": 7.0}], "f": True}
    event = person_event_adapter.validate_python(
        {
            "schema_version": 1,
            "event_id": "e-1",
            "occurred_at": "2024-06-01T12:00:00Z",
            "person_id": "p-1",
            "type": "person.hired",
            "attributes": values,
        }
    )
    assert event.attributes == values  # type: ignore[union-attr]
