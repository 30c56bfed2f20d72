"""The SQL compilation of segments and rule sets: shape and parameters, no database.

Whether the SQL gives the Python answer is checked on PostgreSQL in
tests/integration/test_sweep_sql.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from rules.aliases import NO_ALIASES, SQL_FUNCTION, Aliases
from rules.ruleset import RuleSet
from rules.sql import CompiledSegments, compile_decisions, compile_segments
from schemas.common import ACCEPTED_BEFORE
from schemas.segments import Condition, Operator, SegmentNode
from tests.unit.factories import (
    ADD,
    MENTEE,
    MENTOR,
    REMOVE,
    TODAY,
    all_of,
    any_of,
    cond,
    not_,
    rule,
    segment,
)

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


def compile_one(
    node: SegmentNode, aliases: Aliases = NO_ALIASES, today: Any = TODAY
) -> CompiledSegments:
    return compile_segments({"s": (node, aliases)}, today)


def text_of(compiled: CompiledSegments) -> str:
    return compiled.source + " " + " ".join(compiled.segments.values())


def placeholders(text: str) -> list[str]:
    return re.findall(r"%\((\w+)\)s", text)


@pytest.mark.parametrize("operator", list(Operator))
def test_attribute_names_and_values_are_parameters_never_sql_text(
    operator: Operator,
) -> None:
    compiled = compile_one(cond(HOSTILE, operator, VALUE_FOR[operator]))
    text = text_of(compiled)

    assert "DROP" not in text
    assert "'x'" not in text
    # The attribute name travels too: alone, or in a path into the search copy.
    assert any(
        value == HOSTILE or (isinstance(value, list) and HOSTILE in value)
        for value in compiled.params.values()
    )
    # Every placeholder names a parameter, and every % opens a placeholder.
    assert set(placeholders(text)) == set(compiled.params)
    assert text.count("%") == len(placeholders(text))


@pytest.mark.parametrize("operator", list(Operator))
def test_every_condition_is_wrapped_so_that_it_is_never_null(
    operator: Operator,
) -> None:
    compiled = compile_one(cond("x", operator, VALUE_FOR[operator]))
    assert "COALESCE(" in compiled.source


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
    compiled = compile_segments(
        {
            "held": (cond("x", positive, value), NO_ALIASES),
            "negated": (cond("x", negative, value), NO_ALIASES),
        },
        TODAY,
    )
    # Both read the one condition column the positive form compiles to.
    assert compiled.segments["negated"] == f"(NOT {compiled.segments['held']})"
    assert compiled.source.count("COALESCE(") == 1


def test_shared_conditions_and_shared_values_are_computed_once() -> None:
    first = all_of(cond("dept", "eq", "IT"), cond("level", "gte", 7))
    second = all_of(cond("dept", "eq", " it"), cond("dept", "ne", "HR"))
    compiled = compile_segments(
        {"a": (first, NO_ALIASES), "b": (second, NO_ALIASES)}, TODAY
    )
    # dept's text and level's number are read once; three distinct conditions.
    assert compiled.source.count("#>>") == 1
    assert compiled.source.count("#>") == 2
    assert compiled.source.count("COALESCE(") == 3
    assert compiled.segments == {
        "a": "(p.k0 AND p.k1)",
        "b": "(p.k0 AND (NOT p.k2))",
    }


def test_today_is_a_parameter_so_the_sql_text_does_not_change_with_it() -> None:
    segment_node = all_of(cond("hire_date", "within_last", 30))
    now = compile_one(segment_node)
    later = compile_one(segment_node, today=TODAY + timedelta(days=1))
    assert text_of(now) == text_of(later)
    assert TODAY.toordinal() in now.params.values()
    assert TODAY.toordinal() + 1 in later.params.values()


def test_day_counts_past_the_calendar_are_clamped_to_an_sql_integer() -> None:
    compiled = compile_one(cond("hire_date", "within_next", 10**30))
    assert max(v for v in compiled.params.values() if isinstance(v, int)) < 2**31


def test_text_values_are_compared_normalised() -> None:
    compiled = compile_one(cond("title", "eq", "  Senior\u00a0\u200bENGINEER "))
    assert "senior engineer" in compiled.params.values()


def test_values_that_can_never_match_compile_to_false() -> None:
    # Conditions refuse such a date now; a segment stored before still loads.
    stored = Condition.model_validate(
        {"attribute": "hire_date", "operator": "gt", "value": "2024-13-45"},
        context={ACCEPTED_BEFORE: True},
    )
    impossible_date = compile_one(stored)
    assert "COALESCE(FALSE, FALSE)" in impossible_date.source
    assert not impossible_date.params


def test_empty_all_group_is_true_and_groups_nest() -> None:
    assert compile_one(all_of()).segments["s"] == "TRUE"
    nested = compile_one(any_of(all_of(), not_(cond("x", "exists"))))
    assert nested.segments["s"].startswith("(TRUE OR (NOT p.k0))")


def test_aliases_are_applied_to_the_value_and_passed_for_the_attribute() -> None:
    compiled = compile_one(
        cond("title", "eq", "Sr. Engineer"), Aliases.build({"Sr.": "Senior"})
    )
    assert SQL_FUNCTION in compiled.source
    assert ["sr."] in compiled.params.values()
    assert ["senior"] in compiled.params.values()
    assert "senior engineer" in compiled.params.values()


def test_no_alias_function_without_aliases() -> None:
    assert SQL_FUNCTION not in compile_one(cond("title", "eq", "x")).source


def test_only_active_persons_are_read_unless_asked_otherwise() -> None:
    segments = {"s": (cond("x", "exists"), NO_ALIASES)}
    assert "status = 'active'" in compile_segments(segments, TODAY).source
    everyone = compile_segments(segments, TODAY, active_only=False)
    assert "status" not in everyone.source


def test_decisions_try_each_pairs_rules_from_the_last_one_back() -> None:
    rules = RuleSet.build(
        [
            rule("first", ADD, "a", position=0, role=MENTOR),
            rule("second", REMOVE, "b", position=1, role=MENTOR),
            rule("mentees", ADD, "a", position=2, role=MENTEE),
        ],
        [segment("a", cond("x", "eq", "1")), segment("b", cond("y", "eq", "2"))],
    )

    decisions = compile_decisions(rules, TODAY)

    # Pairs sorted: (p1, mentee) first, then (p1, mentor).
    assert [r.rule_id for r in decisions.rules] == ["mentees", "first", "second"]
    assert decisions.rules[1].role is MENTOR
    cases = re.findall(r"CASE (.*?) END", decisions.sql)
    assert [re.findall(r"THEN (\d+)", case) for case in cases] == [["1"], ["3", "2"]]


def test_no_published_rule_decides_nothing() -> None:
    decisions = compile_decisions(RuleSet.build([], []), TODAY)
    assert decisions.rules == ()
    assert "WHERE FALSE" in decisions.sql
