"""The PostgreSQL store: every read and write of mentorflow's state."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from infra.database import watch_for_a_lost_client
from infra.errors import (
    ConfigRejectedError,
    DatabaseUnavailableError,
    StaleHeldConfigError,
)
from rules.person_state import PersonState, PersonStatus
from rules.ruleset import Pair, RuleSet
from rules.search import search_document
from rules.sql import compile_decisions
from schemas.common import ACCEPTED_BEFORE
from schemas.segments import Program, Role, Rule, RuleAction, RuleStatus, Segment

logger = logging.getLogger(__name__)

# Advisory lock keys. Person transactions hold CONFIG_LOCK shared, so that a
# configuration change or a sweep, which hold it exclusively, sees every person
# either before or after an event, never half-way.
CONFIG_LOCK_KEY = 0x6D656E746F72_02
SWEEP_LOCK_KEY = 0x6D656E746F72_03
RELAY_LOCK_KEY = 0x6D656E746F72_04

# Added to a rule's position while a batch renumbers it; no real dashboard
# comes near it.
PARKED_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class SourcePosition:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class MemberRow:
    """One membership as stored."""

    program_id: str
    role: Role
    person_id: str
    source: str
    decided_by: str
    added_at: datetime


@dataclass(frozen=True)
class Reevaluation:
    """A configuration change's re-evaluation of every person, under way."""

    cause_event_id: str
    pairs: frozenset[Pair]
    after_person_id: str


@dataclass(frozen=True)
class OutboxRow:
    """One event waiting to be published."""

    id: int
    topic: str
    key: str | None
    # The event's JSON as stored, published as it is: decoding and encoding
    # it again would cost the relay more than sending it.
    payload: bytes
    # The event's type, program and role, read out by the server for the
    # metrics; None where the event has none.
    kind: str | None = None
    program_id: str | None = None
    role: str | None = None

    def decoded(self) -> dict[str, Any]:
        """The event as a JSON object."""
        data: dict[str, Any] = json.loads(self.payload)
        return data


