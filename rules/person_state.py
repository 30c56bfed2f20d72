"""A person's record, and how each HR event changes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from schemas.membership import DecidedBy
from schemas.person import (
    PersonDeleted,
    PersonEvent,
    PersonHired,
    PersonSnapshot,
    PersonTerminated,
    PersonUpdated,
)


class PersonStatus(StrEnum):
    """Where a person is in their employment lifecycle."""

    ACTIVE = "active"
    TERMINATED = "terminated"
    DELETED = "deleted"


@dataclass(frozen=True)
class PersonState:
    """What mentorflow knows of one person."""

    person_id: str
    attributes: Mapping[str, Any]
    status: PersonStatus
    # The record's version: last writer wins by (occurred_at, event_id).
    version_at: datetime
    version_event_id: str
    # The last lifecycle event applied (hire, termination, deletion), or None
    # when none is known.
    lifecycle_at: datetime | None = None
    lifecycle_event_id: str | None = None

    @property
    def is_active(self) -> bool:
        """Only active people are in segments."""
        return self.status is PersonStatus.ACTIVE

    @property
    def departure_reason(self) -> str | None:
        """Why every membership must go, or None for an active person."""
        if self.status is PersonStatus.TERMINATED:
            return DecidedBy.PERSON_TERMINATED.value
        if self.status is PersonStatus.DELETED:
            return DecidedBy.PERSON_DELETED.value
        return None


@dataclass(frozen=True)
class Transition:
    """The result of applying one event to a person's record."""

    state: PersonState
    # False when the event is older than what the record already holds.
    applied: bool


# The events that move a person through employment rather than change them.
LIFECYCLE_EVENTS = (PersonHired, PersonTerminated, PersonDeleted)


def is_stale(current: PersonState | None, event: PersonEvent) -> bool:
    """Return whether the record already holds something newer than event.

    Last writer wins by ``occurred_at``, then by ``event_id``. A lifecycle
    event (hire, termination, deletion) is stale only against a newer
    lifecycle event: an attribute update written after a termination but
    delivered before it must not keep the person in their programs.
    """
    if current is None:
        return False
    # An occurred_at far in the future is accepted as it is, and then makes
    # every later update of the person stale until that instant.
    instant = (event.occurred_at, event.event_id)
    if instant > (current.version_at, current.version_event_id):
        return False
    if not isinstance(event, LIFECYCLE_EVENTS):
        return True
    if current.lifecycle_at is None or current.lifecycle_event_id is None:
        return False
    return instant <= (current.lifecycle_at, current.lifecycle_event_id)


def apply_event(current: PersonState | None, event: PersonEvent) -> Transition:
    """Return the record after event; a stale event leaves it as it was.

    A lifecycle event older than the record's version, but newer than its
    last lifecycle event, changes the status and keeps the newer attributes
    (a deletion still clears them); the record keeps its version.
    """
    if current is not None and is_stale(current, event):
        return Transition(current, applied=False)

    attributes = dict(current.attributes) if current else {}
    status = current.status if current else PersonStatus.ACTIVE
    is_newest = current is None or (event.occurred_at, event.event_id) > (
        current.version_at,
        current.version_event_id,
    )
    if isinstance(event, PersonHired):
        status = PersonStatus.ACTIVE
        if is_newest:
            attributes = _present(event.attributes)
    elif isinstance(event, PersonSnapshot):
        attributes = _present(event.attributes)
    elif isinstance(event, PersonUpdated):
        for name, value in event.changes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
    elif isinstance(event, PersonTerminated):
        attributes["termination_date"] = event.termination_date.isoformat()
        status = PersonStatus.TERMINATED
    elif isinstance(event, PersonDeleted):
        attributes, status = {}, PersonStatus.DELETED

    lifecycle_at = current.lifecycle_at if current else None
    lifecycle_event_id = current.lifecycle_event_id if current else None
    if isinstance(event, LIFECYCLE_EVENTS):
        lifecycle_at, lifecycle_event_id = event.occurred_at, event.event_id
    version_at, version_event_id = event.occurred_at, event.event_id
    if current is not None and not is_newest:
        version_at, version_event_id = current.version_at, current.version_event_id
    state = PersonState(
        person_id=event.person_id,
        attributes=attributes,
        status=status,
        version_at=version_at,
        version_event_id=version_event_id,
        lifecycle_at=lifecycle_at,
        lifecycle_event_id=lifecycle_event_id,
    )
    return Transition(state, applied=True)


def with_status(state: PersonState, status: PersonStatus) -> PersonState:
    """Return the record with another lifecycle status."""
    return replace(state, status=status)


def _present(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # A null in a full record means the same as an absent key: not known.
    return {name: value for name, value in attributes.items() if value is not None}
