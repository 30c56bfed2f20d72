"""The SQL compilation of segments: shape and parameters, with no database.

Whether the SQL gives the Python answer is checked on PostgreSQL in
tests/integration/test_sweep_sql.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rules.aliases import SQL_FUNCTION
from rules.sql import compile_segment
from schemas.segments import Operator, SegmentNode
from tests.unit.factories import TODAY, all_of, any_of, cond, not_

HOSTILE = "x'); DROP TABLE persons; --"

VALUE_FOR: dict[Operator, Any] = {
    Operator.EQ: HOSTILE,
    Operator.NE: HOSTILE,
    Operator.IN: [HOSTILE, "50%"],
    Operator.NOT_IN: [HOSTILE, "50%"],
    Operator.CONTAINS: HOSTILE,
    Operator.NOT_CONTAINS: HOSTILE,
    Operator.STARTS_WITH: HOSTILE,
    Operator.EXISTS: None,
    Operator.MISSING: None,
    Operator.GT: "9000",
    Operator.GTE: 9000,
    Operator.LT: "2024-01-01",
    Operator.LTE: 1.5,
    Operator.INCLUDES: HOSTILE,
    Operator.EXCLUDES: HOSTILE,
    Operator.WITHIN_LAST: 30,
    Operator.MORE_THAN_AGO: 30,
    Operator.WITHIN_NEXT: 30,
    Operator.MORE_THAN_AHEAD: 30,
}


@pytest.mark.parametrize("operator", list(Operator))
def test_attribute_names_and_values_are_parameters_never_sql_text(
    operator: Operator,
) -> None:
    compiled = compile_segment(cond(HOSTILE, operator, VALUE_FOR[operator]), TODAY)
    assert "DROP" not in compiled.sql
    assert "'x'" not in compiled.sql
    assert HOSTILE in compiled.params
    assert compiled.sql.count("%s") == len(compiled.params)


@pytest.mark.parametrize("operator", list(Operator))
def test_every_condition_is_wrapped_so_that_it_is_never_null(
    operator: Operator,
) -> None:
    compiled = compile_segment(cond("x", operator, VALUE_FOR[operator]), TODAY)
    assert "COALESCE(" in compiled.sql


@pytest.mark.parametrize(
    ("negative", "positive"),
    [
        (Operator.NE, Operator.EQ),
        (Operator.NOT_IN, Operator.IN),
        (Operator.NOT_CONTAINS, Operator.CONTAINS),
        (Operator.MISSING, Operator.EXISTS),
        (Operator.EXCLUDES, Operator.INCLUDES),
    ],
)
def test_negative_operator_is_not_of_its_positive_form(
    negative: Operator, positive: Operator
) -> None:
    value = VALUE_FOR[positive]
    held = compile_segment(cond("x", positive, value), TODAY)
    negated = compile_segment(cond("x", negative, value), TODAY)

    # The positive form may open with an index hint, which the negation drops.
    check_at = held.sql.index("COALESCE(")
    hint_params = held.sql[:check_at].count("%s")
    check = held.sql[check_at:-1] if hint_params else held.sql
    assert negated.sql == f"(NOT {check})"
    assert negated.params == held.params[hint_params:]


def test_today_is_a_parameter_so_the_sql_text_does_not_change_with_it() -> None:
    segment = all_of(cond("hire_date", "within_last", 30))
    now = compile_segment(segment, TODAY)
    later = compile_segment(segment, TODAY + timedelta(days=1))
    assert now.sql == later.sql
    assert TODAY.toordinal() in now.params
    assert TODAY.toordinal() + 1 in later.params


def test_day_counts_past_the_calendar_are_clamped_to_an_sql_integer() -> None:
    compiled = compile_segment(cond("hire_date", "within_next", 10**30), TODAY)
    assert max(value for value in compiled.params if isinstance(value, int)) < 2**31


def test_text_values_are_compared_normalised() -> None:
    compiled = compile_segment(
        cond("title", "eq", "  Senior\u00a0\u200bENGINEER "), TODAY
    )
    assert "senior engineer" in compiled.params


def test_values_that_can_never_match_compile_to_false() -> None:
    impossible_date = compile_segment(cond("hire_date", "gt", "2024-13-45"), TODAY)
    assert impossible_date.sql == "COALESCE(FALSE, FALSE)"
    assert impossible_date.params == ()


def test_empty_all_group_is_true_and_groups_nest() -> None:
    assert compile_segment(all_of(), TODAY).sql == "TRUE"
    nested = compile_segment(
        any_of(all_of(), not_(cond("x", "exists"))), TODAY, table="person"
    )
    assert nested.sql.startswith("(TRUE OR (NOT COALESCE(")
    assert "person.search" in nested.sql


def test_aliases_are_applied_to_the_value_and_passed_for_the_attribute() -> None:
    compiled = compile_segment(
        cond("title", "eq", "Sr. Engineer"), TODAY, {"Sr.": "Senior"}
    )
    assert SQL_FUNCTION in compiled.sql
    assert ["sr."] in compiled.params
    assert ["senior"] in compiled.params
    assert "senior engineer" in compiled.params


def test_no_alias_function_without_aliases() -> None:
    assert SQL_FUNCTION not in compile_segment(cond("title", "eq", "x"), TODAY).sql


@pytest.mark.parametrize("table", ["p; DROP TABLE persons", "P", "1p", ""])
def test_table_alias_must_be_a_plain_identifier(table: str) -> None:
    with pytest.raises(ValueError, match="plain identifier"):
        compile_segment(all_of(), TODAY, table=table)


def test_equality_membership_and_list_conditions_carry_an_index_hint() -> None:
    equality = compile_segment(cond("dept", "eq", " IT "), TODAY)
    assert equality.sql.startswith("((p.search @> %s::jsonb) AND COALESCE(")
    assert equality.params[0] == '{"dept": {"t": "it"}}'

    membership = compile_segment(cond("dept", "in", ["IT", "it", ["x"]]), TODAY)
    assert membership.params[0] == '{"dept": {"t": "it"}}'
    assert membership.sql.count("@>") == 1

    listed = compile_segment(cond("skills", "includes", "SQL"), TODAY)
    assert listed.params[0] == '{"skills": {"i": ["sql"]}}'


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        (Operator.NE, "IT"),
        (Operator.NOT_IN, ["IT", "HR"]),
        (Operator.EXCLUDES, "SQL"),
    ],
)
def test_negated_conditions_carry_no_index_hint(operator: Operator, value: Any) -> None:
    compiled = compile_segment(cond("dept", operator, value), TODAY)

    assert "@>" not in compiled.sql
    assert compiled.sql.startswith("(NOT COALESCE(")
    assert not any(isinstance(param, str) and "{" in param for param in compiled.params)


@pytest.mark.parametrize("operator", [Operator.EQ, Operator.IN, Operator.INCLUDES])
def test_conditions_under_a_not_group_carry_no_index_hint(operator: Operator) -> None:
    value = ["IT"] if operator is Operator.IN else "IT"
    negated = not_(all_of(cond("dept", operator, value), cond("level", "gte", 3)))

    assert "@>" not in compile_segment(negated, TODAY).sql
    assert "@>" in compile_segment(not_(negated), TODAY).sql


@pytest.mark.parametrize(
    ("segment", "hints"),
    [
        (not_(cond("dept", "ne", "IT")), 1),
        (not_(not_(cond("dept", "eq", "IT"))), 1),
        (not_(not_(cond("dept", "ne", "IT"))), 0),
        (all_of(cond("dept", "eq", "IT"), not_(cond("skills", "includes", "SQL"))), 1),
        (any_of(cond("dept", "in", ["IT", "HR"]), cond("dept", "not_in", ["x"])), 2),
    ],
)
def test_index_hints_follow_the_polarity_of_the_whole_segment(
    segment: SegmentNode, hints: int
) -> None:
    compiled = compile_segment(segment, TODAY)

    assert compiled.sql.count("@>") == hints
    # Each containment test's placeholder, and no other, takes a document.
    texts_before = compiled.sql.split("%s")[:-1]
    for text_before, param in zip(texts_before, compiled.params, strict=True):
        is_document = isinstance(param, str) and param.startswith("{")
        assert text_before.endswith("p.search @> ") is is_document


def test_no_index_hint_where_the_index_cannot_answer() -> None:
    assert "@>" not in compile_segment(cond("title", "contains", "lead"), TODAY).sql
    assert "@>" not in compile_segment(cond("level", "gte", 3), TODAY).sql
    aliased = compile_segment(cond("title", "eq", "Sr."), TODAY, {"Sr.": "Senior"})
    assert "@>" not in aliased.sql
