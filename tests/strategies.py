"""Hypothesis strategies for people, segments, aliases and ordered rules.

The data is as untidy as real HR exports: odd case, width and composition,
white and zero-width space, numbers as text, dates with and without times,
missing attributes, lists with odd items, and names and values written to
break SQL. Conditions and aliases reuse the same words so that they match.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from hypothesis import strategies as st
from pydantic import ValidationError

from rules.text import normalize_text
from rules.values import as_date
from schemas.person import DATE_ATTRIBUTES
from schemas.segments import (
    DAY_COUNT_OPERATORS,
    LIST_VALUE_OPERATORS,
    ORDERING_OPERATORS,
    VALUELESS_OPERATORS,
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    Role,
    Rule,
    RuleAction,
    RuleStatus,
    SegmentNode,
)

TODAY = date(2024, 6, 15)
HOSTILE = "x'); DROP TABLE persons; --"

ATTRIBUTES = ["title", "dept", "level", "hire_date", "skills", HOSTILE]
PROGRAMS = ["eng", "sales", HOSTILE]
PAIRS = [(program, role) for program in PROGRAMS for role in Role]


# Words that conditions and aliases also use, so that generated data matches.
COMMON_WORDS = [
    "Engineer",
    "Senior Engineer",
    "Sr. Engineer",
    "Sr.",
    "Senior",
    "IT",
    "Dept IT",
    "Finance",
    "\ufb01nance",
    "Straße",
    "strasse",
]
ODD_WORDS = [
    "sr engineer",
    "Ｅｎｇｉｎｅｅｒ",
    "café",
    "cafe\u0301",
    "İstanbul",
    "",
    " ",
    "9000",
    "9000.0",
    " 12 ",
    "1e3",
    "1_000",
    "nan",
    "2024-06-01",
    "20240601",
    "2024-02-30",
    "2024-06-15T23:30:00-08:00",
    "true",
    "Dept  \u00a0 IT",
    "\u200bIT",
    HOSTILE,
    "50%",
    "a_b",
    "\\",
    "%s",
    "$1",
]
# Parts of words, for contains and starts_with.
FRAGMENTS = ["eng", "senior", "sr.", "sr", "engineer", "it", "fi", "stra", "ß", " "]
CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
PADDING = ["", " ", "\u00a0", "\t", "\u2003", "\u200b", "\u200d"]
CASES: list[Callable[[str], str]] = [str.upper, str.lower, str.swapcase, str.strip]
INSERTS = [" ", "  ", "\u200b", "\u00ad", "\u00a0", "\n"]


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Words HR sends, in odd case, width, composition, white and zero space."""
    common = st.sampled_from(COMMON_WORDS)
    odd = st.one_of(st.sampled_from(ODD_WORDS), st.text(CHARACTERS, max_size=6))
    text = draw(st.one_of(common, common, odd))
    text = draw(st.sampled_from(CASES))(text)
    if draw(st.booleans()):
        text = unicodedata.normalize(draw(st.sampled_from(["NFD", "NFKD"])), text)
    if text and draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(INSERTS)) + text[at:]
    return draw(st.sampled_from(PADDING)) + text + draw(st.sampled_from(PADDING))


# Days on and next to the window bounds of the day counts below, and others.
OFFSETS = st.one_of(
    st.sampled_from([-31, -30, -29, -2, -1, 0, 1, 2, 29, 30, 31]),
    st.integers(-400, 400),
)
DAYS = OFFSETS.map(lambda offset: TODAY + timedelta(days=offset))
DAY_COUNTS = st.one_of(st.sampled_from([0, 1, 30]), st.integers(0, 400))


def day_texts() -> st.SearchStrategy[str]:
    """ISO dates around today, some with a time, some compact."""
    return st.one_of(
        DAYS.map(date.isoformat),
        DAYS.map(date.isoformat),
        DAYS.map(lambda day: f"{day.isoformat()}T23:30:00-08:00"),
        DAYS.map(lambda day: day.strftime("%Y%m%d")),
    )


def numbers(*, exact_json: bool) -> st.SearchStrategy[Any]:
    """Numbers; exact_json keeps to those a jsonb round trip gives back as is."""
    if exact_json:
        floats = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)
        specials = [0, 1, -3, 9000, 9000.0, -0.0, 1.5, "9000", " 1.5 ", "1e3"]
    else:
        floats = st.floats(allow_nan=False, allow_infinity=False)
        specials = [0, 1, -3, 9000, 9000.0, -0.0, 1.5, "9000", 1e23, 10**400]
    common = st.sampled_from(specials)
    return st.one_of(common, common, st.integers(-(10**6), 10**6), floats)


