"""Explanations of why a person is or is not in a program role."""

from __future__ import annotations

from rules.explain import ConditionTrace, explain_person, trace_segment
from rules.ruleset import RuleSet
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

SEGMENTS = [
    segment("sales", cond("department", "eq", "Sales")),
    segment("managers", cond("title", "contains", "manager")),
]
PERSON = {"department": "Sales", "title": "Sales Rep"}


def test_explanation_names_the_deciding_rule_and_traces_every_rule() -> None:
    ruleset = RuleSet.build(
        [
            rule("add-sales", ADD, "sales", 0),
            rule("no-managers", REMOVE, "managers", 1),
        ],
        SEGMENTS,
    )
    [explanation] = explain_person(ruleset, PERSON, set(), TODAY)
    assert explanation.outcome.is_member is True
    assert explanation.verdict == (
        "in p1 as mentee: decided by add rule 'add-sales' (position 0),"
        " the last that matches"
    )
    assert [
        (t.rule_id, t.action, t.position, t.matched) for t in explanation.rules
    ] == [
        ("add-sales", "add", 0, True),
        ("no-managers", "remove", 1, False),
    ]
    assert explanation.rules[1].conditions == (
        ConditionTrace(0, "title contains 'manager' (is 'Sales Rep')", False),
    )


def test_explanation_when_the_later_remove_rule_decides() -> None:
    ruleset = RuleSet.build(
        [
            rule("add-sales", ADD, "sales", 0),
            rule("no-managers", REMOVE, "managers", 1),
        ],
        SEGMENTS,
    )
    manager = {"department": "Sales", "title": "Sales Manager"}
    [explanation] = explain_person(ruleset, manager, {("p1", MENTEE)}, TODAY)
    assert explanation.outcome.is_member is False
    assert explanation.verdict.startswith(
        "not in p1 as mentee: decided by remove rule 'no-managers' (position 1)"
    )
    assert [t.matched for t in explanation.rules] == [True, True]


def test_explanation_when_no_rule_matches_keeps_the_state() -> None:
    ruleset = RuleSet.build(
        [rule("mentors", ADD, "managers", 0, role=MENTOR)], SEGMENTS
    )
    [explanation] = explain_person(ruleset, PERSON, {("p1", MENTOR)}, TODAY)
    assert explanation.verdict == "in p1 as mentor: no rule matches, state kept"
    [explanation] = explain_person(ruleset, PERSON, set(), TODAY)
    assert explanation.verdict == "not in p1 as mentor: no rule matches, state kept"


def test_trace_segment_indents_groups_and_reports_each_result() -> None:
    definition = all_of(
        cond("department", "in", ["Sales", "IT"]),
        any_of(cond("title", "starts_with", "lead"), not_(cond("location", "exists"))),
    )
    assert trace_segment(definition, PERSON, TODAY) == [
        ConditionTrace(0, "all of", True),
        ConditionTrace(1, "department in ['Sales', 'IT'] (is 'Sales')", True),
        ConditionTrace(1, "any of", True),
        ConditionTrace(2, "title starts_with 'lead' (is 'Sales Rep')", False),
        ConditionTrace(2, "not", True),
        ConditionTrace(3, "location exists (not known)", False),
    ]


def test_the_condition_lines_apply_the_segment_aliases():
    from rules.explain import trace_segment
    from rules.segments import as_aliases
    from tests.unit.factories import TODAY, all_of, cond

    definition = all_of(cond("title", "starts_with", "Senior"))
    aliases = as_aliases({"Sr.": "Senior"})

    lines = trace_segment(definition, {"title": "Sr. Analyst"}, TODAY, aliases)

    assert [line.held for line in lines] == [True, True]
