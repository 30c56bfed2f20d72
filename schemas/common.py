"""Fields shared by every event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1

# Namespace of the ids derived from the content of an event: the same decision
# always gets the same id, so a consumer can drop a duplicate.
EVENT_ID_NAMESPACE = uuid.UUID("6c0f3c5e-3a52-4a53-9a57-0c1f3f0e8d41")

# A value of a person attribute, as JSON carries it.
AttributeValue = str | int | float | bool | list[Any] | dict[str, Any] | None


class FrozenModel(BaseModel):
    """A value object: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EventBase(FrozenModel):
    """The envelope every event carries."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime


def derive_event_id(*parts: object) -> str:
    """Return the stable event id for the decision the parts describe."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(str(p) for p in parts)))


def new_event_id() -> str:
    """Return a fresh random event id."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Return the current instant, time-zone aware."""
    return datetime.now(UTC)
