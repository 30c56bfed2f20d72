"""Segments: saved filters over person attributes, as trees of conditions."""

from __future__ import annotations

import math
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, ValidationInfo, model_validator

from schemas.common import AttributeValue, FrozenModel, is_accepted_before
from schemas.text import normalize_text


class Operator(StrEnum):
    """What a condition checks about one attribute."""

    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    EXISTS = "exists"
    MISSING = "missing"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    INCLUDES = "includes"
    EXCLUDES = "excludes"
    WITHIN_LAST = "within_last"
    MORE_THAN_AGO = "more_than_ago"
    WITHIN_NEXT = "within_next"
    MORE_THAN_AHEAD = "more_than_ahead"


VALUELESS_OPERATORS = frozenset({Operator.EXISTS, Operator.MISSING})
LIST_VALUE_OPERATORS = frozenset({Operator.IN, Operator.NOT_IN})
DAY_COUNT_OPERATORS = frozenset(
    {
        Operator.WITHIN_LAST,
        Operator.MORE_THAN_AGO,
        Operator.WITHIN_NEXT,
        Operator.MORE_THAN_AHEAD,
    }
)
# A comparison value in this form compares as a calendar date, else as a number.
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

ORDERING_OPERATORS = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE})
# Operators that compare normalised text: a value that normalises to nothing
# makes them mean nothing (every present value contains the empty text).
TEXT_OPERATORS = frozenset(
    {
        Operator.EQ,
        Operator.NE,
        Operator.IN,
        Operator.NOT_IN,
        Operator.CONTAINS,
        Operator.NOT_CONTAINS,
        Operator.STARTS_WITH,
        Operator.INCLUDES,
        Operator.EXCLUDES,
    }
)


class Condition(FrozenModel):
    """One test of one attribute: ``{attribute, operator, value}``."""

    attribute: str = Field(min_length=1, max_length=200)
    operator: Operator
    value: AttributeValue = None

    @model_validator(mode="after")
    def _check_value(self, info: ValidationInfo) -> Condition:
        if self.operator in VALUELESS_OPERATORS:
            if self.value is not None:
                raise ValueError(f"operator {self.operator} takes no value")
        elif self.operator in LIST_VALUE_OPERATORS:
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"operator {self.operator} needs a non-empty list")
        elif self.operator in DAY_COUNT_OPERATORS:
            if isinstance(self.value, bool) or not isinstance(self.value, int):
                raise ValueError(f"operator {self.operator} needs a whole day count")
            if self.value < 0:
                raise ValueError(f"operator {self.operator} needs a day count >= 0")
        elif self.value is None or isinstance(self.value, list | dict):
            raise ValueError(f"operator {self.operator} needs a single value")
        elif self.operator in ORDERING_OPERATORS and not _is_orderable(self.value):
            raise ValueError(
                f"operator {self.operator} needs a number or a yyyy-mm-dd date,"
                f" got {self.value!r}"
            )

        # Segments stored before these checks existed must still load.
        if not is_accepted_before(info):
            self._check_date()
            self._check_number()
            self._check_text()
        return self

    def _check_date(self) -> None:
        """Refuse a date-shaped comparison value that names no calendar day.

        Equality and membership compare text, where "2024-02-30" would
        silently match nobody: a typo, refused as for the ordering operators.
        """
        if self.operator in ORDERING_OPERATORS | {Operator.EQ, Operator.NE}:
            values = [self.value]
        elif self.operator in (Operator.IN, Operator.NOT_IN):
            values = list(self.value) if isinstance(self.value, list) else []
        else:
            return
        for value in values:
            if not isinstance(value, str):
                continue
            text = value.strip()
            if ISO_DATE.match(text) and _as_date(text) is None:
                raise ValueError(
                    f"condition {self.attribute} {self.operator} compares with"
                    f" {value!r}, which is no calendar date; expected a real"
                    " yyyy-mm-dd date"
                )

    def _check_number(self) -> None:
        """Refuse comparison text that float() reads but JSON and SQL do not."""
        if self.operator not in ORDERING_OPERATORS or not isinstance(self.value, str):
            return
        if ISO_DATE.match(self.value.strip()):
            return
        if "_" in self.value or not math.isfinite(float(self.value)):
            raise ValueError(
                f"condition {self.attribute} {self.operator} compares with"
                f" {self.value!r}; expected a finite number without underscores"
                " or a yyyy-mm-dd date"
            )

    def _check_text(self) -> None:
        """Refuse text that normalises to nothing: it would match all or none."""
        if self.operator not in TEXT_OPERATORS:
            return
        options = self.value if isinstance(self.value, list) else [self.value]
        for option in options:
            if isinstance(option, str) and not normalize_text(option):
                raise ValueError(
                    f"condition {self.attribute} {self.operator} compares with"
                    f" {option!r}, which is blank once normalised; expected text"
                    " with a visible character (exists and missing test presence)"
                )


