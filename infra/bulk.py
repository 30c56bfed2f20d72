"""Set-based reads and writes for a batch of person events, in one transaction.

Every function takes the connection of an open StoreTransaction and costs one
round trip whatever the number of rows, so a batch of hundreds of events needs
about a dozen round trips instead of ten per event.

The rows go as one JSON text parameter, a list of positional arrays that the
server reads with jsonb_array_elements, rather than as one array parameter a
column: psycopg builds array parameters element by element in Python, several
times the cost of encoding JSON (in Rust, by pydantic_core) and of the server's
JSON parser.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from pydantic_core import to_json

from rules.person_state import PersonState, PersonStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MembershipRow:
    """One membership to insert, or to overwrite when it is already there."""

    program_id: str
    role: str
    person_id: str
    source: str
    decided_by: str
    cause_event_id: str
    added_at: datetime


@dataclass(frozen=True)
class OutboxEntry:
    """One event for the relay to publish."""

    topic: str
    key: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    kind: str
    subject: str
    cause_event_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class ProcessedEntry:
    """The id of a processed input and where it came from."""

    event_id: str
    topic: str
    partition: int
    offset: int
    outcome: str


@dataclass(frozen=True)
class HeldEntry:
    """A person event kept until its effective date."""

    event_id: str
    person_id: str
    due_on: date
    event: dict[str, Any]


def processed_ids(
    conn: psycopg.Connection[Any], event_ids: Collection[str]
) -> set[str]:
    """Return which of these event ids were processed already."""
    if not event_ids:
        return set()
    # IN (SELECT ...) rather than = ANY(ARRAY(SELECT ...)): the planner hashes
    # the ids or probes the index, where a computed array would be searched
    # from its start for every row of a sequential scan.
    rows = conn.execute(
        "SELECT event_id FROM processed_events"
        " WHERE event_id IN (SELECT jsonb_array_elements_text(%s::jsonb))",
        (_json(list(event_ids)),),
    ).fetchall()
    return {row[0] for row in rows}


def lock_persons(
    conn: psycopg.Connection[Any], person_ids: Collection[str]
) -> dict[str, PersonState]:
    """Return and lock the records of these persons; absent ones are left out.

    Rows are locked in person_id order, the order every other multi-person
    transaction uses, so that two batches never deadlock on each other.
    """
    if not person_ids:
        return {}
    rows = conn.execute(
        "SELECT person_id, attributes, status, version_at, version_event_id,"
        " lifecycle_at, lifecycle_event_id"
        " FROM persons"
        " WHERE person_id IN (SELECT jsonb_array_elements_text(%s::jsonb))"
        " ORDER BY person_id FOR UPDATE",
        (_json(sorted(person_ids)),),
    ).fetchall()
    return {
        row[0]: PersonState(
            person_id=row[0],
            attributes=row[1],
            status=PersonStatus(row[2]),
            version_at=row[3],
            version_event_id=row[4],
            lifecycle_at=row[5],
            lifecycle_event_id=row[6],
        )
        for row in rows
    }


def save_persons(
    conn: psycopg.Connection[Any],
    states: Sequence[PersonState],
    searches: Sequence[dict[str, Any]],
) -> None:
    """Insert or overwrite the records of persons, each with its search copy."""
    if not states:
        return
    conn.execute(
        "INSERT INTO persons (person_id, attributes, search, status, version_at,"
        " version_event_id, lifecycle_at, lifecycle_event_id)"
        " SELECT p->>0, p->1, p->2, p->>3, (p->>4)::timestamptz, p->>5,"
        " (p->>6)::timestamptz, p->>7"
        " FROM jsonb_array_elements(%s::jsonb) AS p"
        " ON CONFLICT (person_id) DO UPDATE SET attributes = excluded.attributes,"
        " search = excluded.search, status = excluded.status,"
        " version_at = excluded.version_at,"
        " version_event_id = excluded.version_event_id,"
        " lifecycle_at = excluded.lifecycle_at,"
        " lifecycle_event_id = excluded.lifecycle_event_id, updated_at = now()",
        (
            _json(
                [
                    (
                        state.person_id,
                        # Nested as they are: the server stores the jsonb that
                        # the one-person path (Store.save_person) stores.
                        dict(state.attributes),
                        search,
                        state.status.value,
                        # ISO 8601 with the offset and microseconds, which
                        # timestamptz reads back to the same instant.
                        state.version_at.isoformat(),
                        state.version_event_id,
                        None
                        if state.lifecycle_at is None
                        else state.lifecycle_at.isoformat(),
                        state.lifecycle_event_id,
                    )
                    for state, search in zip(states, searches, strict=True)
                ]
            ),
        ),
    )


def delete_memberships(
    conn: psycopg.Connection[Any], keys: Sequence[tuple[str, str, str]]
) -> None:
    """Delete memberships given as (program_id, role, person_id)."""
    if not keys:
        return
    conn.execute(
        "DELETE FROM memberships m"
        " USING jsonb_array_elements(%s::jsonb) AS d"
        " WHERE m.program_id = d->>0 AND m.role = d->>1 AND m.person_id = d->>2",
        (_json(keys),),
    )


def upsert_memberships(
    conn: psycopg.Connection[Any], rows: Sequence[MembershipRow]
) -> None:
    """Insert memberships; one removed and added again in the batch is rewritten."""
    if not rows:
        return
    conn.execute(
        "INSERT INTO memberships (program_id, role, person_id, source, decided_by,"
        " cause_event_id, added_at)"
        " SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, (r->>6)::timestamptz"
        " FROM jsonb_array_elements(%s::jsonb) AS r"
        " ON CONFLICT (program_id, role, person_id) DO UPDATE"
        " SET source = excluded.source, decided_by = excluded.decided_by,"
        " cause_event_id = excluded.cause_event_id, added_at = excluded.added_at",
        (
            _json(
                [
                    (
                        row.program_id,
                        row.role,
                        row.person_id,
                        row.source,
                        row.decided_by,
                        row.cause_event_id,
                        row.added_at.isoformat(),
                    )
                    for row in rows
                ]
            ),
        ),
    )


def append_outbox(
    conn: psycopg.Connection[Any], entries: Iterable[OutboxEntry]
) -> None:
    """Append events to the outbox, their ids ascending in the order given.

    COPY inserts rows one after the other, so the bigserial ids, which the
    relay publishes in, follow the order of the entries.
    """
    with (
        conn.cursor() as cursor,
        cursor.copy("COPY outbox (topic, key, payload) FROM STDIN") as copy,
    ):
        for entry in entries:
            copy.write_row((entry.topic, entry.key, _json(entry.payload)))


def append_audit(conn: psycopg.Connection[Any], entries: Iterable[AuditEntry]) -> None:
    """Append lines to the audit log."""
    with (
        conn.cursor() as cursor,
        cursor.copy(
            "COPY audit_log (kind, subject, cause_event_id, detail) FROM STDIN"
        ) as copy,
    ):
        for entry in entries:
            copy.write_row(
                (entry.kind, entry.subject, entry.cause_event_id, _json(entry.detail))
            )


def mark_processed(
    conn: psycopg.Connection[Any], entries: Iterable[ProcessedEntry]
) -> None:
    """Record processed ids; an id recorded already fails the whole transaction.

    That failure is what keeps two workers that briefly share a partition
    during a rebalance from applying one event twice.

    Neither processed_events nor audit_log is ever pruned: both grow by a row
    or more an input until an operator deletes rows older than any redelivery.
    """
    with (
        conn.cursor() as cursor,
        cursor.copy(
            'COPY processed_events (event_id, topic, partition, "offset", outcome)'
            " FROM STDIN"
        ) as copy,
    ):
        for entry in entries:
            copy.write_row(
                (
                    entry.event_id,
                    entry.topic,
                    entry.partition,
                    entry.offset,
                    entry.outcome,
                )
            )


def hold_events(conn: psycopg.Connection[Any], entries: Sequence[HeldEntry]) -> None:
    """Keep person events until their effective date; known ids are kept as are."""
    if not entries:
        return
    conn.execute(
        "INSERT INTO held_events (event_id, person_id, due_on, event)"
        " SELECT e->>0, e->>1, (e->>2)::date, e->3"
        " FROM jsonb_array_elements(%s::jsonb) AS e"
        " ON CONFLICT (event_id) DO NOTHING",
        (
            _json(
                [
                    (e.event_id, e.person_id, e.due_on.isoformat(), e.event)
                    for e in entries
                ]
            ),
        ),
    )


def set_timers(
    conn: psycopg.Connection[Any], timers: Sequence[tuple[str, date | None]]
) -> None:
    """Set or clear the re-evaluation day of many persons, one entry a person."""
    if not timers:
        return
    # One statement for both: the persons cleared and the persons set are
    # distinct, so the DELETE and the INSERT never touch the same row.
    conn.execute(
        "WITH t AS (SELECT e->>0 AS person_id, (e->>1)::date AS due_on"
        " FROM jsonb_array_elements(%s::jsonb) AS e),"
        " cleared AS (DELETE FROM person_timers p USING t"
        " WHERE p.person_id = t.person_id AND t.due_on IS NULL)"
        " INSERT INTO person_timers (person_id, due_on)"
        " SELECT person_id, due_on FROM t WHERE due_on IS NOT NULL"
        " ON CONFLICT (person_id) DO UPDATE SET due_on = excluded.due_on",
        (
            _json(
                [
                    (person_id, None if due_on is None else due_on.isoformat())
                    for person_id, due_on in timers
                ]
            ),
        ),
    )


def _json(value: Any) -> str:
    # pydantic's encoder, written in Rust, is several times faster than the
    # standard library's; the server parses either text to the same jsonb.
    return to_json(value).decode()
