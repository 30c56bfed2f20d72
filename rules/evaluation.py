"""Ordered rule evaluation: the last matching rule of a program role decides."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rules.compiled import Predicate
from rules.ruleset import ActiveRule, Pair, RuleSet
from rules.search import SearchDocument, search_document
from schemas.membership import MembershipAction
from schemas.segments import Role, RuleAction


@dataclass(frozen=True)
class PairOutcome:
    """How one program role came out for one person."""

    pair: Pair
    was_member: bool
    is_member: bool
    matched: tuple[ActiveRule, ...]
    deciding_rule: ActiveRule | None

    @property
    def changed(self) -> bool:
        """Whether the membership has to change."""
        return self.was_member != self.is_member


@dataclass(frozen=True)
class Decision:
    """One membership change for one person, and what decided it."""

    program_id: str
    role: Role
    person_id: str
    action: MembershipAction
    decided_by: str


def evaluate_pair(
    pair: Pair,
    rules: tuple[ActiveRule, ...],
    in_segment: Callable[[str], bool],
    was_member: bool,
) -> PairOutcome:
    """Walk the rules of one pair in dashboard order from the current state.

    An add rule whose segment holds the person sets the state to in, a
    remove rule sets it to out; the last matching rule decides, and when no
    rule matches the state stays as it was. Only the net result counts, so
    overlapping add and remove rules never flap.
    """
    matched = tuple(rule for rule in rules if in_segment(rule.segment_id))
    deciding_rule = matched[-1] if matched else None
    if deciding_rule is None:
        is_member = was_member
    else:
        is_member = deciding_rule.action is RuleAction.ADD
    return PairOutcome(pair, was_member, is_member, matched, deciding_rule)


class SegmentCache:
    """Evaluates each segment at most once for one person."""

    def __init__(
        self,
        predicates: Mapping[str, Predicate],
        document: SearchDocument,
        today: date,
    ) -> None:
        self._predicates = predicates
        self._document = document
        self._today = today.toordinal()
        self._results: dict[str, bool] = {}

    def __call__(self, segment_id: str) -> bool:
        """Return whether the person is in the segment."""
        result = self._results.get(segment_id)
        if result is None:
            in_segment = self._predicates[segment_id]
            result = in_segment(self._document, self._today)
            self._results[segment_id] = result
        return result


def evaluate_person(
    ruleset: RuleSet,
    attributes: Mapping[str, Any],
    memberships: Collection[Pair],
    today: date,
    pairs: Collection[Pair] | None = None,
) -> list[PairOutcome]:
    """Return the outcome of every (program, role) with rules, or of ``pairs``."""
    document = search_document(attributes)
    in_segment = SegmentCache(ruleset.predicates, document, today)
    return [
        evaluate_pair(
            pair, ruleset.by_pair.get(pair, ()), in_segment, pair in memberships
        )
        for pair in sorted(ruleset.by_pair if pairs is None else pairs)
    ]


def decide_person(
    person_id: str,
    ruleset: RuleSet,
    attributes: Mapping[str, Any],
    memberships: Collection[Pair],
    today: date,
    pairs: Collection[Pair] | None = None,
    *,
    document: SearchDocument | None = None,
) -> list[Decision]:
    """Return the membership changes the published rules make for one person.

    The answer is evaluate_person's, reached with less work: the deciding rule
    is the last match, so each pair's rules are tried from the last one back
    and the first match ends the search, and segments whose guard the person
    fails (rules.guards) are never evaluated. ``document`` is the search
    document of the attributes, when the caller has it already.
    """
    if document is None:
        document = search_document(attributes)
    # Segments the person cannot be in are skipped without being evaluated.
    possible = ruleset.segment_index.possible(document)
    predicates = ruleset.predicates
    day = today.toordinal()
    results: dict[str, bool] = {}
    decisions = []
    for pair, newest_first in ruleset.newest_first:
        if pairs is not None and pair not in pairs:
            continue
        deciding_rule = None
        for rule in newest_first:
            segment_id = rule.segment_id
            if segment_id not in possible:
                continue
            held = results.get(segment_id)
            if held is None:
                held = results[segment_id] = predicates[segment_id](document, day)
            if held:
                deciding_rule = rule
                break
        if deciding_rule is None:
            continue
        is_member = deciding_rule.action is RuleAction.ADD
        if is_member == (pair in memberships):
            continue
        action = MembershipAction.ADDED if is_member else MembershipAction.REMOVED
        program_id, role = pair
        decisions.append(
            Decision(program_id, role, person_id, action, deciding_rule.rule_id)
        )
    return decisions


def decide_departure(
    person_id: str, memberships: Collection[Pair], reason: str
) -> list[Decision]:
    """Return the removals from every program role for a person who left."""
    return [
        Decision(program_id, role, person_id, MembershipAction.REMOVED, reason)
        for program_id, role in sorted(memberships)
    ]
