"""Which segments a person can be in at all, found by lookups, not evaluation.

Most segments require an attribute to equal one of a few values (a department,
a location, a cost center) or a list to hold one (a skill). Such a condition is
the segment's guard: a person whose value is not among the guard's cannot be
in the segment, whatever the rest of it says. Indexing the guards by attribute
and value lets the incremental path skip, with one lookup an attribute, every
segment a person cannot be in, and evaluate only the others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rules.aliases import NO_ALIASES, Aliases
from rules.search import ITEMS, TEXT, SearchDocument
from rules.segments import comparable_text
from schemas.segments import AllGroup, Condition, Operator, SegmentNode

# Where a guard reads a person's values: their text, or their list's items.
_KINDS = {Operator.EQ: TEXT, Operator.IN: TEXT, Operator.INCLUDES: ITEMS}


@dataclass(frozen=True)
class Guard:
    """A person is in the segment only if attribute's kind holds one of values."""

    attribute: str
    kind: str
    values: frozenset[str]


def guard_of(node: SegmentNode, aliases: Aliases) -> Guard | None:
    """Return a condition every member of the segment meets, or None.

    Only equality, membership and list conditions at the top of the tree, or
    directly in its top ``all`` groups, qualify; segments with aliases have
    none, since the values a person holds would need rewriting first.
    """
    if aliases:
        return None
    if isinstance(node, Condition):
        return _condition_guard(node)
    if isinstance(node, AllGroup):
        for child in node.all:
            found = guard_of(child, aliases)
            if found is not None:
                return found
    return None


def _condition_guard(condition: Condition) -> Guard | None:
    kind = _KINDS.get(condition.operator)
    if kind is None:
        return None
    value = condition.value
    options = value if condition.operator is Operator.IN else [value]
    if not isinstance(options, list):
        return None
    texts = {comparable_text(option, NO_ALIASES) for option in options}
    # An option with no text matches nothing: a guard of no value holds no one.
    return Guard(
        condition.attribute, kind, frozenset(t for t in texts if t is not None)
    )


class SegmentIndex:
    """The segments' guards by attribute and value."""

    def __init__(self, segments: Mapping[str, tuple[SegmentNode, Aliases]]) -> None:
        unguarded = set()
        found: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        for segment_id, (node, aliases) in segments.items():
            guard = guard_of(node, aliases)
            if guard is None:
                unguarded.add(segment_id)
                continue
            for value in guard.values:
                found[(guard.attribute, guard.kind)][value].add(segment_id)
        self.unguarded = frozenset(unguarded)
        self._by_value = {
            where: {value: frozenset(ids) for value, ids in by_value.items()}
            for where, by_value in found.items()
        }

    def possible(self, document: SearchDocument) -> set[str]:
        """The segments a person with this search document may be in."""
        possible = set(self.unguarded)
        for (attribute, kind), by_value in self._by_value.items():
            entry = document.get(attribute)
            if entry is None:
                continue
            for value in _values(entry.get(kind), kind):
                ids = by_value.get(value)
                if ids is not None:
                    possible |= ids
        return possible


def _values(read: object, kind: str) -> Iterable[str]:
    if kind == ITEMS:
        return read if isinstance(read, list) else ()
    return (read,) if isinstance(read, str) else ()