def scalars(*, exact_json: bool = False) -> st.SearchStrategy[Any]:
    """Scalar attribute values of every kind."""
    return st.one_of(
        texts(), numbers(exact_json=exact_json), day_texts(), st.booleans()
    )


def values(*, exact_json: bool = False) -> st.SearchStrategy[Any]:
    """Attribute values: scalars, lists of them (with odd items) and objects."""
    scalar = scalars(exact_json=exact_json)
    odd_items = st.one_of(scalar, st.none(), st.just(["nested"]), st.just({"a": 1}))
    return st.one_of(scalar, scalar, st.lists(odd_items, max_size=4), st.just({"a": 1}))


def attribute_maps(*, exact_json: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A person's attributes; any attribute may be missing."""
    return st.dictionaries(
        st.sampled_from(ATTRIBUTES), values(exact_json=exact_json), max_size=5
    )


@st.composite
def event_attribute_maps(
    draw: st.DrawFn, *, nulls: bool = False, min_size: int = 0
) -> dict[str, Any]:
    """Attributes as person events carry them: date attributes hold real dates.

    nulls adds null values, which updates send to clear an attribute.
    """
    names = draw(
        st.lists(
            st.sampled_from(ATTRIBUTES), unique=True, min_size=min_size, max_size=5
        )
    )
    found = {}
    for name in names:
        if name in DATE_ATTRIBUTES:
            value = st.one_of(DAYS.map(date.isoformat), st.just(None))
        else:
            value = values(exact_json=True)
        found[name] = draw(st.one_of(value, st.none()) if nulls else value)
    return found


def condition_values(
    operator: Operator, *, past_calendar: bool, seen: Sequence[Any] = ()
) -> st.SearchStrategy[Any]:
    """Values the schema accepts for the operator, some taken from seen values.

    past_calendar adds day counts reaching past year 9999, which rules.flips
    (used by the engine, not by the sweep) does not handle yet.
    """
    # Untidy texts are sometimes blank once normalised, which conditions refuse.
    candidates = _condition_values(operator, past_calendar=past_calendar, seen=seen)
    return candidates.filter(functools.partial(_is_accepted, operator))


def _is_accepted(operator: Operator, value: Any) -> bool:
    try:
        Condition(attribute="a", operator=operator, value=value)
    except ValidationError:
        return False
    return True


def _condition_values(
    operator: Operator, *, past_calendar: bool, seen: Sequence[Any]
) -> st.SearchStrategy[Any]:
    if operator in VALUELESS_OPERATORS:
        return st.none()
    texts_seen = [value for value in seen if isinstance(value, str)]
    days_seen = [day for day in map(as_date, seen) if day is not None]
    scalar = scalars(exact_json=True)
    if seen:
        scalar = st.one_of(scalar, st.sampled_from(seen), st.sampled_from(seen))
    if operator in LIST_VALUE_OPERATORS:
        options = st.one_of(scalar, st.just(["nested"]))
        return st.lists(options, min_size=1, max_size=3)
    if operator in DAY_COUNT_OPERATORS:
        counts = (
            st.one_of(DAY_COUNTS, st.integers(0, 10**12))
            if past_calendar
            else DAY_COUNTS
        )
        if days_seen:
            # Counts that put a seen date on, just inside or just outside a bound.
            near = st.tuples(st.sampled_from(days_seen), st.sampled_from([-1, 0, 1]))
            counts = st.one_of(
                counts,
                near.map(lambda pick: max(0, abs((TODAY - pick[0]).days) + pick[1])),
            )
        return counts
    if operator in ORDERING_OPERATORS:
        orderable: list[Any] = [
            value
            for value in seen
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and abs(value) < 1e300
        ]
        orderable += [day.isoformat() for day in days_seen]
        options = st.one_of(
            numbers(exact_json=True),
            DAYS.map(date.isoformat),
            st.sampled_from(["9000", " 12.5 ", "1e3", "2024-02-29", "0002-01-01"]),
        )
        return st.one_of(options, st.sampled_from(orderable)) if orderable else options
    if operator in (Operator.CONTAINS, Operator.NOT_CONTAINS, Operator.STARTS_WITH):
        fragments = st.one_of(st.sampled_from(FRAGMENTS), scalar)
        if texts_seen:
            fragments = st.one_of(
                fragments, st.sampled_from(texts_seen).flatmap(slices)
            )
        return fragments
    return scalar


def slices(text: str) -> st.SearchStrategy[str]:
    """Pieces of a text, from the start or from anywhere."""
    return st.tuples(st.integers(0, len(text)), st.integers(0, len(text))).map(
        lambda bounds: text[min(bounds) : max(bounds)]
    )


def conditions(
    *, past_calendar: bool, seen: Sequence[tuple[str, Any]] = ()
) -> st.SearchStrategy[Condition]:
    """One condition, on any attribute or on one that a person has."""
    generic = st.sampled_from(list(Operator)).flatmap(
        lambda operator: st.builds(
            lambda attribute, value: Condition(
                attribute=attribute, operator=operator, value=value
            ),
            st.sampled_from(ATTRIBUTES),
            condition_values(operator, past_calendar=past_calendar),
        )
    )
    if not seen:
        return generic
    targeted = st.tuples(
        st.sampled_from(list(Operator)), st.sampled_from(seen)
    ).flatmap(
        lambda pick: condition_values(
            pick[0], past_calendar=past_calendar, seen=[pick[1][1]]
        ).map(
            lambda value: Condition(attribute=pick[1][0], operator=pick[0], value=value)
        )
    )
    return st.one_of(generic, targeted, targeted)


def nodes(
    *, past_calendar: bool = True, seen: Sequence[tuple[str, Any]] = ()
) -> st.SearchStrategy[SegmentNode]:
    """Segment trees of all, any and not over conditions."""
    leaves = conditions(past_calendar=past_calendar, seen=seen)
    return st.recursive(leaves, _groups, max_leaves=5)


def alias_maps(
    seen: Sequence[tuple[str, Any]] = (),
) -> st.SearchStrategy[dict[str, str]]:
    """Declared aliases, some of them on words the people have."""
    words = [
        word
        for _, value in seen
        if isinstance(value, str)
        for word in value.split()
        if normalize_text(word)
    ]
    variants = st.sampled_from(
        ["Sr.", "sr", "Engineer", "IT", "Dept IT", "\ufb01nance", "Sr. Engineer"]
    )
    if words:
        variants = st.one_of(variants, st.sampled_from(words), st.sampled_from(words))
    canonicals = st.sampled_from(["Senior", "Eng", "Information Technology", "x"])
    return st.dictionaries(variants, canonicals, max_size=3)


def seen_values(people: Sequence[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The people's attribute names with each scalar, list items included."""
    found = []
    for attributes in people:
        for name, value in attributes.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str | int | float):
                    found.append((name, item))
    return found


def _groups(
    children: st.SearchStrategy[SegmentNode],
) -> st.SearchStrategy[SegmentNode]:
    return st.one_of(
        st.lists(children, max_size=3).map(lambda found: AllGroup(all=found)),
        st.lists(children, min_size=1, max_size=3).map(
            lambda found: AnyGroup(any=found)
        ),
        children.map(lambda child: NotGroup.model_validate({"not": child})),
    )


NODES = nodes()
ENGINE_NODES = nodes(past_calendar=False)
ALIASES = alias_maps()


@st.composite
def rule_lists(draw: st.DrawFn, segment_count: int) -> list[Rule]:
    """Published rules on the segments s0.., in a drawn dashboard order."""
    count = draw(st.integers(1, 6))
    positions = draw(st.permutations(range(count)))
    rules = []
    for index in range(count):
        program_id, role = draw(st.sampled_from(PAIRS))
        rules.append(
            Rule(
                rule_id=f"r{index}",
                action=draw(st.sampled_from(list(RuleAction))),
                program_id=program_id,
                role=role,
                segment_id=f"s{draw(st.integers(0, segment_count - 1))}",
                position=positions[index],
                status=RuleStatus.PUBLISHED,
            )
        )
    return rules


# Existing memberships: (pair, person number) -> whether it was added by hand.
MEMBERSHIPS = st.dictionaries(
    st.tuples(st.sampled_from(PAIRS), st.integers(0, 5)), st.booleans(), max_size=8
)
Memberships = dict[tuple[tuple[str, Role], int], bool]
