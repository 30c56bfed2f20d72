"""Segments compiled to Python functions, for the incremental path's hot loop.

rules.segments.matches walks a segment tree for every person it is asked
about. compile_segment walks the tree once, when a rule set is loaded, and
returns nested functions with the comparison values already normalised,
aliased and parsed, so a person costs one call and one attribute lookup a
condition. The two must give the same answer for every person and every day;
a property test over generated people and segments holds them together.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from rules.aliases import NO_ALIASES, Aliases
from rules.segments import (
    POSITIVE_FORM,
    comparable_text,
    is_date_value,
    more_than_ago,
    more_than_ahead,
    within_last,
    within_next,
)
from rules.values import as_date, as_number
from schemas.common import AttributeValue
from schemas.segments import (
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    SegmentNode,
)

Attributes = Mapping[str, Any]
# Whether a person with these attributes is in the segment on that day.
Predicate = Callable[[Attributes, date], bool]
# Whether a present (not None) attribute value passes a condition on a day.
ValueTest = Callable[[Any, date], bool]


def compile_segment(node: SegmentNode, aliases: Aliases = NO_ALIASES) -> Predicate:
    """Return a function answering rules.segments.matches for this segment."""
    if isinstance(node, AllGroup):
        return _all_of(tuple(compile_segment(child, aliases) for child in node.all))
    if isinstance(node, AnyGroup):
        return _any_of(tuple(compile_segment(child, aliases) for child in node.any))
    if isinstance(node, NotGroup):
        return _none_of(compile_segment(node.not_, aliases))
    return compile_condition(node, aliases)


def compile_condition(condition: Condition, aliases: Aliases = NO_ALIASES) -> Predicate:
    """Return a function answering rules.segments.condition_matches."""
    positive, negated = POSITIVE_FORM.get(
        condition.operator, (condition.operator, False)
    )
    test = _VALUE_TESTS[positive](condition.value, aliases)
    name = condition.attribute

    # A missing or null attribute fails every positive condition and so
    # passes its negation.
    if negated:

        def negative(attributes: Attributes, today: date) -> bool:
            actual = attributes.get(name)
            return actual is None or not test(actual, today)

        return negative

    def affirmative(attributes: Attributes, today: date) -> bool:
        actual = attributes.get(name)
        return actual is not None and test(actual, today)

    return affirmative


def _all_of(children: tuple[Predicate, ...]) -> Predicate:
    if len(children) == 1:
        return children[0]

    def all_of(attributes: Attributes, today: date) -> bool:
        return all(child(attributes, today) for child in children)

    return all_of


def _any_of(children: tuple[Predicate, ...]) -> Predicate:
    if len(children) == 1:
        return children[0]

    def any_of(attributes: Attributes, today: date) -> bool:
        return any(child(attributes, today) for child in children)

    return any_of


def _none_of(child: Predicate) -> Predicate:
    def none_of(attributes: Attributes, today: date) -> bool:
        return not child(attributes, today)

    return none_of


def _never(actual: Any, today: date) -> bool:
    return False


def _always(actual: Any, today: date) -> bool:
    return True


# -- one builder an operator: the expected value is prepared once -------------


def _equals(expected: AttributeValue, aliases: Aliases) -> ValueTest:
    wanted = comparable_text(expected, aliases)
    if wanted is None:
        return _never

    def equals(actual: Any, today: date) -> bool:
        return comparable_text(actual, aliases) == wanted

    return equals


def _is_in(expected: AttributeValue, aliases: Aliases) -> ValueTest:
    listed = expected if isinstance(expected, list) else []
    options = {comparable_text(option, aliases) for option in listed}
    # An option that is no scalar has no text and equals nothing.
    options.discard(None)

    def is_in(actual: Any, today: date) -> bool:
        return comparable_text(actual, aliases) in options

    return is_in


def _contains(expected: AttributeValue, aliases: Aliases) -> ValueTest:
    part = comparable_text(expected, aliases)
    if part is None:
        return _never

    def contains(actual: Any, today: date) -> bool:
        text = comparable_text(actual, aliases)
        return text is not None and part in text

    return contains


def _starts_with(expected: AttributeValue, aliases: Aliases) -> ValueTest:
    prefix = comparable_text(expected, aliases)
    if prefix is None:
        return _never

    def starts_with(actual: Any, today: date) -> bool:
        text = comparable_text(actual, aliases)
        return text is not None and text.startswith(prefix)

    return starts_with


def _exists(expected: AttributeValue, aliases: Aliases) -> ValueTest:
    return _always


def _includes(expected: AttributeValue, aliases: Aliases) -> ValueTest:
    wanted = comparable_text(expected, aliases)
    if wanted is None:
        return _never

    def includes(actual: Any, today: date) -> bool:
        items = actual if isinstance(actual, list) else (actual,)
        return any(comparable_text(item, aliases) == wanted for item in items)

    return includes


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[..., ValueTest]:
    """Build an ordering builder: dates against dates, numbers against numbers."""

    def build(expected: AttributeValue, aliases: Aliases) -> ValueTest:
        if is_date_value(expected):
            bound_date = as_date(expected)
            if bound_date is None:
                return _never

            def on_dates(actual: Any, today: date) -> bool:
                day = as_date(actual)
                return day is not None and compare(day, bound_date)

            return on_dates

        bound = as_number(expected)
        if bound is None:
            return _never

        def on_numbers(actual: Any, today: date) -> bool:
            number = as_number(actual)
            return number is not None and compare(number, bound)

        return on_numbers

    return build


def _relative(in_window: Callable[[date, date, int], bool]) -> Callable[..., ValueTest]:
    """Build a builder of a time-relative check of an attribute date."""

    def build(expected: AttributeValue, aliases: Aliases) -> ValueTest:
        days = int(expected)  # type: ignore[arg-type]

        def relative(actual: Any, today: date) -> bool:
            day = as_date(actual)
            return day is not None and in_window(day, today, days)

        return relative

    return build


_VALUE_TESTS: dict[Operator, Callable[[AttributeValue, Aliases], ValueTest]] = {
    Operator.EQ: _equals,
    Operator.IN: _is_in,
    Operator.CONTAINS: _contains,
    Operator.STARTS_WITH: _starts_with,
    Operator.EXISTS: _exists,
    Operator.INCLUDES: _includes,
    Operator.GT: _ordering(operator.gt),
    Operator.GTE: _ordering(operator.ge),
    Operator.LT: _ordering(operator.lt),
    Operator.LTE: _ordering(operator.le),
    Operator.WITHIN_LAST: _relative(within_last),
    Operator.MORE_THAN_AGO: _relative(more_than_ago),
    Operator.WITHIN_NEXT: _relative(within_next),
    Operator.MORE_THAN_AHEAD: _relative(more_than_ahead),
}