class Store:
    """Opens transactions on the PostgreSQL pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        # The connections running a block, for cancel_running.
        self._busy: set[psycopg.Connection[Any]] = set()
        self._busy_lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """Run the block in one transaction; commit on success.

        Raises DatabaseUnavailableError when the connection fails, which the
        caller may retry: nothing of the block was committed.
        """
        try:
            with (
                self.pool.connection() as conn,
                self._running(conn),
                conn.transaction(),
            ):
                yield StoreTransaction(conn)
        except psycopg.OperationalError as error:
            raise DatabaseUnavailableError(f"postgresql failed: {error}") from error

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """Open a connection of its own for the block, outside the pool.

        It is in autocommit mode: the caller begins what it needs. Raises
        DatabaseUnavailableError when the connection fails.
        """
        conninfo = self.pool.conninfo
        try:
            with (
                psycopg.connect(
                    conninfo() if callable(conninfo) else conninfo, autocommit=True
                ) as conn,
                self._running(conn),
            ):
                watch_for_a_lost_client(conn)
                yield conn
        except psycopg.OperationalError as error:
            raise DatabaseUnavailableError(f"postgresql failed: {error}") from error

    @contextmanager
    def _running(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        with self._busy_lock:
            self._busy.add(conn)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy.discard(conn)

    def cancel_running(self) -> int:
        """Cancel what every connection running a block runs; return how many.

        For a stopping worker: a thread blocked in a statement, one waiting on
        a lock say, would otherwise hold the process until the statement ends.
        Each cancelled block fails, and its transaction rolls back.
        """
        with self._busy_lock:
            busy = list(self._busy)
        for conn in busy:
            try:
                conn.cancel_safe(timeout=5.0)
            except psycopg.Error as error:
                logger.warning("could not cancel a statement: %s", error)
        return len(busy)

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()


class StoreTransaction:
    """The reads and writes available inside one transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    # -- locks --------------------------------------------------------------

    def lock_config(self, *, exclusive: bool) -> None:
        """Take the configuration lock until the transaction ends."""
        function = (
            "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        )
        self.conn.execute(f"SELECT {function}(%s)", (CONFIG_LOCK_KEY,))

    def try_lock(self, key: int) -> bool:
        """Try to take an exclusive advisory lock until the transaction ends."""
        row = self.conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s)", (key,)
        ).fetchone()
        return bool(row and row[0])

    # -- processed events ---------------------------------------------------

    def is_processed(self, event_id: str) -> bool:
        """Return whether an event with this id was processed already."""
        row = self.conn.execute(
            "SELECT 1 FROM processed_events WHERE event_id = %s", (event_id,)
        ).fetchone()
        return row is not None

    def mark_processed(
        self, event_id: str, source: SourcePosition, outcome: str
    ) -> None:
        """Record that the event was processed, with how it came out."""
        self.conn.execute(
            'INSERT INTO processed_events (event_id, topic, partition, "offset",'
            " outcome) VALUES (%s, %s, %s, %s, %s)",
            (event_id, source.topic, source.partition, source.offset, outcome),
        )

    def outcome_of(self, event_id: str) -> str | None:
        """Return how an event came out, or None while it is not processed."""
        row = self.conn.execute(
            "SELECT outcome FROM processed_events WHERE event_id = %s", (event_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def audit_detail(self, kind: str, cause_event_id: str) -> dict[str, Any] | None:
        """Return the detail of the latest audit entry of a kind for a cause."""
        row = self.conn.execute(
            "SELECT detail FROM audit_log WHERE kind = %s AND cause_event_id = %s"
            " ORDER BY id DESC LIMIT 1",
            (kind, cause_event_id),
        ).fetchone()
        return None if row is None else dict(row[0])

    def count_processed(self, event_ids: Sequence[str]) -> int:
        """Return how many of these event ids were processed."""
        row = self.conn.execute(
            "SELECT count(*) FROM processed_events WHERE event_id = ANY(%s)",
            (list(event_ids),),
        ).fetchone()
        return int(row[0]) if row else 0

    def outcome_counts(self) -> dict[str, int]:
        """Return how many processed events came out each way."""
        rows = self.conn.execute(
            "SELECT outcome, count(*) FROM processed_events GROUP BY outcome"
        ).fetchall()
        return {outcome: int(count) for outcome, count in rows}

    # -- configuration ------------------------------------------------------

    def config_version(self) -> int:
        """Return the number of configuration changes so far."""
        row = self.conn.execute("SELECT version FROM config_version").fetchone()
        return int(row[0]) if row else 0

    def bump_config_version(self) -> None:
        """Mark that the configuration changed."""
        self.conn.execute("UPDATE config_version SET version = version + 1")

    def load_rules(self) -> list[Rule]:
        """Return every rule, in dashboard order."""
        with self.conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                "SELECT rule_id, action, program_id, role, segment_id, position,"
                " status, name FROM rules ORDER BY position, rule_id"
            ).fetchall()
        return [Rule.model_validate(row) for row in rows]

    def load_segments(self) -> list[Segment]:
        """Return every segment."""
        with self.conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                "SELECT segment_id, name, definition, aliases FROM segments"
                " ORDER BY segment_id"
            ).fetchall()
        stored = {ACCEPTED_BEFORE: True}
        return [Segment.model_validate(row, context=stored) for row in rows]

    def load_ruleset(self) -> RuleSet:
        """Return the published rules grouped by program and role."""
        return RuleSet.build(self.load_rules(), self.load_segments())

    def load_programs(self) -> list[Program]:
        """Return every program."""
        rows = self.conn.execute(
            "SELECT program_id, name FROM programs ORDER BY program_id"
        ).fetchall()
        return [Program(program_id=row[0], name=row[1]) for row in rows]

    def program_exists(self, program_id: str) -> bool:
        """Return whether the program exists."""
        row = self.conn.execute(
            "SELECT 1 FROM programs WHERE program_id = %s", (program_id,)
        ).fetchone()
        return row is not None

    def upsert_program(self, program: Program) -> None:
        """Create or rename a program."""
        self.conn.execute(
            "INSERT INTO programs (program_id, name) VALUES (%s, %s)"
            " ON CONFLICT (program_id) DO UPDATE"
            " SET name = excluded.name, updated_at = now()",
            (program.program_id, program.name),
        )

    def delete_program(self, program_id: str) -> bool:
        """Delete a program and its rules; return whether it existed."""
        cursor = self.conn.execute(
            "DELETE FROM programs WHERE program_id = %s", (program_id,)
        )
        return cursor.rowcount > 0

    def upsert_segment(self, segment: Segment) -> None:
        """Create or edit a segment."""
        definition = segment.model_dump(mode="json", by_alias=True)["definition"]
        self.conn.execute(
            "INSERT INTO segments (segment_id, name, definition, aliases)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (segment_id) DO UPDATE SET name = excluded.name,"
            " definition = excluded.definition, aliases = excluded.aliases,"
            " updated_at = now()",
            (
                segment.segment_id,
                segment.name,
                Jsonb(definition),
                Jsonb(segment.aliases),
            ),
        )

    def delete_segment(self, segment_id: str) -> bool:
        """Delete a segment; raise ConfigRejectedError while a rule uses it."""
        users = self.conn.execute(
            "SELECT rule_id FROM rules WHERE segment_id = %s ORDER BY rule_id",
            (segment_id,),
        ).fetchall()
        if users:
            names = ", ".join(row[0] for row in users)
            raise ConfigRejectedError(
                f"segment {segment_id!r} is used by rules {names}; delete them first"
            )
        cursor = self.conn.execute(
            "DELETE FROM segments WHERE segment_id = %s", (segment_id,)
        )
        return cursor.rowcount > 0

    def segment_users(self, segment_id: str) -> list[Rule]:
        """Return the rules that use a segment."""
        return [rule for rule in self.load_rules() if rule.segment_id == segment_id]

    def get_rule(self, rule_id: str) -> Rule | None:
        """Return one rule, or None."""
        return next((r for r in self.load_rules() if r.rule_id == rule_id), None)

    def upsert_rule(self, rule: Rule) -> None:
        """Create or edit a rule.

        Raises ConfigRejectedError when its program or segment is unknown or
        when another published rule holds its position.
        """
        if not self.program_exists(rule.program_id):
            raise ConfigRejectedError(
                f"rule {rule.rule_id!r} names unknown program {rule.program_id!r}"
            )
        segment = self.conn.execute(
            "SELECT 1 FROM segments WHERE segment_id = %s", (rule.segment_id,)
        ).fetchone()
        if segment is None:
            raise ConfigRejectedError(
                f"rule {rule.rule_id!r} names unknown segment {rule.segment_id!r}"
            )
        self._check_position_free(rule.rule_id, rule.position, rule.status)
        self.conn.execute(
            "INSERT INTO rules (rule_id, action, program_id, role, segment_id,"
            " position, status, name) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (rule_id) DO UPDATE SET action = excluded.action,"
            " program_id = excluded.program_id, role = excluded.role,"
            " segment_id = excluded.segment_id, position = excluded.position,"
            " status = excluded.status, name = excluded.name, updated_at = now()",
            (
                rule.rule_id,
                rule.action.value,
                rule.program_id,
                rule.role.value,
                rule.segment_id,
                rule.position,
                rule.status.value,
                rule.name,
            ),
        )

    def set_rule_status(self, rule_id: str, status: RuleStatus) -> Rule:
        """Publish or pause a rule; return it as it was before."""
        rule = self.get_rule(rule_id)
        if rule is None:
            raise ConfigRejectedError(f"unknown rule {rule_id!r}")
        self._check_position_free(rule_id, rule.position, status)
        self.conn.execute(
            "UPDATE rules SET status = %s, updated_at = now() WHERE rule_id = %s",
            (status.value, rule_id),
        )
        return rule

    def delete_rule(self, rule_id: str) -> Rule | None:
        """Delete a rule; return it as it was, or None if unknown."""
        rule = self.get_rule(rule_id)
        self.conn.execute("DELETE FROM rules WHERE rule_id = %s", (rule_id,))
        return rule

    def reorder_rules(self, rule_ids: Sequence[str]) -> list[Rule]:
        """Give the listed rules positions 0, 1, 2, ... and the others later ones.

        Returns the rules as they were. Raises ConfigRejectedError when the list
        names an unknown rule or names one twice.
        """
        before = self.load_rules()
        known = {rule.rule_id for rule in before}
        unknown = sorted(set(rule_ids) - known)
        if unknown:
            raise ConfigRejectedError(f"reorder names unknown rules {unknown}")
        if len(set(rule_ids)) != len(rule_ids):
            raise ConfigRejectedError("reorder names a rule twice")
        rest = [rule.rule_id for rule in before if rule.rule_id not in set(rule_ids)]
        order = [*rule_ids, *rest]

        # Move every rule out of the way first: the unique index on published
        # positions would otherwise trip half-way through the renumbering.
        self.park_rules([rule.rule_id for rule in before])
        self.conn.cursor().executemany(
            "UPDATE rules SET position = %s, updated_at = now() WHERE rule_id = %s",
            [(position, rule_id) for position, rule_id in enumerate(order)],
        )
        return before

    def park_rules(self, rule_ids: Sequence[str]) -> None:
        """Move rules out of every dashboard position, before renumbering them."""
        self.conn.execute(
            "UPDATE rules SET position = position + %s WHERE rule_id = ANY(%s)",
            (PARKED_OFFSET, list(rule_ids)),
        )

    def _check_position_free(
        self, rule_id: str, position: int, status: RuleStatus
    ) -> None:
        if status is not RuleStatus.PUBLISHED:
            return
        row = self.conn.execute(
            "SELECT rule_id FROM rules WHERE position = %s AND status = 'published'"
            " AND rule_id <> %s",
            (position, rule_id),
        ).fetchone()
        if row is not None:
            raise ConfigRejectedError(
                f"rule {rule_id!r} takes dashboard position {position}, which"
                f" published rule {row[0]!r} holds; expected a free position"
            )

    # -- persons ------------------------------------------------------------

    def load_person(
        self, person_id: str, *, for_update: bool = True
    ) -> PersonState | None:
        """Return a person's record, locking it for this transaction."""
        lock = " FOR UPDATE" if for_update else ""
        row = self.conn.execute(
            "SELECT person_id, attributes, status, version_at, version_event_id,"
            " lifecycle_at, lifecycle_event_id"
            " FROM persons WHERE person_id = %s" + lock,
            (person_id,),
        ).fetchone()
        return _person(row) if row else None

    def save_person(self, state: PersonState) -> None:
        """Write a person's record."""
        self.conn.execute(
            "INSERT INTO persons (person_id, attributes, search, status, version_at,"
            " version_event_id, lifecycle_at, lifecycle_event_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (person_id) DO UPDATE SET attributes = excluded.attributes,"
            " search = excluded.search,"
            " status = excluded.status, version_at = excluded.version_at,"
            " version_event_id = excluded.version_event_id,"
            " lifecycle_at = excluded.lifecycle_at,"
            " lifecycle_event_id = excluded.lifecycle_event_id, updated_at = now()",
            (
                state.person_id,
                Jsonb(dict(state.attributes)),
                Jsonb(search_document(state.attributes)),
                state.status.value,
                state.version_at,
                state.version_event_id,
                state.lifecycle_at,
                state.lifecycle_event_id,
            ),
        )

    def iter_persons(self, chunk_size: int = 1000) -> Iterator[list[PersonState]]:
        """Yield every person's record, in chunks, in person_id order."""
        last = ""
        while True:
            rows = self.conn.execute(
                "SELECT person_id, attributes, status, version_at, version_event_id,"
                " lifecycle_at, lifecycle_event_id"
                " FROM persons WHERE person_id > %s ORDER BY person_id LIMIT %s",
                (last, chunk_size),
            ).fetchall()
            if not rows:
                return
            yield [_person(row) for row in rows]
            last = rows[-1][0]

    def count_persons(self) -> dict[str, int]:
        """Return how many persons there are in each status."""
        rows = self.conn.execute(
            "SELECT status, count(*) FROM persons GROUP BY status"
        ).fetchall()
        return {status: int(count) for status, count in rows}

    # -- memberships ----------------------------------------------------------

    def memberships_of(self, person_ids: Iterable[str]) -> dict[str, set[Pair]]:
        """Return the (program, role) memberships of each person."""
        found: dict[str, set[Pair]] = defaultdict(set)
        rows = self.conn.execute(
            "SELECT person_id, program_id, role FROM memberships"
            " WHERE person_id = ANY(%s)",
            (list(person_ids),),
        ).fetchall()
        for person_id, program_id, role in rows:
            found[person_id].add((program_id, Role(role)))
        return found

    def members(self, program_id: str, role: Role | None = None) -> list[MemberRow]:
        """Return the members of a program, by role then person."""
        rows = self.conn.execute(
            "SELECT program_id, role, person_id, source, decided_by, added_at"
            " FROM memberships WHERE program_id = %s"
            " AND (%s::text IS NULL OR role = %s)"
            " ORDER BY role, person_id",
            (program_id, role and role.value, role and role.value),
        ).fetchall()
        return [
            MemberRow(row[0], Role(row[1]), row[2], row[3], row[4], row[5])
            for row in rows
        ]

    def member_ids_of_program(self, program_id: str) -> list[tuple[Role, str]]:
        """Return (role, person_id) for every member of a program."""
        rows = self.conn.execute(
            "SELECT role, person_id FROM memberships WHERE program_id = %s"
            " ORDER BY role, person_id",
            (program_id,),
        ).fetchall()
        return [(Role(role), person_id) for role, person_id in rows]

    def add_membership(
        self,
        pair: Pair,
        person_id: str,
        source: str,
        decided_by: str,
        cause_event_id: str,
        changed_at: datetime,
    ) -> None:
        """Insert one membership."""
        program_id, role = pair
        self.conn.execute(
            "INSERT INTO memberships (program_id, role, person_id, source,"
            " decided_by, cause_event_id, added_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                program_id,
                role.value,
                person_id,
                source,
                decided_by,
                cause_event_id,
                changed_at,
            ),
        )

    def count_removals(self, ruleset: RuleSet, today: date) -> Counter[str]:
        """Count, by program, the members whose deciding rule now removes them.

        Only the pairs of ruleset count; its segments run as SQL over the
        search copies (rules.sql), which must be filled in, in one pass over
        the active persons.
        """
        decisions = compile_decisions(ruleset, today)
        if not decisions.rules:
            return Counter()
        rows = self.conn.execute(
            (
                "SELECT r.program_id, count(*)"
                f" FROM ({decisions.sql}) AS d"
                " JOIN unnest(%(rule_actions)s::text[], %(rule_programs)s::text[],"
                " %(rule_roles)s::text[]) WITH ORDINALITY"
                " AS r (action, program_id, role, rule_no) ON r.rule_no = d.rule_no"
                " JOIN memberships AS m ON m.program_id = r.program_id"
                " AND m.role = r.role AND m.person_id = d.person_id"
                " WHERE r.action = %(remove)s GROUP BY r.program_id"
            ).encode(),
            {
                **decisions.params,
                "rule_actions": [rule.action.value for rule in decisions.rules],
                "rule_programs": [rule.program_id for rule in decisions.rules],
                "rule_roles": [rule.role.value for rule in decisions.rules],
                "remove": RuleAction.REMOVE.value,
            },
        ).fetchall()
        return Counter({program_id: int(count) for program_id, count in rows})

    def membership_counts(self) -> dict[Pair, int]:
        """Return the member count of every (program, role) with members."""
        rows = self.conn.execute(
            "SELECT program_id, role, count(*) FROM memberships"
            " GROUP BY program_id, role"
        ).fetchall()
        return {(program_id, Role(role)): int(n) for program_id, role, n in rows}

    # -- held events ----------------------------------------------------------

    def hold_event(
        self, event_id: str, person_id: str, due_on: date, event: dict[str, Any]
    ) -> None:
        """Keep a person event until its effective date."""
        self.conn.execute(
            "INSERT INTO held_events (event_id, person_id, due_on, event)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
            (event_id, person_id, due_on, Jsonb(event)),
        )

    def persons_with_due_events(self, today: date, limit: int) -> list[str]:
        """Return up to limit persons with held events due by today, oldest first.

        Nothing is locked: the caller locks the persons, then takes their events.
        """
        rows = self.conn.execute(
            "SELECT person_id FROM held_events WHERE due_on <= %s"
            " GROUP BY person_id ORDER BY min(due_on), person_id LIMIT %s",
            (today, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def take_due_events(
        self, today: date, person_ids: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Remove and return every held event of these persons due by today.

        An event that another transaction took meanwhile is left out.
        """
        # Locked in one order, so that two workers releasing persons who have no
        # record yet (a future-dated hire) cannot deadlock on their events.
        rows = self.conn.execute(
            "DELETE FROM held_events WHERE event_id IN ("
            " SELECT event_id FROM held_events"
            " WHERE person_id = ANY(%s) AND due_on <= %s"
            " ORDER BY person_id, event_id FOR UPDATE)"
            " RETURNING person_id, event",
            (list(person_ids), today),
        ).fetchall()
        taken: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for person_id, event in rows:
            taken[person_id].append(event)
        return dict(taken)

    # -- timers ---------------------------------------------------------------

    def set_timer(self, person_id: str, due_on: date | None) -> None:
        """Set or clear the day a person must be re-evaluated on."""
        if due_on is None:
            self.conn.execute(
                "DELETE FROM person_timers WHERE person_id = %s", (person_id,)
            )
            return
        self.conn.execute(
            "INSERT INTO person_timers (person_id, due_on) VALUES (%s, %s)"
            " ON CONFLICT (person_id) DO UPDATE SET due_on = excluded.due_on",
            (person_id, due_on),
        )

    def set_timers(self, timers: Sequence[tuple[str, date | None]]) -> None:
        """Set or clear the timers of many persons."""
        cleared = [person_id for person_id, due_on in timers if due_on is None]
        if cleared:
            self.conn.execute(
                "DELETE FROM person_timers WHERE person_id = ANY(%s)", (cleared,)
            )
        due = [(person_id, due_on) for person_id, due_on in timers if due_on]
        if due:
            self.conn.cursor().executemany(
                "INSERT INTO person_timers (person_id, due_on) VALUES (%s, %s)"
                " ON CONFLICT (person_id) DO UPDATE SET due_on = excluded.due_on",
                due,
            )

    def persons_with_due_timers(self, today: date, limit: int) -> list[str]:
        """Return up to limit persons whose timer is due by today, oldest first.

        Nothing is locked: the caller locks the persons, then lock_due_timers.
        """
        rows = self.conn.execute(
            "SELECT person_id FROM person_timers WHERE due_on <= %s"
            " ORDER BY due_on, person_id LIMIT %s",
            (today, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def lock_due_timers(
        self, today: date, person_ids: Sequence[str]
    ) -> list[tuple[str, date]]:
        """Lock and return the timers of these persons still due by today.

        In person_id order; a timer that another transaction moved on meanwhile
        is left out.
        """
        rows = self.conn.execute(
            "SELECT person_id, due_on FROM person_timers"
            " WHERE person_id = ANY(%s) AND due_on <= %s"
            " ORDER BY person_id FOR UPDATE",
            (list(person_ids), today),
        ).fetchall()
        return [(person_id, due_on) for person_id, due_on in rows]

    # -- configuration jobs ---------------------------------------------------

    def savepoint(self) -> Any:
        """Return a context manager for a savepoint inside this transaction."""
        return self.conn.transaction()

    def start_reevaluation(self, cause_event_id: str, pairs: Iterable[Pair]) -> None:
        """Record that every person must be re-evaluated for the pairs."""
        listed = sorted([program_id, role.value] for program_id, role in pairs)
        self.conn.execute(
            "INSERT INTO reevaluations (cause_event_id, pairs) VALUES (%s, %s)"
            " ON CONFLICT (cause_event_id) DO NOTHING",
            (cause_event_id, Jsonb(listed)),
        )

    def next_reevaluation(self) -> Reevaluation | None:
        """Return and lock the oldest unfinished re-evaluation, or None."""
        row = self.conn.execute(
            "SELECT cause_event_id, pairs, after_person_id FROM reevaluations"
            " ORDER BY created_at, cause_event_id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ).fetchone()
        if row is None:
            return None
        pairs = frozenset((program_id, Role(role)) for program_id, role in row[1])
        return Reevaluation(row[0], pairs, row[2])

    def advance_reevaluation(self, cause_event_id: str, after_person_id: str) -> None:
        """Record the last person a re-evaluation has done."""
        self.conn.execute(
            "UPDATE reevaluations SET after_person_id = %s WHERE cause_event_id = %s",
            (after_person_id, cause_event_id),
        )

    def finish_reevaluation(self, cause_event_id: str) -> None:
        """Forget a re-evaluation that has done every person."""
        self.conn.execute(
            "DELETE FROM reevaluations WHERE cause_event_id = %s", (cause_event_id,)
        )

    def load_persons_after(self, after_person_id: str, limit: int) -> list[PersonState]:
        """Return and lock the next persons in person_id order."""
        rows = self.conn.execute(
            "SELECT person_id, attributes, status, version_at, version_event_id,"
            " lifecycle_at, lifecycle_event_id"
            " FROM persons WHERE person_id > %s ORDER BY person_id LIMIT %s"
            " FOR UPDATE",
            (after_person_id, limit),
        ).fetchall()
        return [_person(row) for row in rows]

    def hold_config(
        self, event_id: str, event: dict[str, Any], report: dict[str, Any]
    ) -> None:
        """Keep a configuration change until an admin confirms it.

        The change is held at the current configuration version.
        """
        self.conn.execute(
            "INSERT INTO held_configs (event_id, event, report, config_version)"
            " SELECT %s, %s, %s, version FROM config_version"
            " ON CONFLICT (event_id) DO NOTHING",
            (event_id, Jsonb(event), Jsonb(report)),
        )

    def take_held_config(self, event_id: str) -> dict[str, Any] | None:
        """Remove and return a held configuration change, or None.

        Raises StaleHeldConfigError, removing nothing, when the configuration
        changed after the change was held.
        """
        row = self.conn.execute(
            "SELECT h.config_version, c.version FROM held_configs h, config_version c"
            " WHERE h.event_id = %s",
            (event_id,),
        ).fetchone()
        if row is None:
            return None
        held_at_version, version = row
        if held_at_version is not None and held_at_version != version:
            raise StaleHeldConfigError(
                f"held config event {event_id!r} was held at configuration version"
                f" {held_at_version}, and the configuration has changed since (now"
                f" version {version}); apply the change again, so that what it"
                " would remove is counted on the current configuration"
            )
        row = self.conn.execute(
            "DELETE FROM held_configs WHERE event_id = %s RETURNING event",
            (event_id,),
        ).fetchone()
        return None if row is None else dict(row[0])

    def stale_held_configs(self) -> set[str]:
        """Return the held changes that can no longer be confirmed.

        Those are the ones held before the configuration last changed.
        """
        rows = self.conn.execute(
            "SELECT h.event_id FROM held_configs h, config_version c"
            " WHERE h.config_version IS DISTINCT FROM c.version"
            " AND h.config_version IS NOT NULL"
        ).fetchall()
        return {row[0] for row in rows}

    def held_configs(self) -> list[tuple[str, dict[str, Any], datetime]]:
        """Return the held configuration changes with their reports, oldest first."""
        rows = self.conn.execute(
            "SELECT event_id, report, held_at FROM held_configs ORDER BY held_at"
        ).fetchall()
        return [(event_id, dict(report), held_at) for event_id, report, held_at in rows]

    # -- outbox and audit -----------------------------------------------------

    def enqueue(self, topic: str, key: str | None, payload: dict[str, Any]) -> None:
        """Add an event to the outbox; the relay publishes it after commit."""
        self.conn.execute(
            "INSERT INTO outbox (topic, key, payload) VALUES (%s, %s, %s)",
            (topic, key, Jsonb(payload)),
        )

    def fetch_outbox(self, limit: int) -> list[OutboxRow]:
        """Return the oldest unpublished events, in the order they were written."""
        rows = self.conn.execute(
            "SELECT id, topic, key, convert_to(payload::text, 'UTF8'),"
            " payload->>'type', payload->>'program_id', payload->>'role'"
            " FROM outbox ORDER BY id LIMIT %s",
            (limit,),
        ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def delete_outbox(self, ids: Sequence[int]) -> None:
        """Forget events that were published."""
        # One text parameter: psycopg would build an array parameter number
        # by number in Python.
        self.conn.execute(
            "DELETE FROM outbox WHERE id = ANY(string_to_array(%s, ',')::bigint[])",
            (",".join(map(str, ids)),),
        )

    def outbox_backlog(self) -> int:
        """Return how many events wait to be published."""
        row = self.conn.execute("SELECT count(*) FROM outbox").fetchone()
        return int(row[0]) if row else 0

    def audit(
        self,
        kind: str,
        subject: str,
        cause_event_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append to the audit log."""
        self.conn.execute(
            "INSERT INTO audit_log (kind, subject, cause_event_id, detail)"
            " VALUES (%s, %s, %s, %s)",
            (kind, subject, cause_event_id, Jsonb(detail or {})),
        )

    def count_audit(self, kind_prefix: str) -> int:
        """Return how many audit entries have a kind starting with the prefix."""
        row = self.conn.execute(
            "SELECT count(*) FROM audit_log WHERE kind LIKE %s",
            (kind_prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
        ).fetchone()
        return int(row[0]) if row else 0

    # -- sweeps ---------------------------------------------------------------

    def start_sweep(self, cause_event_id: str, started_at: datetime) -> int:
        """Record the start of a sweep; return its id."""
        row = self.conn.execute(
            "INSERT INTO sweeps (cause_event_id, started_at) VALUES (%s, %s)"
            " RETURNING id",
            (cause_event_id, started_at),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_sweep(
        self, sweep_id: int, finished_at: datetime, persons: int, changes: int
    ) -> None:
        """Record the end of a sweep."""
        self.conn.execute(
            "UPDATE sweeps SET finished_at = %s, persons = %s, changes = %s"
            " WHERE id = %s",
            (finished_at, persons, changes, sweep_id),
        )


def _person(row: Sequence[Any]) -> PersonState:
    return PersonState(
        person_id=row[0],
        attributes=row[1],
        status=PersonStatus(row[2]),
        version_at=row[3],
        version_event_id=row[4],
        lifecycle_at=row[5],
        lifecycle_event_id=row[6],
    )