def _as_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _is_orderable(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if not isinstance(value, str):
        return False
    if ISO_DATE.match(value.strip()):
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


class AllGroup(FrozenModel):
    """Matches when every child matches (an empty group matches everybody)."""

    all: list[SegmentNode]


class AnyGroup(FrozenModel):
    """Matches when at least one child matches."""

    any: list[SegmentNode] = Field(min_length=1)


class NotGroup(FrozenModel):
    """Matches when its child does not."""

    not_: SegmentNode = Field(alias="not")

    model_config = FrozenModel.model_config | {"populate_by_name": True}


def _node_kind(raw: Any) -> str | None:
    if isinstance(raw, dict):
        keys = set(raw)
    elif hasattr(raw, "__dict__"):
        keys = set(vars(raw))
    else:
        # Not a node at all (a list, a string...): None makes pydantic report
        # a validation error instead of this function raising TypeError.
        return None
    for kind in ("all", "any", "not"):
        if kind in keys or f"{kind}_" in keys:
            return kind
    return "condition"


SegmentNode = Annotated[
    Annotated[Condition, Tag("condition")]
    | Annotated[AllGroup, Tag("all")]
    | Annotated[AnyGroup, Tag("any")]
    | Annotated[NotGroup, Tag("not")],
    Discriminator(_node_kind),
]

AllGroup.model_rebuild()
AnyGroup.model_rebuild()
NotGroup.model_rebuild()


class Segment(FrozenModel):
    """A named, saved filter over person attributes."""

    segment_id: str = Field(min_length=1, max_length=200)
    name: str = ""
    definition: SegmentNode
    # Declared spellings of one value, variant -> canonical ({"Sr.": "Senior"}),
    # applied to both sides of the segment's text comparisons; never guessed.
    aliases: dict[str, str] = Field(default_factory=dict, max_length=1000)

    @model_validator(mode="after")
    def _check_aliases(self, info: ValidationInfo) -> Segment:
        # Before, blank meant all space; invisible characters count as blank now.
        is_blank = str.isspace if is_accepted_before(info) else _is_blank
        for variant, canonical in self.aliases.items():
            for text in (variant, canonical):
                if not text or is_blank(text) or len(text) > 200:
                    raise ValueError(
                        f"alias {variant!r} -> {canonical!r} needs a variant and a"
                        " canonical of 1 to 200 characters that are not all space"
                        " or invisible"
                    )
        return self


def _is_blank(text: str) -> bool:
    return not normalize_text(text)


class Role(StrEnum):
    """The two independent roles of a mentorship program."""

    MENTOR = "mentor"
    MENTEE = "mentee"


class RuleAction(StrEnum):
    """What a rule does to the people of its segment."""

    ADD = "add"
    REMOVE = "remove"


class RuleStatus(StrEnum):
    """Only published rules run."""

    PUBLISHED = "published"
    PAUSED = "paused"
    DRAFT = "draft"


class Program(FrozenModel):
    """A mentorship program."""

    program_id: str = Field(min_length=1, max_length=200)
    name: str = ""


class Rule(FrozenModel):
    """An automated rule: add or remove one segment to or from one program role."""

    rule_id: str = Field(min_length=1, max_length=200)
    action: RuleAction
    program_id: str = Field(min_length=1, max_length=200)
    role: Role
    segment_id: str = Field(min_length=1, max_length=200)
    position: int = Field(ge=0)
    status: RuleStatus = RuleStatus.DRAFT
    name: str = ""
