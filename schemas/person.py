"""Person events published by the HR system on ``hr.person-events``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.common import AttributeValue, EventBase, is_accepted_before

PersonId = Annotated[str, Field(min_length=1, max_length=200)]

# Attributes whose values are HR calendar dates: they stay dates end to end.
DATE_ATTRIBUTES = frozenset({"hire_date", "termination_date"})
_CALENDAR_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _refuse_non_dates(attributes: Mapping[str, AttributeValue], field: str) -> None:
    """Refuse a date attribute that is not null and not a yyyy-mm-dd date.

    Raises a ``calendar_date`` error naming the attribute's path.
    """
    for name in DATE_ATTRIBUTES & attributes.keys():
        value = attributes[name]
        if value is None or _is_calendar_date(value):
            continue
        raise PydanticCustomError(
            "calendar_date",
            "{field} is {actual}, which is no calendar date; expected a real"
            " yyyy-mm-dd date or null",
            {"field": f"{field}.{name}", "actual": repr(value)},
        )


def _is_calendar_date(value: object) -> bool:
    # fromisoformat alone also takes week dates and the basic form (20240601).
    if not isinstance(value, str) or not _CALENDAR_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _calendar_date_only(value: object) -> object:
    """Let through a date or a yyyy-mm-dd text; refuse instants and numbers.

    pydantic on its own reads 0 as 1970-01-01 and a midnight timestamp in any
    zone as its date: an HR export writing 0 for "no date" would terminate
    the person in 1970.
    """
    if type(value) is date or _is_calendar_date(value):
        return value
    raise PydanticCustomError(
        "calendar_date",
        "{actual} is no calendar date; expected a real yyyy-mm-dd date",
        {"actual": repr(value)},
    )


# An HR calendar date as events carry it: yyyy-mm-dd, never an instant.
HRDate = Annotated[date, BeforeValidator(_calendar_date_only)]


class PersonEventBase(EventBase):
    """Fields of every person event."""

    person_id: PersonId
    # A change that takes effect on a later HR date is held until that date.
    effective_at: HRDate | None = None


class PersonHired(PersonEventBase):
    """A new hire, or a rehire, with the person's full attributes."""

    type: Literal["person.hired"] = "person.hired"
    attributes: dict[str, AttributeValue]

    @model_validator(mode="after")
    def _check_dates(self, info: ValidationInfo) -> Self:
        # Events held before dates were checked must still be released.
        if not is_accepted_before(info):
            _refuse_non_dates(self.attributes, "attributes")
        return self


class PersonSnapshot(PersonEventBase):
    """The full record of a person; an attribute it omits is cleared."""

    type: Literal["person.snapshot"] = "person.snapshot"
    attributes: dict[str, AttributeValue]

    @model_validator(mode="after")
    def _check_dates(self, info: ValidationInfo) -> Self:
        # Events held before dates were checked must still be released.
        if not is_accepted_before(info):
            _refuse_non_dates(self.attributes, "attributes")
        return self


class PersonUpdated(PersonEventBase):
    """Changed attributes only: an absent key is unchanged, null clears it."""

    type: Literal["person.updated"] = "person.updated"
    changes: dict[str, AttributeValue] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_dates(self, info: ValidationInfo) -> Self:
        # Events held before dates were checked must still be released.
        if not is_accepted_before(info):
            _refuse_non_dates(self.changes, "changes")
        return self


class PersonTerminated(PersonEventBase):
    """The person leaves on ``termination_date``."""

    type: Literal["person.terminated"] = "person.terminated"
    termination_date: HRDate


class PersonDeleted(PersonEventBase):
    """The person is erased from the HR system."""

    type: Literal["person.deleted"] = "person.deleted"


PersonEvent = Annotated[
    PersonHired | PersonSnapshot | PersonUpdated | PersonTerminated | PersonDeleted,
    Field(discriminator="type"),
]

person_event_adapter: TypeAdapter[PersonEvent] = TypeAdapter(PersonEvent)
