"""Explanations: why a person is or is not in a program role."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rules.aliases import NO_ALIASES, Aliases
from rules.evaluation import PairOutcome, evaluate_person
from rules.ruleset import Pair, RuleSet
from rules.segments import condition_matches, matches
from schemas.segments import AllGroup, AnyGroup, NotGroup, SegmentNode


@dataclass(frozen=True)
class ConditionTrace:
    """One line of a segment's evaluation, indented by its depth."""

    depth: int
    text: str
    held: bool


@dataclass(frozen=True)
class RuleTrace:
    """One rule of a pair, whether its segment matched, and why."""

    rule_id: str
    action: str
    position: int
    segment_id: str
    matched: bool
    conditions: tuple[ConditionTrace, ...]


@dataclass(frozen=True)
class PairExplanation:
    """How one program role came out for one person."""

    outcome: PairOutcome
    rules: tuple[RuleTrace, ...]

    @property
    def verdict(self) -> str:
        """One sentence on the result."""
        program_id, role = self.outcome.pair
        state = "in" if self.outcome.is_member else "not in"
        if self.outcome.deciding_rule is None:
            return f"{state} {program_id} as {role}: no rule matches, state kept"
        rule = self.outcome.deciding_rule
        return (
            f"{state} {program_id} as {role}: decided by {rule.action.value} rule"
            f" {rule.rule_id!r} (position {rule.position}), the last that matches"
        )


def explain_person(
    ruleset: RuleSet,
    attributes: Mapping[str, Any],
    memberships: Collection[Pair],
    today: date,
) -> list[PairExplanation]:
    """Explain every (program, role) with rules for one person."""
    explanations = []
    for outcome in evaluate_person(ruleset, attributes, memberships, today):
        traces = tuple(
            RuleTrace(
                rule_id=rule.rule_id,
                action=rule.action.value,
                position=rule.position,
                segment_id=rule.segment_id,
                matched=rule in outcome.matched,
                conditions=tuple(
                    trace_segment(rule.definition, attributes, today, rule.aliases)
                ),
            )
            for rule in ruleset.by_pair[outcome.pair]
        )
        explanations.append(PairExplanation(outcome, traces))
    return explanations


def trace_segment(
    node: SegmentNode,
    attributes: Mapping[str, Any],
    today: date,
    aliases: Aliases = NO_ALIASES,
    depth: int = 0,
) -> list[ConditionTrace]:
    """Return the evaluation of every group and condition of a segment."""
    held = matches(node, attributes, today, aliases)
    if isinstance(node, AllGroup | AnyGroup):
        kind = "all of" if isinstance(node, AllGroup) else "any of"
        children = node.all if isinstance(node, AllGroup) else node.any
        lines = [ConditionTrace(depth, kind, held)]
        for child in children:
            lines.extend(trace_segment(child, attributes, today, aliases, depth + 1))
        return lines
    if isinstance(node, NotGroup):
        return [
            ConditionTrace(depth, "not", held),
            *trace_segment(node.not_, attributes, today, aliases, depth + 1),
        ]
    actual = attributes.get(node.attribute)
    value = "" if node.value is None else f" {node.value!r}"
    # An absent attribute and one sent as null both read as not known.
    known = "not known" if actual is None else f"is {actual!r}"
    text = f"{node.attribute} {node.operator.value}{value} ({known})"
    held = condition_matches(node, attributes, today, aliases)
    return [ConditionTrace(depth, text, held)]
