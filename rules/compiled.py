"""Segments compiled to Python functions, for the incremental path's hot loop.

rules.segments.matches walks a segment tree over raw attributes for every
person it is asked about. compile_segment walks the tree once, when a rule set
is loaded, and returns nested functions over the person's search document
(rules.search), the same normalised texts, numbers and day numbers the SQL of
rules.sql reads: the comparison values are normalised, aliased and parsed once,
a person's values once a person, and a condition costs a lookup and a compare.
The two must give the same answer for every person and every day; a property
test over generated people and segments holds them together.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from rules.aliases import NO_ALIASES, Aliases
from rules.search import DAY, ITEMS, NUMBER, TEXT, SearchDocument
from rules.segments import POSITIVE_FORM, comparable_text, is_date_value
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

# Whether a person with this search document is in the segment on the day of
# this ordinal number (date.toordinal).
Predicate = Callable[[SearchDocument, int], bool]
# Whether an attribute's search entry passes a condition on a day.
EntryTest = Callable[[dict[str, Any], int], bool]


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
    test = _ENTRY_TESTS[positive](condition.value, aliases)
    name = condition.attribute

    # A missing or null attribute has no entry: it fails every positive
    # condition and so passes its negation.
    if negated:

        def negative(document: SearchDocument, today: int) -> bool:
            entry = document.get(name)
            return entry is None or not test(entry, today)

        return negative

    def affirmative(document: SearchDocument, today: int) -> bool:
        entry = document.get(name)
        return entry is not None and test(entry, today)

    return affirmative


def _all_of(children: tuple[Predicate, ...]) -> Predicate:
    if len(children) == 1:
        return children[0]

    # Loops rather than all() and any() over generators: this is the hot path,
    # and a generator costs a frame for every person.
    def all_of(document: SearchDocument, today: int) -> bool:
        for child in children:  # noqa: SIM110
            if not child(document, today):
                return False
        return True

    return all_of


def _any_of(children: tuple[Predicate, ...]) -> Predicate:
    if len(children) == 1:
        return children[0]

    def any_of(document: SearchDocument, today: int) -> bool:
        for child in children:  # noqa: SIM110
            if child(document, today):
                return True
        return False

    return any_of


def _none_of(child: Predicate) -> Predicate:
    def none_of(document: SearchDocument, today: int) -> bool:
        return not child(document, today)

    return none_of


def _never(entry: dict[str, Any], today: int) -> bool:
    return False


def _always(entry: dict[str, Any], today: int) -> bool:
    return True


# -- one builder an operator: the expected value is prepared once -------------


def _text_of(aliases: Aliases) -> Callable[[dict[str, Any]], str | None]:
    """Read an entry's comparable text, with the segment's aliases applied."""
    if not aliases:
        return lambda entry: entry.get(TEXT)

    def aliased(entry: dict[str, Any]) -> str | None:
        text = entry.get(TEXT)
        return None if text is None else aliases.apply(text)

    return aliased


def _equals(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    wanted = comparable_text(expected, aliases)
    if wanted is None:
        return _never
    if not aliases:
        return lambda entry, today: entry.get(TEXT) == wanted
    text_of = _text_of(aliases)
    return lambda entry, today: text_of(entry) == wanted


def _is_in(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    listed = expected if isinstance(expected, list) else []
    options = {comparable_text(option, aliases) for option in listed}
    # An option that is no scalar has no text and equals nothing.
    options.discard(None)
    text_of = _text_of(aliases)
    return lambda entry, today: text_of(entry) in options


def _contains(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    part = comparable_text(expected, aliases)
    if part is None:
        return _never
    text_of = _text_of(aliases)

    def contains(entry: dict[str, Any], today: int) -> bool:
        text = text_of(entry)
        return text is not None and part in text

    return contains


def _starts_with(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    prefix = comparable_text(expected, aliases)
    if prefix is None:
        return _never
    text_of = _text_of(aliases)

    def starts_with(entry: dict[str, Any], today: int) -> bool:
        text = text_of(entry)
        return text is not None and text.startswith(prefix)

    return starts_with


def _exists(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    return _always


def _includes(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    wanted = comparable_text(expected, aliases)
    if wanted is None:
        return _never
    if not aliases:
        return lambda entry, today: wanted in entry[ITEMS]
    return lambda entry, today: any(
        aliases.apply(item) == wanted for item in entry[ITEMS]
    )


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[..., EntryTest]:
    """Build an ordering builder: dates against dates, numbers against numbers."""

    def build(expected: AttributeValue, aliases: Aliases) -> EntryTest:
        if is_date_value(expected):
            bound_date = as_date(expected)
            if bound_date is None:
                return _never
            bound_day = bound_date.toordinal()

            def on_days(entry: dict[str, Any], today: int) -> bool:
                day = entry.get(DAY)
                return day is not None and compare(day, bound_day)

            return on_days

        bound = as_number(expected)
        if bound is None:
            return _never

        def on_numbers(entry: dict[str, Any], today: int) -> bool:
            number = entry.get(NUMBER)
            return number is not None and compare(number, bound)

        return on_numbers

    return build


# The time-relative windows of rules.segments, on day numbers: a day count
# reaching past the calendar still gives an answer.


def _within_last(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    days = int(expected)  # type: ignore[arg-type]

    def within_last(entry: dict[str, Any], today: int) -> bool:
        day = entry.get(DAY)
        return day is not None and today - days <= day <= today

    return within_last


def _more_than_ago(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    days = int(expected)  # type: ignore[arg-type]

    def more_than_ago(entry: dict[str, Any], today: int) -> bool:
        day = entry.get(DAY)
        return day is not None and day < today - days

    return more_than_ago


def _within_next(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    days = int(expected)  # type: ignore[arg-type]

    def within_next(entry: dict[str, Any], today: int) -> bool:
        day = entry.get(DAY)
        return day is not None and today <= day <= today + days

    return within_next


def _more_than_ahead(expected: AttributeValue, aliases: Aliases) -> EntryTest:
    days = int(expected)  # type: ignore[arg-type]

    def more_than_ahead(entry: dict[str, Any], today: int) -> bool:
        day = entry.get(DAY)
        return day is not None and day > today + days

    return more_than_ahead


_ENTRY_TESTS: dict[Operator, Callable[[AttributeValue, Aliases], EntryTest]] = {
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
    Operator.WITHIN_LAST: _within_last,
    Operator.MORE_THAN_AGO: _more_than_ago,
    Operator.WITHIN_NEXT: _within_next,
    Operator.MORE_THAN_AHEAD: _more_than_ahead,
}
