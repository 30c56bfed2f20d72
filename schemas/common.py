"""Fields shared by every event."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION: Literal[1] = 1

# Namespace of the ids derived from the content of an event: the same decision
# always gets the same id, so a consumer can drop a duplicate.
EVENT_ID_NAMESPACE = uuid.UUID("6c0f3c5e-3a52-4a53-9a57-0c1f3f0e8d41")

# A value of a person attribute, as JSON carries it.
AttributeValue = str | int | float | bool | list[Any] | dict[str, Any] | None


# Validation context key saying the value was validated and stored earlier (a
# segment, a held event): checks added since must not refuse what was accepted
# then, or one stored value would stop the worker from loading anything.
ACCEPTED_BEFORE = "accepted_before"


def is_accepted_before(info: ValidationInfo) -> bool:
    """Whether the value being validated was accepted and stored earlier."""
    return info.context is not None and bool(info.context.get(ACCEPTED_BEFORE))


# Validation context key saying the JSON text was found storable as a whole
# (see holds_no_unstorable_value), so the models need not walk their values.
STORABLE_TEXT = "storable_text"

# What in a JSON text can decode to a NUL or to a number that is not finite: a
# \u0000 escape, the NaN and Infinity literals, a three-digit exponent after a
# digit or a point, a run of 300 digits. Any of them sends the values to be
# walked one by one. Numbers are looked for with their digits read as 0 and E
# as e: a few substring tests cost half of one regular expression over every
# digit of the text, and every person event passes here.
_LITERALS = (b"\\u0000", b"NaN", b"Infinity")
_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")
_NUMBER_SHAPES = (
    b"0e000",
    b"0e+000",
    b"0e-000",
    b".e000",
    b".e+000",
    b".e-000",
    b"0" * 300,
)


def holds_no_unstorable_value(raw: bytes) -> bool:
    """Whether a JSON text surely decodes to no NUL and no infinite or NaN number."""
    for literal in _LITERALS:
        if literal in raw:
            return False
    shaped = raw.translate(_NUMBER_SHAPE)
    for shape in _NUMBER_SHAPES:  # noqa: SIM110
        if shape in shaped:
            return False
    return True


class FrozenModel(BaseModel):
    """A value object: immutable, strict about unknown fields, storable as it is.

    PostgreSQL stores no NUL character (U+0000) in text or jsonb, nor NaN or
    infinity in jsonb, so a string holding a NUL, or a number that is not
    finite, anywhere in a model, attribute keys and nested values included, is
    refused here with the field's path (error type ``nul_character`` or
    ``non_finite_number``) rather than failing later in the database.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _reject_unstorable_values(self, info: ValidationInfo) -> Self:
        # The JSON text was checked whole already: walking the values again
        # costs more than the rest of validating a person event.
        if info.context is not None and info.context.get(STORABLE_TEXT):
            return self
        for name, value in self.__dict__.items():
            found = _unstorable_path(value, name)
            if found is not None:
                kind, path = found
                alias = type(self).model_fields[name].alias
                if alias is not None:
                    path = alias + path.removeprefix(name)
                raise PydanticCustomError(kind, _UNSTORABLE[kind], {"field": path})
        return self


_SEQUENCES = (list, tuple, set, frozenset)
_CONTAINERS = (dict, *_SEQUENCES)
_NUL = "nul_character"
_NON_FINITE = "non_finite_number"
_UNSTORABLE = {
    _NUL: "{field} contains a NUL character (\\u0000), which PostgreSQL cannot"
    " store; expected text without it",
    _NON_FINITE: "{field} is NaN or infinite, which PostgreSQL cannot store in"
    " JSON; expected a finite number",
}


def _unstorable_path(value: object, path: str) -> tuple[str, str] | None:
    """Return the error type and path of the first unstorable value, else None.

    That is a string holding a NUL, or a float that is NaN or infinite,
    anywhere under value. Nested models are not walked: each validated its own
    fields already. Strings are tested in the loops, not by
    a call each, because every person event passes here: a call per attribute
    made validating one 60% slower.
    """
    if isinstance(value, str):
        return (_NUL, path) if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else (_NON_FINITE, path)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                # repr() spells the NUL out, so the message itself holds none.
                return _NUL, f"{path} key {key!r}"
            if isinstance(item, str):
                if "\x00" in item:
                    return _NUL, f"{path}.{key}"
            elif isinstance(item, float):
                if not math.isfinite(item):
                    return _NON_FINITE, f"{path}.{key}"
            elif isinstance(item, _CONTAINERS):
                found = _unstorable_path(item, f"{path}.{key}")
                if found is not None:
                    return found
    elif isinstance(value, _SEQUENCES):
        for index, item in enumerate(value):
            if isinstance(item, str):
                if "\x00" in item:
                    return _NUL, f"{path}.{index}"
            elif isinstance(item, float):
                if not math.isfinite(item):
                    return _NON_FINITE, f"{path}.{index}"
            elif isinstance(item, _CONTAINERS):
                found = _unstorable_path(item, f"{path}.{index}")
                if found is not None:
                    return found
    return None


class EventBase(FrozenModel):
    """The envelope every event carries."""

    # An event that omits its schema version is taken as version 1.
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
    hashed = _NAMESPACE_HASH.copy()
    hashed.update("|".join(map(str, parts)).encode())
    digest = bytearray(hashed.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# Every derived id hashes the namespace first: hashed once, copied for each id.
_NAMESPACE_HASH = hashlib.sha256(EVENT_ID_NAMESPACE.bytes)


def new_event_id() -> str:
    """Return a fresh random event id."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Return the current instant, time-zone aware."""
    return datetime.now(UTC)
