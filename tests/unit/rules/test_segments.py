"""Segment evaluation in Python: operators, missing data, text, groups."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.segments import condition_matches, matches
from schemas.segments import Condition
from tests.unit.factories import TODAY, all_of, any_of, cond, not_


def holds(operator: str, value: Any, actual: Any, attribute: str = "x") -> bool:
    return matches(cond(attribute, operator, value), {attribute: actual}, TODAY)


def days_from_today(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        # equality and inequality
        ("eq", "Engineer", "Engineer", True),
        ("eq", "Engineer", "Engineering", False),
        ("eq", 9000, 9000, True),
        ("eq", 9000, 9000.0, True),
        ("eq", 9000, "9000", True),
        ("eq", True, True, True),
        ("eq", True, False, False),
        ("ne", "Engineer", "Engineer", False),
        ("ne", "Engineer", "Sales", True),
        ("eq", "Sales Manager", "Sales\u200e Manager\u200f", True),
        ("eq", "\u202bSales\u202c", "Sales", True),
        # membership in a list of values
        ("in", ["IT", "Finance"], "Finance", True),
        ("in", ["IT", "Finance"], "finance", True),
        ("in", ["IT", "Finance"], "Sales", False),
        ("in", [60, 90], 90, True),
        ("not_in", ["IT", "Finance"], "Sales", True),
        ("not_in", ["IT", "Finance"], "IT", False),
        # substrings
        ("contains", "manager", "Sales Manager", True),
        ("contains", "manager", "Sales Rep", False),
        ("not_contains", "manager", "Sales Rep", True),
        ("not_contains", "manager", "Sales Manager", False),
        ("starts_with", "sales", "Sales Manager", True),
        ("starts_with", "manager", "Sales Manager", False),
        # presence
        ("exists", None, "anything", True),
        ("exists", None, 0, True),
        ("missing", None, "anything", False),
        # numbers
        ("gt", 9000, 9001, True),
        ("gt", 9000, 9000, False),
        ("gte", 9000, 9000, True),
        ("gte", 9000, 8999.5, False),
        ("lt", 9000, 8999, True),
        ("lt", 9000, 9000, False),
        ("lte", 9000, 9000, True),
        ("lte", 9000, 9000.5, False),
        ("gt", 0.15, 0.2, True),
        ("gte", "9000", "9000", True),
        ("gt", 9000, "9001", True),
        ("gt", 9000, "not a number", False),
        # digits grouped by underscores are no number in JSON or SQL
        ("lt", 9000, "1_000", False),
        ("gt", 0, "1_000", False),
        ("lt", 9000, True, False),
        # ISO dates
        ("gt", "2020-01-01", "2020-01-02", True),
        ("gt", "2020-01-01", "2020-01-01", False),
        ("gte", "2020-01-01", "2020-01-01", True),
        ("gte", "2020-01-01", "2019-12-31", False),
        ("lt", "2020-01-01", "2019-12-31", True),
        ("lt", "2020-01-01", "2020-01-01", False),
        ("lte", "2020-01-01", "2020-01-01", True),
        ("lte", "2020-01-01", "2020-01-02", False),
        ("gt", "2020-01-01", date(2020, 1, 2), True),
        ("gt", "2020-01-01", "not a date", False),
        ("lt", "2020-01-01", 20191231, False),
        # a timestamp keeps the date it names: no time-zone conversion
        ("lte", "2020-01-01", "2020-01-01T23:30:00-08:00", True),
        ("gte", "2020-01-01", "2020-01-01T00:30:00+14:00", True),
        ("eq", "2020-01-01", "2020-01-01", True),
        # list-valued attributes
        ("includes", "python", ["Go", "Python"], True),
        ("includes", "python", ["Go", "Rust"], False),
        ("includes", "python", [], False),
        ("includes", "python", "Python", True),
        ("includes", 7, [1, 7], True),
        ("excludes", "python", ["Go", "Rust"], True),
        ("excludes", "python", ["Go", "Python"], False),
        ("excludes", "python", [], True),
    ],
)
def test_operator_compares_actual_with_value(
    operator: str, value: Any, actual: Any, expected: bool
) -> None:
    assert holds(operator, value, actual) is expected


@pytest.mark.parametrize(
    ("operator", "offset", "expected"),
    [
        ("within_last", -29, True),
        ("within_last", -30, True),
        ("within_last", -31, False),
        ("within_last", 0, True),
        ("within_last", 1, False),
        ("more_than_ago", -29, False),
        ("more_than_ago", -30, False),
        ("more_than_ago", -31, True),
        ("more_than_ago", 0, False),
        ("within_next", 29, True),
        ("within_next", 30, True),
        ("within_next", 31, False),
        ("within_next", 0, True),
        ("within_next", -1, False),
        ("more_than_ahead", 29, False),
        ("more_than_ahead", 30, False),
        ("more_than_ahead", 31, True),
        ("more_than_ahead", 0, False),
    ],
)
def test_time_relative_operator_bounds_at_n_minus_one_n_and_n_plus_one_days(
    operator: str, offset: int, expected: bool
) -> None:
    assert holds(operator, 30, days_from_today(offset), "hire_date") is expected


@pytest.mark.parametrize(
    ("operator", "offset", "expected"),
    [
        ("within_last", 0, True),
        ("within_last", -1, False),
        ("within_next", 0, True),
        ("within_next", 1, False),
        ("more_than_ago", -1, True),
        ("more_than_ahead", 1, True),
    ],
)
def test_zero_day_window_is_today_only(
    operator: str, offset: int, expected: bool
) -> None:
    assert holds(operator, 0, days_from_today(offset)) is expected


def test_time_relative_operator_reads_a_date_object_and_a_timestamp() -> None:
    assert holds("within_last", 30, TODAY - timedelta(days=30))
    assert holds("within_last", 30, datetime(2024, 5, 16, 23, 59))
    assert not holds("within_last", 30, "2024-05-15T23:59:59+00:00")


def test_time_relative_operator_on_a_non_date_is_false() -> None:
    assert not holds("within_last", 30, "yesterday")
    assert not holds("more_than_ago", 30, 12)
    assert not holds("within_next", 30, ["2024-06-16"])


VALUE_FOR = {
    "eq": "a",
    "in": ["a"],
    "contains": "a",
    "starts_with": "a",
    "exists": None,
    "gt": 1,
    "gte": "2020-01-01",
    "lt": 1,
    "lte": "2020-01-01",
    "includes": "a",
    "within_last": 30,
    "more_than_ago": 30,
    "within_next": 30,
    "more_than_ahead": 30,
}
NEGATION_OF = {
    "ne": "eq",
    "not_in": "in",
    "not_contains": "contains",
    "missing": "exists",
    "excludes": "includes",
}


@pytest.mark.parametrize("attributes", [{}, {"x": None}], ids=["absent", "null"])
@pytest.mark.parametrize("operator", sorted(VALUE_FOR))
def test_missing_or_null_attribute_never_matches_a_positive_condition(
    operator: str, attributes: dict[str, Any]
) -> None:
    assert matches(cond("x", operator, VALUE_FOR[operator]), attributes, TODAY) is False


@pytest.mark.parametrize("attributes", [{}, {"x": None}], ids=["absent", "null"])
@pytest.mark.parametrize("operator", sorted(NEGATION_OF))
def test_missing_or_null_attribute_matches_every_negative_condition(
    operator: str, attributes: dict[str, Any]
) -> None:
    value = VALUE_FOR[NEGATION_OF[operator]]
    assert matches(cond("x", operator, value), attributes, TODAY) is True


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "A", " a ", "ab", "ba", "2024-06-01", "1e3", "", "\u200b"]),
    st.text(max_size=8),
)
attribute_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
    st.dates().map(date.isoformat),
)


@settings(max_examples=200, deadline=None)
@given(
    negative=st.sampled_from(sorted(NEGATION_OF)),
    comparand=st.sampled_from(["a", "2024-06-01", 7, True]),
    actual=attribute_values,
)
def test_negative_operator_is_the_exact_negation_of_its_positive_form(
    negative: str, comparand: Any, actual: Any
) -> None:
    positive = NEGATION_OF[negative]
    if positive == "exists":
        value: Any = None
    elif positive == "in":
        value = [comparand, "other"]
    else:
        value = comparand
    attributes = {"x": actual}
    assert matches(cond("x", negative, value), attributes, TODAY) is not matches(
        cond("x", positive, value), attributes, TODAY
    )


VALID_CONDITIONS = [
    cond("x", operator, value)
    for operator, value in [
        *VALUE_FOR.items(),
        ("ne", "a"),
        ("not_in", ["a", 1]),
        ("not_contains", "a"),
        ("missing", None),
        ("excludes", "a"),
        ("gt", "2024-01-01"),
        ("lt", "12.5"),
    ]
]


@settings(max_examples=200, deadline=None)
@given(condition=st.sampled_from(VALID_CONDITIONS), actual=attribute_values)
def test_no_attribute_value_makes_a_condition_raise(
    condition: Condition, actual: Any
) -> None:
    result = condition_matches(condition, {"x": actual}, TODAY)
    assert isinstance(result, bool)


@pytest.mark.parametrize(
    ("value", "actual"),
    [
        ("Sales Manager", "SALES MANAGER"),
        ("Sales Manager", "  Sales   Manager  "),
        ("Sales Manager", "Sales\tManager\n"),
        ("Sales Manager", "Sales\u00a0Manager"),
        ("Sales Manager", "Sales\u202fManager"),
        ("Sales Manager", "Sa\u200bles Mana\u200dger\ufeff"),
        ("Sales Manager", "Sales \u00adManager"),
        ("Sales Manager", "Ｓａｌｅｓ Ｍａｎａｇｅｒ"),
        ("office", "o\ufb03ce"),
        ("Straße", "STRASSE"),
        ("Café", "Cafe\u0301"),
    ],
)
def test_string_equality_is_normalised(value: str, actual: str) -> None:
    assert holds("eq", value, actual)
    assert not holds("ne", value, actual)


def test_string_operators_all_normalise_both_sides() -> None:
    assert holds("contains", " MANAGER\u200b", "Sales\u00a0Manager")
    assert holds("starts_with", "ｓａｌｅｓ  rep", "Sales Representative")
    assert holds("in", ["ＩＴ", "Finance"], "it")
    assert holds("includes", "python", ["  PYTHON\u200b"])


def test_normalisation_does_not_join_distinct_words() -> None:
    assert not holds("eq", "Sales Manager", "SalesManager")
    assert not holds("eq", "Sales Manager", "Sales Managers")


ENGINEER = {"title": "Engineer", "department": "IT", "salary": 9000}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (all_of(), True),
        (all_of(cond("title", "eq", "engineer"), cond("department", "eq", "IT")), True),
        (
            all_of(cond("title", "eq", "engineer"), cond("department", "eq", "HR")),
            False,
        ),
        (any_of(cond("title", "eq", "manager"), cond("department", "eq", "IT")), True),
        (any_of(cond("title", "eq", "manager"), cond("department", "eq", "HR")), False),
        (not_(cond("department", "eq", "IT")), False),
        (not_(cond("department", "eq", "HR")), True),
        (not_(not_(cond("department", "eq", "IT"))), True),
        (not_(cond("location", "eq", "Paris")), True),
        (
            all_of(
                cond("salary", "gte", 9000),
                any_of(
                    cond("title", "contains", "manager"),
                    not_(cond("department", "in", ["HR", "Sales"])),
                ),
            ),
            True,
        ),
        (
            all_of(
                cond("salary", "gte", 9000),
                any_of(
                    cond("title", "contains", "manager"),
                    not_(cond("department", "in", ["IT", "Sales"])),
                ),
            ),
            False,
        ),
        (
            any_of(
                all_of(cond("salary", "gt", 9000), cond("title", "exists")),
                all_of(cond("location", "missing"), cond("salary", "lte", 9000)),
            ),
            True,
        ),
        (all_of(any_of(not_(all_of(cond("title", "ne", "engineer"))))), True),
    ],
)
def test_nested_groups_combine_their_children(definition: Any, expected: bool) -> None:
    assert matches(definition, ENGINEER, TODAY) is expected


def test_custom_fields_are_attributes_like_any_other() -> None:
    segment = all_of(
        cond("cost_center", "eq", "CC-42"), cond("business_unit", "starts_with", "emea")
    )
    assert matches(
        segment, {"cost_center": "cc-42", "business_unit": "EMEA North"}, TODAY
    )
    assert not matches(segment, {"cost_center": "cc-42"}, TODAY)
