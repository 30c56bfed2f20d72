"""Evaluating a segment for one person, in Python (the incremental path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import Any

from rules.aliases import NO_ALIASES, Aliases
from rules.values import as_date, as_number, as_text
from schemas.segments import (
    ISO_DATE,
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    SegmentNode,
)

Attributes = Mapping[str, Any]
Check = Callable[[Any, Any, date, Aliases], bool]


def matches(
    node: SegmentNode,
    attributes: Attributes,
    today: date,
    aliases: Aliases | Mapping[str, str] | None = None,
) -> bool:
    """Return whether a person with these attributes is in the segment today.

    A missing or null attribute never matches a positive condition (and so
    always matches its negation); nothing here raises on odd data. ``aliases``
    are the segment's declared aliases (see rules.aliases).
    """
    table = as_aliases(aliases)
    if isinstance(node, AllGroup):
        return all(matches(child, attributes, today, table) for child in node.all)
    if isinstance(node, AnyGroup):
        return any(matches(child, attributes, today, table) for child in node.any)
    if isinstance(node, NotGroup):
        return not matches(node.not_, attributes, today, table)
    return condition_matches(node, attributes, today, table)


def condition_matches(
    condition: Condition,
    attributes: Attributes,
    today: date,
    aliases: Aliases | Mapping[str, str] | None = None,
) -> bool:
    """Return whether one condition holds for these attributes today."""
    positive, negated = POSITIVE_FORM.get(
        condition.operator, (condition.operator, False)
    )
    actual = attributes.get(condition.attribute)
    if actual is None:
        held = False
    else:
        check = _CHECKS[positive]
        held = check(actual, condition.value, today, as_aliases(aliases))
    return held != negated


def iter_conditions(node: SegmentNode) -> Iterator[Condition]:
    """Yield every condition of a segment tree, depth first, in order."""
    if isinstance(node, AllGroup):
        for child in node.all:
            yield from iter_conditions(child)
    elif isinstance(node, AnyGroup):
        for child in node.any:
            yield from iter_conditions(child)
    elif isinstance(node, NotGroup):
        yield from iter_conditions(node.not_)
    else:
        yield node


def as_aliases(aliases: Aliases | Mapping[str, str] | None) -> Aliases:
    """Return the alias table of a declared variant -> canonical mapping."""
    if isinstance(aliases, Aliases):
        return aliases
    return Aliases.build(aliases) if aliases else NO_ALIASES


def comparable_text(value: Any, aliases: Aliases) -> str | None:
    """Return the text a scalar compares as, aliases applied; None if none."""
    text = as_text(value)
    return None if text is None else aliases.apply(text)


def is_date_value(value: Any) -> bool:
    """Return whether a comparison value is an ISO calendar date."""
    return isinstance(value, str) and bool(ISO_DATE.match(value.strip()))


def _equals(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
    actual_text = comparable_text(actual, aliases)
    return actual_text is not None and actual_text == comparable_text(expected, aliases)


def _is_in(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
    return any(_equals(actual, option, today, aliases) for option in expected)


def _contains(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
    actual_text = comparable_text(actual, aliases)
    expected_text = comparable_text(expected, aliases)
    return (
        actual_text is not None
        and expected_text is not None
        and (expected_text in actual_text)
    )


def _starts_with(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
    actual_text = comparable_text(actual, aliases)
    expected_text = comparable_text(expected, aliases)
    return (
        actual_text is not None
        and expected_text is not None
        and (actual_text.startswith(expected_text))
    )


def _exists(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
    return True


def _includes(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
    items = actual if isinstance(actual, list) else [actual]
    return any(_equals(item, expected, today, aliases) for item in items)


def _compare(test: Callable[[int], bool]) -> Check:
    """Build an ordering check: dates against dates, numbers against numbers."""

    def check(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
        if is_date_value(expected):
            actual_date, expected_date = as_date(actual), as_date(expected)
            if actual_date is None or expected_date is None:
                return False
            return test((actual_date > expected_date) - (actual_date < expected_date))
        actual_number, expected_number = as_number(actual), as_number(expected)
        if actual_number is None or expected_number is None:
            return False
        return test(
            (actual_number > expected_number) - (actual_number < expected_number)
        )

    return check


def _relative(in_window: Callable[[date, date, int], bool]) -> Check:
    """Build a time-relative check of an attribute date against today."""

    def check(actual: Any, expected: Any, today: date, aliases: Aliases) -> bool:
        actual_date = as_date(actual)
        return actual_date is not None and in_window(actual_date, today, int(expected))

    return check


# The windows compare day numbers, not dates: a day count reaching past the
# calendar (year 1 to 9999) must give an answer, not an OverflowError.


def within_last(day: date, today: date, days: int) -> bool:
    """From ``days`` days before today up to today, both included."""
    return today.toordinal() - days <= day.toordinal() <= today.toordinal()


def more_than_ago(day: date, today: date, days: int) -> bool:
    """Strictly before ``days`` days before today."""
    return day.toordinal() < today.toordinal() - days


def within_next(day: date, today: date, days: int) -> bool:
    """From today up to ``days`` days after today, both included."""
    return today.toordinal() <= day.toordinal() <= today.toordinal() + days


def more_than_ahead(day: date, today: date, days: int) -> bool:
    """Strictly after ``days`` days after today."""
    return day.toordinal() > today.toordinal() + days


_CHECKS: dict[Operator, Check] = {
    Operator.EQ: _equals,
    Operator.IN: _is_in,
    Operator.CONTAINS: _contains,
    Operator.STARTS_WITH: _starts_with,
    Operator.EXISTS: _exists,
    Operator.INCLUDES: _includes,
    Operator.GT: _compare(lambda order: order > 0),
    Operator.GTE: _compare(lambda order: order >= 0),
    Operator.LT: _compare(lambda order: order < 0),
    Operator.LTE: _compare(lambda order: order <= 0),
    Operator.WITHIN_LAST: _relative(within_last),
    Operator.MORE_THAN_AGO: _relative(more_than_ago),
    Operator.WITHIN_NEXT: _relative(within_next),
    Operator.MORE_THAN_AHEAD: _relative(more_than_ahead),
}

# Each negative operator is exactly the negation of a positive one.
POSITIVE_FORM: dict[Operator, tuple[Operator, bool]] = {
    Operator.NE: (Operator.EQ, True),
    Operator.NOT_IN: (Operator.IN, True),
    Operator.NOT_CONTAINS: (Operator.CONTAINS, True),
    Operator.MISSING: (Operator.EXISTS, True),
    Operator.EXCLUDES: (Operator.INCLUDES, True),
}
