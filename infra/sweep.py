"""The set-based sweep: every published rule over every person, inside PostgreSQL.

It decides exactly what the Python path (rules.evaluation) decides for each
person: per (program, role, person) the last matching published rule in
dashboard order, applied only where it changes the membership, and the
removal of every membership of a terminated or deleted person. The rule set is
compiled to SQL by rules.sql over the search copy of the attributes, and read
in one pass over the persons; that pass can be split by table pages over
several connections that share the sweep transaction's snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from rules.person_state import PersonStatus
from rules.ruleset import RuleSet
from rules.search import search_document
from rules.sql import CompiledDecisions, compile_decisions
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

_CHANGES_TABLE = "mentorflow_sweep_changes"

# The persons of one share of the table whose deciding rule disagrees with
# their membership: an add rule for a non-member, a remove rule for a member.
_DECIDE = """
SELECT d.person_id, d.rule_no
FROM ({decisions}) AS d
JOIN unnest(%(rule_actions)s::text[], %(rule_programs)s::text[],
    %(rule_roles)s::text[]) WITH ORDINALITY AS r (action, program_id, role, rule_no)
    ON r.rule_no = d.rule_no
LEFT JOIN memberships AS m
    ON m.program_id = r.program_id AND m.role = r.role
    AND m.person_id = d.person_id
WHERE (r.action = 'add') = (m.person_id IS NULL)
"""

# One statement applies and records every change, so that all its parts read
# the same snapshot of memberships. Membership events of a person are written
# in (program, role) order, as the Python path sorts them (code point order,
# hence COLLATE "C").
_APPLY = f"""
WITH rule_list AS (
    SELECT * FROM unnest(%(rule_ids)s::text[], %(rule_actions)s::text[],
        %(rule_programs)s::text[], %(rule_roles)s::text[])
        WITH ORDINALITY AS r (rule_id, action, program_id, role, rule_no)
),
changes (program_id, role, person_id, decided_by, type) AS (
    SELECT r.program_id, r.role, c.person_id, r.rule_id,
        CASE r.action WHEN 'add' THEN %(added)s::text ELSE %(removed)s::text END
    FROM {_CHANGES_TABLE} AS c
    JOIN rule_list AS r ON r.rule_no = c.rule_no
    UNION ALL
    SELECT m.program_id, m.role, m.person_id,
        CASE p.status WHEN %(terminated)s THEN %(terminated_by)s::text
            ELSE %(deleted_by)s::text END,
        %(removed)s::text
    FROM memberships AS m
    JOIN persons AS p ON p.person_id = m.person_id
    WHERE p.status <> 'active'
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

# A share of the persons: the rows stored in a run of the table's pages, which
# PostgreSQL 14 and later read alone (a TID range scan).
_SHARE = "p.ctid >= %(first_page)s::tid AND p.ctid < %(end_page)s::tid"
# Past the highest page number a table can have.
_END_OF_TABLE = 2**32 - 1

# The first page of a share and the page after its last.
Share = tuple[int, int]

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


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
    connect: Connect | None = None,
    connections: int = 1,
    work_mem_mb: int | None = None,
) -> SweepCounts:
    """Re-run the published rules over every person, in the caller's transaction.

    The caller holds the sweep lock and the exclusive configuration lock, so no
    person or membership changes underneath. Each change gets one membership
    row change, one outbox row (the JSON of MembershipEvent.decided, with the
    same event id) and one audit row, exactly as the Python path writes them.

    With ``connect`` and ``connections`` above 1, the persons are read in that
    many shares at once, the others over new connections that ``connect``
    opens, unless this transaction had to compute missing search copies.
    ``work_mem_mb`` sets PostgreSQL's work_mem for the sweep's queries.
    """
    if work_mem_mb is not None:
        _set_work_mem(conn, work_mem_mb)
    # Other connections would not see search copies computed in this
    # transaction; the caller can compute and commit them first.
    if fill_search(conn):
        connections = 1
    decisions = compile_decisions(ruleset, today, where=_SHARE)
    rules = _rule_arrays(decisions)

    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{_CHANGES_TABLE}")
    conn.execute(
        f"CREATE TEMPORARY TABLE {_CHANGES_TABLE}"
        " (person_id text NOT NULL, rule_no integer NOT NULL) ON COMMIT DROP"
    )
    if decisions.rules:
        shares = _shares(conn, connections if connect is not None else 1)
        _decide(conn, decisions, rules, shares, connect, work_mem_mb)

    params = {
        **rules,
        "added": MembershipAction.ADDED.value,
        "removed": MembershipAction.REMOVED.value,
        "terminated": PersonStatus.TERMINATED.value,
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
    conn.execute(f"DROP TABLE {_CHANGES_TABLE}")
    return SweepCounts(persons, changes)


def _decide(
    conn: psycopg.Connection[Any],
    decisions: CompiledDecisions,
    rules: Mapping[str, list[str]],
    shares: list[Share],
    connect: Connect | None,
    work_mem_mb: int | None,
) -> None:
    """Store the changes every share of the persons needs, read at once."""
    params = {**decisions.params, **rules}
    if len(shares) == 1 or connect is None:
        _store_changes(conn, _changes_of(conn, decisions, shares[0], params))
        return

    # The other connections read exactly what this transaction sees: nothing
    # changes underneath while the caller holds its locks.
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    snapshot = str(row[0])

    def elsewhere(share: Share) -> list[tuple[str, int]]:
        with connect() as other:
            other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(snapshot))
            if work_mem_mb is not None:
                _set_work_mem(other, work_mem_mb)
            try:
                return _changes_of(other, decisions, share, params)
            finally:
                other.rollback()

    with ThreadPoolExecutor(len(shares) - 1, thread_name_prefix="sweep") as pool:
        others = [pool.submit(elsewhere, share) for share in shares[1:]]
        _store_changes(conn, _changes_of(conn, decisions, shares[0], params))
        for other in others:
            _store_changes(conn, other.result())


