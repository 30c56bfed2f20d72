"""The set-based sweep: every published rule over every person, inside PostgreSQL.

It decides exactly what the Python path (rules.evaluation) decides for each
person: per (program, role, person) the last matching published rule in
dashboard order, applied only where it changes the membership, and the
removal of every membership of a terminated or deleted person. Segments are
compiled to SQL by rules.sql over the search copy of the attributes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rules.person_state import PersonStatus
from rules.ruleset import RuleSet
from rules.search import search_document
from rules.sql import compile_segment
from schemas.common import EVENT_ID_NAMESPACE
from schemas.membership import DecidedBy, MembershipAction, MembershipEvent
from schemas.segments import Role

logger = logging.getLogger(__name__)

# How many persons without a search copy are filled in per round trip.
SEARCH_FILL_CHUNK = 1000

# The fields of a membership event that differ from one decision to the next;
# every other field is the same for the whole sweep.
_DECISION_FIELDS = ("event_id", "type", "program_id", "role", "person_id")
_DECIDER_FIELD = "decided_by"

_MATCHES_TABLE = "mentorflow_sweep_matches"

_COLLECT = (
    f"INSERT INTO {_MATCHES_TABLE} (segment_id, person_id)"
    " SELECT %s, p.person_id FROM persons AS p WHERE p.status = %s AND "
)

# One statement decides, applies and records every change, so that all its
# parts read the same snapshot of memberships. Membership events of a person
# are written in (program, role) order, as the Python path sorts them (code
# point order, hence COLLATE "C").
_APPLY = f"""
WITH rule_list AS (
    SELECT * FROM unnest(
        %(rule_ids)s::text[], %(actions)s::text[], %(program_ids)s::text[],
        %(roles)s::text[], %(segment_ids)s::text[], %(positions)s::integer[]
    ) AS r (rule_id, action, program_id, role, segment_id, position)
),
deciding AS (
    SELECT DISTINCT ON (r.program_id, r.role, m.person_id)
        r.program_id, r.role, m.person_id, r.rule_id, r.action
    FROM rule_list AS r
    JOIN {_MATCHES_TABLE} AS m ON m.segment_id = r.segment_id
    ORDER BY r.program_id, r.role, m.person_id, r.position DESC
),
changes (program_id, role, person_id, decided_by, type) AS (
    SELECT d.program_id, d.role, d.person_id, d.rule_id,
        CASE d.action WHEN %(add)s THEN %(added)s::text ELSE %(removed)s::text END
    FROM deciding AS d
    LEFT JOIN memberships AS m
        ON m.program_id = d.program_id AND m.role = d.role
        AND m.person_id = d.person_id
    WHERE (d.action = %(add)s) = (m.person_id IS NULL)
    UNION ALL
    SELECT m.program_id, m.role, m.person_id,
        CASE p.status WHEN %(terminated)s THEN %(terminated_by)s::text
            ELSE %(deleted_by)s::text END,
        %(removed)s::text
    FROM memberships AS m
    JOIN persons AS p ON p.person_id = m.person_id
    WHERE p.status IN (%(terminated)s, %(deleted)s)
),
events AS (
    SELECT c.*,
        mentorflow_event_id(
            %(namespace)s::bytea,
            concat_ws('|', %(cause)s::text, c.program_id, c.role, c.person_id, c.type)
        ) AS event_id
    FROM changes AS c
),
added AS (
    INSERT INTO memberships (program_id, role, person_id, source, decided_by,
        cause_event_id, added_at)
    SELECT program_id, role, person_id, 'rule', decided_by, %(cause)s,
        %(changed_at)s
    FROM events WHERE type = %(added)s
),
removed AS (
    DELETE FROM memberships AS m USING events AS e
    WHERE e.type = %(removed)s AND m.program_id = e.program_id
        AND m.role = e.role AND m.person_id = e.person_id
),
outboxed AS (
    INSERT INTO outbox (topic, key, payload)
    SELECT %(topic)s, person_id, %(template)s::jsonb || jsonb_build_object(
        'event_id', event_id, 'type', type, 'program_id', program_id,
        'role', role, 'person_id', person_id, 'decided_by', decided_by)
    FROM events
    ORDER BY person_id COLLATE "C", program_id COLLATE "C", role COLLATE "C"
),
audited AS (
    INSERT INTO audit_log (kind, subject, cause_event_id, detail)
    SELECT type, person_id, %(cause)s, jsonb_build_object(
        'program_id', program_id, 'role', role, 'decided_by', decided_by,
        'event_id', event_id)
    FROM events
    ORDER BY person_id COLLATE "C", program_id COLLATE "C", role COLLATE "C"
)
SELECT count(*) FROM events
"""


@dataclass(frozen=True)
class SweepCounts:
    """How many persons a sweep looked at and how many changes it made."""

    persons: int
    changes: int


def sweep_memberships(
    conn: psycopg.Connection[Any],
    ruleset: RuleSet,
    *,
    today: date,
    cause_event_id: str,
    changed_at: datetime,
    membership_topic: str,
) -> SweepCounts:
    """Re-run the published rules over every person, in the caller's transaction.

    The caller holds the sweep lock and the exclusive configuration lock, so no
    person or membership changes underneath. Each change gets one membership
    row change, one outbox row (the JSON of MembershipEvent.decided, with the
    same event id) and one audit row, exactly as the Python path writes them.
    """
    fill_search(conn)
    _collect_matches(conn, ruleset, today)

    params = {
        **_rule_arrays(ruleset),
        "add": "add",
        "added": MembershipAction.ADDED.value,
        "removed": MembershipAction.REMOVED.value,
        "terminated": PersonStatus.TERMINATED.value,
        "deleted": PersonStatus.DELETED.value,
        "terminated_by": DecidedBy.PERSON_TERMINATED.value,
        "deleted_by": DecidedBy.PERSON_DELETED.value,
        "namespace": EVENT_ID_NAMESPACE.bytes,
        "cause": cause_event_id,
        "changed_at": changed_at,
        "topic": membership_topic,
        "template": Jsonb(_event_template(cause_event_id, changed_at)),
    }
    row = conn.execute(_APPLY, params).fetchone()
    changes = int(row[0]) if row else 0

    row = conn.execute("SELECT count(*) FROM persons").fetchone()
    persons = int(row[0]) if row else 0
    conn.execute(f"DROP TABLE {_MATCHES_TABLE}")
    return SweepCounts(persons, changes)


def fill_search(conn: psycopg.Connection[Any]) -> int:
    """Compute the missing search copies of attributes; return how many."""
    filled = 0
    while True:
        rows = conn.execute(
            "SELECT person_id, attributes FROM persons WHERE search IS NULL"
            " ORDER BY person_id LIMIT %s",
            (SEARCH_FILL_CHUNK,),
        ).fetchall()
        if not rows:
            break
        with conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE persons SET search = %s WHERE person_id = %s",
                [(Jsonb(search_document(attributes)), pid) for pid, attributes in rows],
            )
        filled += len(rows)
    if filled:
        logger.info("filled search copies persons=%d", filled)
    return filled


def _collect_matches(
    conn: psycopg.Connection[Any], ruleset: RuleSet, today: date
) -> None:
    """Store the active members of every segment a published rule uses."""
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_MATCHES_TABLE}")
    conn.execute(
        f"CREATE TEMPORARY TABLE {_MATCHES_TABLE}"
        " (segment_id text NOT NULL, person_id text NOT NULL) ON COMMIT DROP"
    )
    for segment_id, definition in sorted(ruleset.used_segments.items()):
        condition = compile_segment(definition, today, ruleset.aliases_of(segment_id))
        cursor = conn.execute(
            _COLLECT + condition.sql,
            (segment_id, PersonStatus.ACTIVE.value, *condition.params),
        )
        logger.debug(
            "sweep matched segment_id=%s persons=%d", segment_id, cursor.rowcount
        )
    # A temporary table has no statistics until analysed; the join needs them.
    conn.execute(f"ANALYZE {_MATCHES_TABLE}")


def _rule_arrays(ruleset: RuleSet) -> dict[str, list[Any]]:
    rules = [rule for found in ruleset.by_pair.values() for rule in found]
    return {
        "rule_ids": [rule.rule_id for rule in rules],
        "actions": [rule.action.value for rule in rules],
        "program_ids": [rule.program_id for rule in rules],
        "roles": [rule.role.value for rule in rules],
        "segment_ids": [rule.segment_id for rule in rules],
        "positions": [rule.position for rule in rules],
    }


def _event_template(cause_event_id: str, changed_at: datetime) -> dict[str, Any]:
    """The JSON fields shared by every membership event of this sweep.

    Taken from a real event, so that pydantic, not SQL, decides how the
    timestamps and constants are written.
    """
    sample = MembershipEvent.decided(
        MembershipAction.ADDED, "", Role.MENTOR, "", "", cause_event_id, changed_at
    ).model_dump(mode="json")
    varying = {*_DECISION_FIELDS, _DECIDER_FIELD}
    return {name: value for name, value in sample.items() if name not in varying}
