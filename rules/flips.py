"""When a person's time-relative segment outcomes can next change by themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from rules.segments import iter_conditions
from rules.values import as_date
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
    return first_flip(time_relative_conditions(segments), attributes, today)


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
    conditions: Iterable[Condition], attributes: Mapping[str, Any], today: date
) -> date | None:
    """Return the first day after today on which one of these conditions changes.

    The conditions are time-relative ones (see time_relative_conditions).
    """
    upcoming = [
        day
        for condition in conditions
        for day in _flip_days(condition, attributes)
        if day > today
    ]
    return min(upcoming, default=None)


def _flip_days(condition: Condition, attributes: Mapping[str, Any]) -> list[date]:
    """The days on which the condition's answer differs from the day before."""
    day = as_date(attributes.get(condition.attribute))
    if day is None:
        return []
    ordinal = day.toordinal()
    days = int(condition.value)  # type: ignore[arg-type]
    # Each window is the set of "today"s for which the condition holds; it
    # changes on the window's first day and on the day after its last.
    if condition.operator is Operator.WITHIN_LAST:  # today in [day, day + N]
        flips = [ordinal, ordinal + days + 1]
    elif condition.operator is Operator.MORE_THAN_AGO:  # today > day + N
        flips = [ordinal + days + 1]
    elif condition.operator is Operator.WITHIN_NEXT:  # today in [day - N, day]
        flips = [ordinal - days, ordinal + 1]
    else:  # more_than_ahead: today < day - N
        flips = [ordinal - days]
    # A flip past the calendar's ends never comes.
    return [date.fromordinal(flip) for flip in flips if _FIRST <= flip <= _LAST]


_FIRST, _LAST = date.min.toordinal(), date.max.toordinal()

_WINDOWS = frozenset(
    {
        Operator.WITHIN_LAST,
        Operator.MORE_THAN_AGO,
        Operator.WITHIN_NEXT,
        Operator.MORE_THAN_AHEAD,
    }
)
