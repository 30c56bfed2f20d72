"""The published rules, grouped by program and role in dashboard order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from rules.aliases import NO_ALIASES, Aliases
from rules.compiled import Predicate, compile_segment
from rules.errors import RuleOrderError, RulesError
from rules.flips import time_relative_conditions
from rules.guards import SegmentIndex
from schemas.segments import (
    Condition,
    Role,
    Rule,
    RuleAction,
    RuleStatus,
    Segment,
    SegmentNode,
)

Pair = tuple[str, Role]


@dataclass(frozen=True)
class ActiveRule:
    """A published rule with the definition of its segment."""

    rule_id: str
    action: RuleAction
    program_id: str
    role: Role
    segment_id: str
    position: int
    definition: SegmentNode
    # The aliases its segment declares, which matching the definition needs.
    aliases: Aliases = NO_ALIASES

    @property
    def pair(self) -> Pair:
        """The program and role this rule manages."""
        return (self.program_id, self.role)


@dataclass(frozen=True)
class RuleSet:
    """Published rules by (program, role), each list in dashboard order."""

    by_pair: Mapping[Pair, tuple[ActiveRule, ...]]
    segments: Mapping[str, SegmentNode]
    # Segments that declare aliases; any other segment has none.
    aliases: Mapping[str, Aliases] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[Rule], segments: Iterable[Segment]) -> RuleSet:
        """Group the published rules; raise RuleOrderError on a position tie.

        Raises RulesError when a published rule names an unknown segment.
        """
        saved = list(segments)
        definitions = {segment.segment_id: segment.definition for segment in saved}
        aliases = {
            segment.segment_id: Aliases.build(segment.aliases)
            for segment in saved
            if segment.aliases
        }
        published = sorted(
            (rule for rule in rules if rule.status is RuleStatus.PUBLISHED),
            key=lambda rule: rule.position,
        )
        check_positions_unique(published)

        by_pair: dict[Pair, list[ActiveRule]] = defaultdict(list)
        for rule in published:
            if rule.segment_id not in definitions:
                raise RulesError(
                    f"rule {rule.rule_id!r} uses unknown segment {rule.segment_id!r}"
                )
            active = ActiveRule(
                rule_id=rule.rule_id,
                action=rule.action,
                program_id=rule.program_id,
                role=rule.role,
                segment_id=rule.segment_id,
                position=rule.position,
                definition=definitions[rule.segment_id],
                aliases=aliases.get(rule.segment_id, NO_ALIASES),
            )
            by_pair[active.pair].append(active)
        return cls(
            by_pair={pair: tuple(found) for pair, found in by_pair.items()},
            segments=definitions,
            aliases=aliases,
        )

    @property
    def pairs(self) -> list[Pair]:
        """Every (program, role) that has a published rule, sorted."""
        return sorted(self.by_pair)

    def aliases_of(self, segment_id: str) -> Aliases:
        """The aliases a segment declares (none for an unknown segment)."""
        return self.aliases.get(segment_id, NO_ALIASES)

    @property
    def used_segments(self) -> dict[str, SegmentNode]:
        """The segments that some published rule uses."""
        return {
            rule.segment_id: rule.definition
            for found in self.by_pair.values()
            for rule in found
        }

    # A rule set is built once a config version and then asked about every
    # person, so what each question needs is prepared once, on first use.

    @cached_property
    def predicates(self) -> Mapping[str, Predicate]:
        """Every segment compiled, with its aliases, by segment id."""
        return {
            segment_id: compile_segment(definition, self.aliases_of(segment_id))
            for segment_id, definition in self.segments.items()
        }

    @cached_property
    def newest_first(self) -> tuple[tuple[Pair, tuple[ActiveRule, ...]], ...]:
        """Each pair, sorted, with its rules from last to first in dashboard order.

        The first of them whose segment holds a person is the deciding rule.
        """
        return tuple(
            (pair, tuple(reversed(self.by_pair[pair]))) for pair in sorted(self.by_pair)
        )

    @cached_property
    def segment_index(self) -> SegmentIndex:
        """The guards of the used segments, to skip those a person cannot be in."""
        return SegmentIndex(
            {
                segment_id: (definition, self.aliases_of(segment_id))
                for segment_id, definition in self.used_segments.items()
            }
        )

    @cached_property
    def timed_conditions(self) -> tuple[Condition, ...]:
        """The time-relative conditions of the used segments, each once."""
        return time_relative_conditions(self.used_segments.values())


def check_positions_unique(rules: Iterable[Rule]) -> None:
    """Raise RuleOrderError when two published rules share a position."""
    holders: dict[int, str] = {}
    for rule in rules:
        if rule.status is not RuleStatus.PUBLISHED:
            continue
        other = holders.setdefault(rule.position, rule.rule_id)
        if other != rule.rule_id:
            raise RuleOrderError(
                f"rules {other!r} and {rule.rule_id!r} share dashboard position"
                f" {rule.position}; expected a distinct position for each"
            )
