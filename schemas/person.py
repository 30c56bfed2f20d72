"""Person events published by the HR system on ``hr.person-events``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import AttributeValue, EventBase

PersonId = Annotated[str, Field(min_length=1, max_length=200)]

# Attributes whose values are HR calendar dates: they stay dates end to end.
DATE_ATTRIBUTES = frozenset({"hire_date", "termination_date"})


class PersonEventBase(EventBase):
    """Fields of every person event."""

    person_id: PersonId
    # A change that takes effect on a later HR date is held until that date.
    effective_at: date | None = None


class PersonHired(PersonEventBase):
    """A new hire, or a rehire, with the person's full attributes."""

    type: Literal["person.hired"] = "person.hired"
    attributes: dict[str, AttributeValue]


class PersonSnapshot(PersonEventBase):
    """The full record of a person; an attribute it omits is cleared."""

    type: Literal["person.snapshot"] = "person.snapshot"
    attributes: dict[str, AttributeValue]


class PersonUpdated(PersonEventBase):
    """Changed attributes only: an absent key is unchanged, null clears it."""

    type: Literal["person.updated"] = "person.updated"
    changes: dict[str, AttributeValue] = Field(min_length=1)


class PersonTerminated(PersonEventBase):
    """The person leaves on ``termination_date``."""

    type: Literal["person.terminated"] = "person.terminated"
    termination_date: date


class PersonDeleted(PersonEventBase):
    """The person is erased from the HR system."""

    type: Literal["person.deleted"] = "person.deleted"


PersonEvent = Annotated[
    PersonHired | PersonSnapshot | PersonUpdated | PersonTerminated | PersonDeleted,
    Field(discriminator="type"),
]

person_event_adapter: TypeAdapter[PersonEvent] = TypeAdapter(PersonEvent)
