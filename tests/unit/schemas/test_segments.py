"""Segment trees and the validation of their conditions."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.common import ACCEPTED_BEFORE
from schemas.segments import (
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    Segment,
    SegmentNode,
)

node_adapter: TypeAdapter[SegmentNode] = TypeAdapter(SegmentNode)


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("eq", "Engineer"),
        ("eq", 3),
        ("eq", True),
        ("ne", 2.5),
        ("in", ["IT"]),
        ("not_in", ["IT", 60]),
        ("contains", "manager"),
        ("not_contains", "manager"),
        ("starts_with", "sales"),
        ("exists", None),
        ("missing", None),
        ("gt", 9000),
        ("gte", 0.5),
        ("lt", "2024-01-31"),
        ("lte", " 2024-01-31 "),
        ("gt", "12.5"),
        ("gt", "2024-02-29"),
        ("lt", "0001-01-01"),
        ("gt", " 1e3 "),
        ("eq", " a "),
        ("eq", 0),
        ("contains", "\u200ba"),
        ("in", ["IT", 0]),
        ("includes", "python"),
        ("excludes", "python"),
        ("within_last", 0),
        ("more_than_ago", 1825),
        ("within_next", 30),
        ("more_than_ahead", 7),
    ],
)
def test_valid_condition_is_accepted(operator: str, value: Any) -> None:
    condition = Condition.model_validate(
        {"attribute": "x", "operator": operator, "value": value}
    )
    assert condition.operator is Operator(operator)
    assert condition.value == value


@pytest.mark.parametrize(
    ("operator", "value", "message"),
    [
        ("exists", "yes", "takes no value"),
        ("missing", False, "takes no value"),
        ("in", "IT", "non-empty list"),
        ("in", [], "non-empty list"),
        ("not_in", None, "non-empty list"),
        ("eq", None, "single value"),
        ("eq", ["a"], "single value"),
        ("contains", {"a": 1}, "single value"),
        ("includes", ["a", "b"], "single value"),
        ("gt", "tomorrow", "number or a yyyy-mm-dd date"),
        ("gt", "2024-1-31", "number or a yyyy-mm-dd date"),
        ("gte", True, "number or a yyyy-mm-dd date"),
        ("lt", "", "number or a yyyy-mm-dd date"),
        ("lte", None, "single value"),
        ("within_last", -1, "day count >= 0"),
        ("within_last", 1.5, "whole day count"),
        ("more_than_ago", "30", "whole day count"),
        ("within_next", True, "whole day count"),
        ("more_than_ahead", None, "whole day count"),
    ],
)
def test_invalid_condition_is_rejected_with_the_reason(
    operator: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Condition.model_validate(
            {"attribute": "x", "operator": operator, "value": value}
        )


@pytest.mark.parametrize(
    "raw",
    [
        {"attribute": "", "operator": "eq", "value": "a"},
        {"attribute": "x", "operator": "like", "value": "a"},
        {"attribute": "x", "operator": "eq", "value": "a", "extra": 1},
        {"operator": "exists"},
    ],
    ids=["empty-attribute", "unknown-operator", "unknown-field", "no-attribute"],
)
def test_malformed_condition_is_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Condition.model_validate(raw)


def test_segment_tree_parses_groups_and_conditions() -> None:
    node = node_adapter.validate_python(
        {
            "all": [
                {"attribute": "department", "operator": "eq", "value": "IT"},
                {
                    "any": [
                        {"not": {"attribute": "title", "operator": "exists"}},
                        {"all": []},
                    ]
                },
            ]
        }
    )
    assert isinstance(node, AllGroup)
    first, second = node.all
    assert isinstance(first, Condition)
    assert isinstance(second, AnyGroup)
    negation, empty = second.any
    assert isinstance(negation, NotGroup)
    assert isinstance(negation.not_, Condition)
    assert negation.not_.operator is Operator.EXISTS
    assert empty == AllGroup(all=[])


def test_segment_tree_round_trips_through_json_by_alias() -> None:
    segment = Segment.model_validate(
        {
            "segment_id": "s1",
            "definition": {"not": {"attribute": "x", "operator": "missing"}},
        }
    )
    dumped = segment.model_dump(mode="json", by_alias=True)
    assert dumped["definition"] == {
        "not": {"attribute": "x", "operator": "missing", "value": None}
    }
    assert Segment.model_validate(dumped) == segment


@pytest.mark.parametrize(
    "raw",
    [
        {"any": []},
        {"all": "everyone"},
        {"not": [{"attribute": "x", "operator": "exists"}]},
        {"all": [{"attribute": "x", "operator": "in", "value": []}]},
        {"nothing": 1},
        {"all": [["x"]]},
        {"all": ["title"]},
        {"all": [None]},
        {"all": [7]},
        "title",
        None,
    ],
    ids=[
        "empty-any",
        "all-not-a-list",
        "not-of-a-list",
        "bad-inner-condition",
        "junk",
        "list-child",
        "text-child",
        "null-child",
        "number-child",
        "text-root",
        "null-root",
    ],
)
def test_malformed_segment_tree_is_a_validation_error(raw: Any) -> None:
    # A TypeError here would crash the config worker instead of dead-lettering.
    with pytest.raises(ValidationError):
        node_adapter.validate_python(raw)


@pytest.mark.parametrize("operator", ["gt", "gte", "lt", "lte", "eq", "ne"])
@pytest.mark.parametrize(
    "value", ["2020-13-45", "2024-02-30", "2023-02-29", "0000-01-01", " 2020-00-10 "]
)
def test_a_date_shaped_value_that_is_no_calendar_date_is_refused(
    operator: str, value: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Condition.model_validate(
            {"attribute": "hire_date", "operator": operator, "value": value}
        )

    message = raised.value.errors()[0]["msg"]
    assert f"condition hire_date {operator} compares with {value!r}" in message
    assert "no calendar date; expected a real yyyy-mm-dd date" in message


@pytest.mark.parametrize("operator", ["in", "not_in"])
def test_a_list_item_that_is_no_calendar_date_is_refused(operator: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Condition.model_validate(
            {
                "attribute": "hire_date",
                "operator": operator,
                "value": ["2024-02-28", "2024-02-30"],
            }
        )

    message = raised.value.errors()[0]["msg"]
    assert "compares with '2024-02-30', which is no calendar date" in message


@pytest.mark.parametrize("value", ["1_000", "1_000.5", "1e1_0", "nan", "-inf", "1e400"])
def test_a_number_text_json_and_sql_do_not_read_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Condition.model_validate(
            {"attribute": "salary", "operator": "lt", "value": value}
        )

    message = raised.value.errors()[0]["msg"]
    assert f"condition salary lt compares with {value!r}" in message
    assert "expected a finite number without underscores" in message


BLANK_TEXTS = [
    "",
    "   ",
    "\t\n",
    "\u00a0",
    "\u200b",
    "\u200e\u200f",
    "\u00ad",
    "\ufeff ",
]


@pytest.mark.parametrize(
    "operator",
    ["eq", "ne", "contains", "not_contains", "starts_with", "includes", "excludes"],
)
@pytest.mark.parametrize("value", BLANK_TEXTS)
def test_text_that_normalises_to_nothing_is_refused(operator: str, value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Condition.model_validate(
            {"attribute": "title", "operator": operator, "value": value}
        )

    message = raised.value.errors()[0]["msg"]
    assert f"condition title {operator} compares with {value!r}" in message
    assert "blank once normalised; expected text with a visible character" in message


@pytest.mark.parametrize("operator", ["in", "not_in"])
@pytest.mark.parametrize("value", BLANK_TEXTS)
def test_a_list_item_that_normalises_to_nothing_is_refused(
    operator: str, value: str
) -> None:
    with pytest.raises(ValidationError, match="blank once normalised"):
        Condition.model_validate(
            {"attribute": "dept", "operator": operator, "value": ["IT", value]}
        )


def test_a_blank_condition_is_refused_where_it_sits_in_a_segment() -> None:
    raw = {
        "segment_id": "s1",
        "definition": {
            "all": [
                {"attribute": "title", "operator": "exists"},
                {"any": [{"attribute": "title", "operator": "contains", "value": ""}]},
            ]
        },
    }

    with pytest.raises(ValidationError) as raised:
        Segment.model_validate(raw)

    (error,) = raised.value.errors()
    assert error["loc"] == ("definition", "all", "all", 1, "any", "any", 0, "condition")
    assert "condition title contains compares with ''" in error["msg"]


@pytest.mark.parametrize(
    "condition",
    [
        {"attribute": "hire_date", "operator": "gt", "value": "2020-13-45"},
        {"attribute": "salary", "operator": "lt", "value": "1_000"},
        {"attribute": "title", "operator": "contains", "value": ""},
        {"attribute": "dept", "operator": "in", "value": ["IT", "\u200b"]},
    ],
)
def test_a_segment_stored_before_these_checks_still_loads(
    condition: dict[str, Any],
) -> None:
    stored = {"segment_id": "s1", "definition": condition}

    segment = Segment.model_validate(stored, context={ACCEPTED_BEFORE: True})

    assert segment.definition == Condition.model_validate(
        condition, context={ACCEPTED_BEFORE: True}
    )


@pytest.mark.parametrize(
    "aliases", [{"\u200b": "Senior"}, {"Sr.": "\u200e"}, {"Sr.": " "}]
)
def test_an_alias_that_normalises_to_nothing_is_refused(
    aliases: dict[str, str],
) -> None:
    with pytest.raises(ValidationError, match="not all space or invisible"):
        Segment.model_validate(
            {
                "segment_id": "s1",
                "definition": {"all": []},
                "aliases": aliases,
            }
        )
