"""Compiled segments and the fast decision path give the reference answers.

rules.segments.matches and rules.evaluation.evaluate_person state the
semantics plainly; the engine's hot loop uses compiled segments and a search
that stops at the deciding rule. Over generated untidy people, segments,
aliases and rule orders, both must always agree.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.aliases import Aliases
from rules.compiled import compile_segment
from rules.evaluation import Decision, decide_person, evaluate_person
from rules.ruleset import Pair, RuleSet
from rules.search import search_document
from rules.segments import matches
from schemas.membership import MembershipAction
from schemas.segments import Segment, SegmentNode
from tests.strategies import (
    PAIRS,
    TODAY,
    alias_maps,
    attribute_maps,
    nodes,
    rule_lists,
    seen_values,
)

PROPERTY = settings(max_examples=300, deadline=None)
# Days on and around the window bounds the generated day counts use.
DAYS = st.integers(-40, 40).map(lambda offset: TODAY + timedelta(days=offset))


@st.composite
def segments_over(
    draw: st.DrawFn, people: list[dict[str, Any]]
) -> tuple[SegmentNode, dict[str, str]]:
    """A segment and its aliases, partly built from the people's own values."""
    seen = seen_values(people)
    return draw(nodes(seen=seen)), draw(alias_maps(seen))


@PROPERTY
@given(data=st.data(), people=st.lists(attribute_maps(), min_size=1, max_size=4))
def test_a_compiled_segment_answers_as_the_tree_does(
    data: st.DataObject, people: list[dict[str, Any]]
) -> None:
    node, aliases = data.draw(segments_over(people))
    today = data.draw(DAYS)
    in_segment = compile_segment(node, Aliases.build(aliases))
    for attributes in people:
        expected = matches(node, attributes, today, aliases)
        document = search_document(attributes)
        assert in_segment(document, today.toordinal()) == expected


def reference_decisions(
    ruleset: RuleSet,
    attributes: dict[str, Any],
    memberships: set[Pair],
    pairs: set[Pair] | None,
) -> list[Decision]:
    """The decisions as evaluate_person's full outcomes state them."""
    decisions = []
    for outcome in evaluate_person(ruleset, attributes, memberships, TODAY, pairs):
        if outcome.changed and outcome.deciding_rule is not None:
            program_id, role = outcome.pair
            action = (
                MembershipAction.ADDED
                if outcome.is_member
                else MembershipAction.REMOVED
            )
            decisions.append(
                Decision(program_id, role, "p-1", action, outcome.deciding_rule.rule_id)
            )
    return decisions


@PROPERTY
@given(
    data=st.data(),
    people=st.lists(attribute_maps(), min_size=1, max_size=3),
    memberships=st.sets(st.sampled_from(PAIRS)),
    only=st.none() | st.sets(st.sampled_from(PAIRS)),
)
def test_the_fast_decision_path_decides_as_the_full_evaluation(
    data: st.DataObject,
    people: list[dict[str, Any]],
    memberships: set[Pair],
    only: set[Pair] | None,
) -> None:
    drawn = data.draw(st.lists(segments_over(people), min_size=1, max_size=4))
    segments = [
        Segment(segment_id=f"s{index}", definition=node, aliases=aliases)
        for index, (node, aliases) in enumerate(drawn)
    ]
    ruleset = RuleSet.build(data.draw(rule_lists(len(segments))), segments)
    for attributes in people:
        expected = reference_decisions(ruleset, attributes, memberships, only)
        found = decide_person("p-1", ruleset, attributes, memberships, TODAY, only)
        assert found == expected
