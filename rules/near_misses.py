"""Near misses: attribute values that just miss a segment's text conditions.

A value is a near miss of a condition when it matches only through one of the
segment's declared aliases, or when it misses but is a small edit away from a
value the condition names. Both tell an admin where to mend a segment; neither
ever changes what the segment matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rules.aliases import Aliases
from rules.segments import as_aliases, condition_matches, iter_conditions
from rules.values import as_text
from schemas.segments import Condition, Operator, Segment

# The operators whose values name the texts a person should have. contains and
# includes conditions get no near misses: a fragment or a list item has no
# whole text to be a small edit away from.
_NAMED_TEXT_OPERATORS = frozenset(
    {Operator.EQ, Operator.NE, Operator.IN, Operator.NOT_IN, Operator.STARTS_WITH}
)
# How far, in single-character edits, a miss may be from a named text.
MAX_EDITS = 2


@dataclass(frozen=True, order=True)
class NearMiss:
    """One attribute value that narrowly misses one condition."""

    attribute: str
    operator: str
    expected: str
    value: str
    kind: str  # "alias" or "edit"
    edits: int


def find_near_misses(
    segment: Segment, people: Iterable[Mapping[str, Any]]
) -> Counter[NearMiss]:
    """Count, for each text condition of the segment, the values near it."""
    aliases = as_aliases(segment.aliases)
    conditions = [
        condition
        for condition in iter_conditions(segment.definition)
        if condition.operator in _NAMED_TEXT_OPERATORS
    ]
    values: Counter[tuple[str, str]] = Counter()
    for attributes in people:
        for condition in conditions:
            actual = attributes.get(condition.attribute)
            if isinstance(actual, str):
                values[(condition.attribute, actual)] += 1

    found: Counter[NearMiss] = Counter()
    for condition in conditions:
        for (attribute, actual), count in values.items():
            if attribute != condition.attribute:
                continue
            miss = _near_miss(condition, actual, aliases)
            if miss is not None:
                found[miss] += count
    return found


def _near_miss(condition: Condition, actual: str, aliases: Aliases) -> NearMiss | None:
    """Return the nearest way actual misses the condition, or None."""
    attributes = {condition.attribute: actual}
    named = [_single(condition, expected) for expected in _named_texts(condition)]
    if any(condition_matches(single, attributes, _ANY_DAY) for single in named):
        return None
    for single in named:
        if condition_matches(single, attributes, _ANY_DAY, aliases):
            return _miss(condition, str(single.value), actual, "alias", 0)

    text = aliases.apply(as_text(actual) or "")
    best: tuple[int, str] | None = None
    for single in named:
        target = aliases.apply(as_text(single.value) or "")
        if single.operator is Operator.STARTS_WITH:
            text_compared = text[: len(target)]
        else:
            text_compared = text
        edits = edit_distance(text_compared, target)
        if 0 < edits <= _allowed_edits(target) and (best is None or edits < best[0]):
            best = (edits, str(single.value))
    if best is None:
        return None
    return _miss(condition, best[1], actual, "edit", best[0])


def edit_distance(first: str, second: str) -> int:
    """Return the number of single-character edits between two texts.

    An edit inserts, deletes or replaces one character, or swaps two adjacent
    ones, the commonest typing slip (optimal string alignment distance).
    """
    rows = [list(range(len(second) + 1))]
    for row, left in enumerate(first, start=1):
        current = [row]
        for column, right in enumerate(second, start=1):
            cost = min(
                rows[-1][column] + 1,
                current[column - 1] + 1,
                rows[-1][column - 1] + (left != right),
            )
            swapped = (
                row > 1
                and column > 1
                and left == second[column - 2]
                and first[row - 2] == right
            )
            if swapped:
                cost = min(cost, rows[-2][column - 2] + 1)
            current.append(cost)
        # A swap looks two rows back; nothing needs more.
        rows = [rows[-1], current]
    return rows[-1][-1]


def _allowed_edits(target: str) -> int:
    # One edit in a word of three letters or fewer makes another word too often
    # ("IT", "IS"); longer words allow one edit per four letters.
    return min(MAX_EDITS, len(target) // 4)


def _miss(
    condition: Condition, expected: str, actual: str, kind: str, edits: int
) -> NearMiss:
    return NearMiss(
        condition.attribute, condition.operator.value, expected, actual, kind, edits
    )


def _single(condition: Condition, expected: str) -> Condition:
    """The positive condition naming one of the condition's texts."""
    operator = Operator.STARTS_WITH
    if condition.operator is not Operator.STARTS_WITH:
        operator = Operator.EQ
    return Condition(attribute=condition.attribute, operator=operator, value=expected)


def _named_texts(condition: Condition) -> list[str]:
    values = condition.value if isinstance(condition.value, list) else [condition.value]
    return [str(value) for value in values]


# Text conditions do not depend on the day.
_ANY_DAY = date(2000, 1, 1)