def _changes_of(
    conn: psycopg.Connection[Any],
    decisions: CompiledDecisions,
    share: Share,
    params: Mapping[str, Any],
) -> list[tuple[str, int]]:
    """The changes of the persons stored in one share of the table's pages."""
    query = _DECIDE.format(decisions=decisions.sql)
    first, end = share
    pages = {"first_page": f"({first},0)", "end_page": f"({end},0)"}
    rows: list[tuple[str, int]] = conn.execute(
        query.encode(), {**params, **pages}
    ).fetchall()
    logger.debug("sweep share decided pages=%d-%d changes=%d", first, end, len(rows))
    return rows


def _store_changes(conn: psycopg.Connection[Any], rows: list[tuple[str, int]]) -> None:
    with conn.cursor().copy(
        f"COPY {_CHANGES_TABLE} (person_id, rule_no) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


def _shares(conn: psycopg.Connection[Any], count: int) -> list[Share]:
    """Split the persons table into count runs of pages, the last one open."""
    row = conn.execute(
        "SELECT pg_relation_size('persons') / current_setting('block_size')::bigint"
    ).fetchone()
    pages = int(row[0]) if row else 0
    count = max(1, min(count, pages))
    bounds = [pages * index // count for index in range(count)]
    # Pages added since the size was read belong to the last share.
    return list(zip(bounds, [*bounds[1:], _END_OF_TABLE], strict=True))


def _set_work_mem(conn: psycopg.Connection[Any], megabytes: int) -> None:
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(f"{megabytes}MB"))


def _rule_arrays(decisions: CompiledDecisions) -> dict[str, list[str]]:
    rules = decisions.rules
    return {
        "rule_ids": [rule.rule_id for rule in rules],
        "rule_actions": [rule.action.value for rule in rules],
        "rule_programs": [rule.program_id for rule in rules],
        "rule_roles": [rule.role.value for rule in rules],
    }


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
