"""When a person's time-relative segment outcomes can next change by themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from rules.search import DAY, SearchDocument, search_document
from rules.segments import iter_conditions
from schemas.segments import (
    Condition,
    Operator,
    SegmentNode,
)


def next_flip(
    segments: Iterable[SegmentNode], attributes: Mapping[str, Any], today: date
) -> date | None:
    """Return the first day after today on which these segments can change.

    Only time-relative conditions change with no event; None when none of them
    applies to these attributes. Until that day every segment gives today's
    answer, so the person needs no re-evaluation before it unless an event
    arrives.
    """
    conditions = time_relative_conditions(segments)
    return first_flip(conditions, search_document(attributes), today)


def time_relative_conditions(segments: Iterable[SegmentNode]) -> tuple[Condition, ...]:
    """The conditions of these segments that change with time, each once."""
    found = {
        (condition.attribute, condition.operator, condition.value): condition
        for segment in segments
        for condition in iter_conditions(segment)
        if condition.operator in _WINDOWS
    }
    return tuple(found.values())


def first_flip(
    conditions: Iterable[Condition], document: SearchDocument, today: date
) -> date | None:
    """Return the first day after today on which one of these conditions changes.

    The conditions are time-relative ones (see time_relative_conditions), read
    over a person's search document (rules.search).
    """
    after = today.toordinal()
    upcoming = _LAST + 1
    for condition in conditions:
        entry = document.get(condition.attribute)
        day = None if entry is None else entry.get(DAY)
        if day is None:
            continue
        for flip in _flip_days(condition, day):
            if after < flip < upcoming:
                upcoming = flip
    return date.fromordinal(upcoming) if upcoming <= _LAST else None


def _flip_days(condition: Condition, day: int) -> tuple[int, ...]:
    """The day numbers on which the condition's answer differs from the day before.

    A flip past the calendar's ends never comes: the caller drops it.
    """
    days = int(condition.value)  # type: ignore[arg-type]
    # Each window is the set of "today"s for which the condition holds; it
    # changes on the window's first day and on the day after its last.
    if condition.operator is Operator.WITHIN_LAST:  # today in [day, day + N]
        return (day, day + days + 1)
    if condition.operator is Operator.MORE_THAN_AGO:  # today > day + N
        return (day + days + 1,)
    if condition.operator is Operator.WITHIN_NEXT:  # today in [day - N, day]
        return (day - days, day + 1)
    return (day - days,)  # more_than_ahead: today < day - N


_LAST = date.max.toordinal()

_WINDOWS = frozenset(
    {
        Operator.WITHIN_LAST,
        Operator.MORE_THAN_AGO,
        Operator.WITHIN_NEXT,
        Operator.MORE_THAN_AHEAD,
    }
)
