"""Events mentorflow publishes: membership changes and dead letters."""

from __future__ import annotations

import base64
import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas.common import EventBase, derive_event_id
from schemas.segments import Role


class MembershipAction(StrEnum):
    """The two membership changes."""

    ADDED = "membership.added"
    REMOVED = "membership.removed"


class DecidedBy(StrEnum):
    """Deciders of a change that are not a rule."""

    MANUAL = "manual"
    PERSON_TERMINATED = "person_terminated"
    PERSON_DELETED = "person_deleted"
    PROGRAM_DELETED = "program_deleted"


class MembershipEvent(EventBase):
    """One membership change, attributed to what decided it."""

    type: MembershipAction
    program_id: str
    role: Role
    person_id: str
    # A rule id, or one of DecidedBy's values.
    decided_by: str
    cause_event_id: str
    changed_at: AwareDatetime

    @classmethod
    def decided(
        cls,
        action: MembershipAction,
        program_id: str,
        role: Role,
        person_id: str,
        decided_by: str,
        cause_event_id: str,
        changed_at: AwareDatetime,
    ) -> MembershipEvent:
        """Build the event with the id derived from what decided it."""
        return cls(
            event_id=_decision_id(action, program_id, role, person_id, cause_event_id),
            occurred_at=changed_at,
            type=action,
            program_id=program_id,
            role=role,
            person_id=person_id,
            decided_by=decided_by,
            cause_event_id=cause_event_id,
            changed_at=changed_at,
        )

    @classmethod
    def shared_json(cls, changed_at: AwareDatetime) -> dict[str, Any]:
        """The JSON fields of decided()'s events that depend only on changed_at."""
        sample = cls.decided(
            MembershipAction.ADDED, "p", Role.MENTOR, "p", "r", "c", changed_at
        ).model_dump(mode="json")
        return {name: sample[name] for name in _SHARED_FIELDS}

    @staticmethod
    def decided_json(
        shared: dict[str, Any],
        action: MembershipAction,
        program_id: str,
        role: Role,
        person_id: str,
        decided_by: str,
        cause_event_id: str,
    ) -> dict[str, Any]:
        """Return decided(...).model_dump(mode="json"), built directly.

        ``shared`` is shared_json(changed_at). Every value must have passed
        validation already, as the ids of stored persons, rules and events
        have: nothing is checked again, which is what makes this the cheap
        way to write the many events of a batch.
        """
        return {
            **shared,
            "event_id": _decision_id(
                action, program_id, role, person_id, cause_event_id
            ),
            "type": action.value,
            "program_id": program_id,
            "role": role.value,
            "person_id": person_id,
            "decided_by": decided_by,
            "cause_event_id": cause_event_id,
        }


_SHARED_FIELDS = ("schema_version", "occurred_at", "changed_at")


def _decision_id(
    action: MembershipAction,
    program_id: str,
    role: Role,
    person_id: str,
    cause_event_id: str,
) -> str:
    # The same decision always gets the same id (see derive_event_id).
    return derive_event_id(
        cause_event_id, program_id, role.value, person_id, action.value
    )


# A dead letter must fit in one Kafka record, which producers and brokers cap at
# 1 MiB unless configured otherwise; escaping can make a payload much longer as
# JSON text than it was as a record, and the rest of the letter needs room too.
PAYLOAD_MAX_BYTES = 900_000


class DeadLetter(EventBase):
    """An input that could not be processed, kept verbatim with the reason.

    An input whose payload would not fit in PAYLOAD_MAX_BYTES of JSON keeps only
    its beginning, and ``payload_truncated_from`` gives its size in bytes; the
    whole input stays on its source topic, at its partition and offset.
    """

    type: Literal["dead_letter"] = "dead_letter"
    error: str
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    key: str | None = None
    # The input exactly as it arrived: as text when it is UTF-8 with no NUL
    # character (which PostgreSQL cannot store), else base64.
    payload: str | None = None
    payload_base64: str | None = None
    payload_truncated_from: int | None = Field(default=None, ge=0)

    @classmethod
    def of_record(cls, raw: bytes, **fields: Any) -> DeadLetter:
        """Return the dead letter of an input, its payload cut to fit if need be."""
        try:
            text: str | None = raw.decode()
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text:
            if _json_size(text) <= PAYLOAD_MAX_BYTES:
                return cls(payload=text, **fields)
            return cls(
                payload=_text_within(text, PAYLOAD_MAX_BYTES),
                payload_truncated_from=len(raw),
                **fields,
            )
        # Base64 takes 4 characters for every 3 bytes, and JSON escapes none.
        kept = raw[: PAYLOAD_MAX_BYTES // 4 * 3]
        return cls(
            payload_base64=base64.b64encode(kept).decode(),
            payload_truncated_from=len(raw) if len(kept) < len(raw) else None,
            **fields,
        )

    @model_validator(mode="before")
    @classmethod
    def _encode_nul_payload(cls, data: Any) -> Any:
        # A record may be valid UTF-8 and still hold a NUL byte: it must be
        # dead-lettered all the same, so it travels as base64 instead of text.
        if isinstance(data, dict):
            payload = data.get("payload")
            if isinstance(payload, str) and "\x00" in payload:
                encoded = base64.b64encode(payload.encode()).decode()
                return data | {"payload": None, "payload_base64": encoded}
        return data


def _json_size(text: str) -> int:
    """Bytes of text as a JSON string, as json.dumps and PostgreSQL's jsonb write it."""
    return len(json.dumps(text, ensure_ascii=False).encode())


def _text_within(text: str, max_bytes: int) -> str:
    """Return the longest beginning of text whose JSON string fits max_bytes."""
    cut = len(text)
    while (size := _json_size(text[:cut])) > max_bytes:
        # Escapes spread unevenly, so the proportional guess may take a few tries;
        # each is shorter than the last.
        cut = min(cut - 1, cut * max_bytes // size)
    return text[:cut]
