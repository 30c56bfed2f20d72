"""Fields shared by every event."""

from __future__ import annotations

import hashlib
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
    """Return the stable event id for the decision the parts describe.

    The id is a version 8 UUID (RFC 9562) made of the first 16 bytes of
    SHA-256(namespace bytes + UTF-8 of the parts joined by ``|``): PostgreSQL
    computes the same id with its built-in sha256() (``mentorflow_event_id``,
    migration 002), which it cannot do for a SHA-1 uuid5 without an extension.
    """
    name = "|".join(str(part) for part in parts)
    digest = bytearray(
        hashlib.sha256(EVENT_ID_NAMESPACE.bytes + name.encode()).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest[:16])))


def new_event_id() -> str:
    """Return a fresh random event id."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Return the current instant, time-zone aware."""
    return datetime.now(UTC)
