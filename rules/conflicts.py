"""Conflicts: people matched by both an add and a remove rule of one program role."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rules.evaluation import SegmentCache
from rules.ruleset import RuleSet
from rules.search import search_document
from schemas.segments import Role, RuleAction


@dataclass(frozen=True, order=True)
class RulePair:
    """An add rule and a remove rule of the same program role."""

    program_id: str
    role: Role
    add_rule_id: str
    add_position: int
    remove_rule_id: str
    remove_position: int

    @property
    def winner(self) -> str:
        """The rule that decides for people matched by both: the later one."""
        if self.add_position > self.remove_position:
            return self.add_rule_id
        return self.remove_rule_id


def count_conflicts(
    ruleset: RuleSet, people: Iterable[Mapping[str, Any]], today: date
) -> Counter[RulePair]:
    """Count, for each add and remove rule pair, the people both match.

    Only there does dashboard order decide the outcome.
    """
    counts: Counter[RulePair] = Counter()
    for attributes in people:
        document = search_document(attributes)
        in_segment = SegmentCache(ruleset.predicates, document, today)
        for (program_id, role), rules in ruleset.by_pair.items():
            matched = [rule for rule in rules if in_segment(rule.segment_id)]
            adds = [rule for rule in matched if rule.action is RuleAction.ADD]
            removes = [rule for rule in matched if rule.action is RuleAction.REMOVE]
            for add in adds:
                for remove in removes:
                    pair = RulePair(
                        program_id,
                        role,
                        add.rule_id,
                        add.position,
                        remove.rule_id,
                        remove.position,
                    )
                    counts[pair] += 1
    return counts
