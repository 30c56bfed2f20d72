"""A batch of person events applied in memory, then written in a few statements.

The batch reads every person it touches once, applies the events in the order
given (so each person's events keep their Kafka order), and collects what the
per-record path would write: person records, membership changes, outbox rows in
the order decided, audit lines, held events, timers and processed ids. The
engine writes them all in the transaction that read the persons.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import psycopg

from infra import bulk
from infra.store import SourcePosition
from rules.evaluation import Decision, decide_departure, decide_person
from rules.flips import first_flip
from rules.person_state import PersonState, apply_event
from rules.ruleset import Pair, RuleSet
from rules.search import SearchDocument, search_document
from schemas.membership import DeadLetter, MembershipAction, MembershipEvent
from schemas.person import PersonEvent, PersonTerminated
from workers.errors import PredecessorFailedError

logger = logging.getLogger(__name__)


class PersonRecord(NamedTuple):
    """One consumed record of the person topic."""

    raw: bytes
    key: bytes | None
    source: SourcePosition


class BatchTurn:
    """Where one batch stands, for the batch taken after it to wait on.

    Two batches of one partition may run at once. Events of persons the first
    batch does not name run in a transaction of their own at once, beside
    the first batch; events of persons it names run only once it committed,
    and not at all if it failed (PredecessorFailedError): the caller then runs
    the whole second batch again after the first. So the events of one person
    always apply in their order, and a person the first batch is creating is
    never read before it exists. Nothing here ever waits on a later batch,
    which is what keeps the two from deadlocking.
    """

    def __init__(self) -> None:
        self._decoded = threading.Event()
        self._settled = threading.Event()
        self._committed = False
        self._persons: frozenset[str] = frozenset()

    def mark_decoded(self, persons: frozenset[str]) -> None:
        """The batch knows the persons its events name."""
        self._persons = persons
        self._decoded.set()

    def mark_settled(self, *, committed: bool) -> None:
        """All of the batch committed, or some of it failed and was rolled back."""
        self._committed = committed
        self._decoded.set()
        self._settled.set()

    def persons(self) -> frozenset[str]:
        """Wait until the batch has decoded its events; return the persons named.

        A batch over before it decoded anything names no one.
        """
        self._decoded.wait()
        return self._persons

    def wait_committed(self) -> None:
        """Wait until the batch is over; raise PredecessorFailedError if it failed."""
        self._settled.wait()
        if not self._committed:
            raise PredecessorFailedError("the batch before this one was rolled back")


def decide(
    ruleset: RuleSet,
    state: PersonState,
    memberships: set[Pair],
    today: date,
    pairs: Iterable[Pair] | None = None,
    document: SearchDocument | None = None,
) -> list[Decision]:
    """Return a person's membership changes: departures first, else the rules.

    ``document`` is the search document of the person's attributes, when the
    caller has it already.
    """
    reason = state.departure_reason
    if reason is not None:
        return decide_departure(state.person_id, memberships, reason)
    return decide_person(
        state.person_id,
        ruleset,
        state.attributes,
        memberships,
        today,
        None if pairs is None else set(pairs),
        document=document,
    )


def flip_day(
    ruleset: RuleSet,
    state: PersonState,
    today: date,
    document: SearchDocument | None = None,
) -> date | None:
    """Return the next day a person's segment outcomes can change, if any."""
    if not state.is_active or not ruleset.timed_conditions:
        return None
    if document is None:
        document = search_document(state.attributes)
    return first_flip(ruleset.timed_conditions, document, today)


def hold_until(event: PersonEvent, today: date) -> date | None:
    """Return the day a future-dated event must wait for, or None to apply it now.

    A termination waits for its termination date even without an effective date.
    """
    due_on = effective_date(event)
    if due_on is not None and due_on > today:
        return due_on
    return None


def effective_date(event: PersonEvent) -> date | None:
    """The HR date an event takes effect on, when it names one."""
    if isinstance(event, PersonTerminated):
        return max(event.effective_at or event.termination_date, event.termination_date)
    return event.effective_at


def as_released(events: Iterable[PersonEvent], zone: ZoneInfo) -> list[PersonEvent]:
    """Return one person's held events, released together, as they must apply.

    They apply in the order (effective date, occurred_at, event_id). For
    last-writer-wins each counts as written at the start of its effective day in
    the business time zone, or when it was written if that is later: a change
    written before it took effect must not lose, as stale, to an update written
    after it but effective before it. Each also counts as written at least one
    microsecond after the one before it, because changes effective on one day
    would otherwise all tie at its start and be decided by event_id, dropping all
    but one. So none of them is stale against another, and one is stale against
    the stored record only when that holds a change written at or after the
    instant the held one counts as written: an ordinary update written during
    the effective day wins over the held change, one written before it loses.

    An ordinary event effective on that day that arrives only after the release
    can still lose to it as stale, because a person's stored version keeps the
    instant the held change counts as written, not its own occurred_at.
    """
    released: list[PersonEvent] = []
    for event in sorted(events, key=_release_order):
        counts_from = _effective_from(event, zone)
        if released:
            counts_from = max(counts_from, released[-1].occurred_at + _MICROSECOND)
        if counts_from != event.occurred_at:
            event = event.model_copy(update={"occurred_at": counts_from})
        released.append(event)
    return released


_MICROSECOND = timedelta(microseconds=1)


def _release_order(event: PersonEvent) -> tuple[date, datetime, str]:
    return (effective_date(event) or date.min, event.occurred_at, event.event_id)


def _effective_from(event: PersonEvent, zone: ZoneInfo) -> datetime:
    day = effective_date(event)
    if day is None:
        return event.occurred_at
    return max(event.occurred_at, datetime.combine(day, time.min, tzinfo=zone))


@dataclass
class PersonBatch:
    """The effects of one batch of person events, gathered before they are written.

    Membership events are appended to the outbox in the order they are decided,
    so each person's membership events keep the order the per-record path gives.
    """

    ruleset: RuleSet
    today: date
    changed_at: datetime
    membership_topic: str
    dead_letter_topic: str
    states: dict[str, PersonState | None]
    memberships: dict[str, set[Pair]]
    _saved: dict[str, PersonState] = field(default_factory=dict)
    # The search document of each saved person's attributes.
    _documents: dict[str, SearchDocument] = field(default_factory=dict)
    _timers: dict[str, date | None] = field(default_factory=dict)
    # The last change of each membership: a row to write, or None to delete.
    _members: dict[tuple[str, str, str], bulk.MembershipRow | None] = field(
        default_factory=dict
    )
    _outbox: list[bulk.OutboxEntry] = field(default_factory=list)
    _audit: list[bulk.AuditEntry] = field(default_factory=list)
    _processed: list[bulk.ProcessedEntry] = field(default_factory=list)
    _held: list[bulk.HeldEntry] = field(default_factory=list)
    _events: MembershipEvents = field(init=False)

    def __post_init__(self) -> None:
        self._events = MembershipEvents(self.membership_topic, self.changed_at)

    def hold_or_apply(self, event: PersonEvent) -> tuple[str, list[Decision]]:
        """Hold a future-dated event or apply it; return the outcome and changes."""
        due_on = hold_until(event, self.today)
        if due_on is not None:
            payload = event.model_dump(mode="json")
            self._held.append(
                bulk.HeldEntry(event.event_id, event.person_id, due_on, payload)
            )
            self._audit.append(
                bulk.AuditEntry(
                    "person.held",
                    event.person_id,
                    event.event_id,
                    {"due_on": str(due_on)},
                )
            )
            return "held", []
        return self._apply(event)

    def _apply(self, event: PersonEvent) -> tuple[str, list[Decision]]:
        person_id = event.person_id
        transition = apply_event(self.states.get(person_id), event)
        if not transition.applied:
            self._audit.append(
                bulk.AuditEntry("person.stale", person_id, event.event_id, {})
            )
            return "stale", []

        state = self.states[person_id] = self._saved[person_id] = transition.state
        document = self._documents[person_id] = search_document(state.attributes)
        held = self.memberships.setdefault(person_id, set())
        decisions = decide(self.ruleset, state, held, self.today, document=document)
        for decision in decisions:
            self._record(decision, event.event_id)
        self._timers[person_id] = flip_day(self.ruleset, state, self.today, document)
        return "applied", decisions

    def _record(self, decision: Decision, cause_event_id: str) -> None:
        pair = (decision.program_id, decision.role)
        key = (decision.program_id, decision.role.value, decision.person_id)
        held = self.memberships.setdefault(decision.person_id, set())
        if decision.action is MembershipAction.ADDED:
            held.add(pair)
            self._members[key] = bulk.MembershipRow(
                *key, "rule", decision.decided_by, cause_event_id, self.changed_at
            )
        else:
            held.discard(pair)
            self._members[key] = None

        outbox, audit = self._events.entries(decision, cause_event_id)
        self._outbox.append(outbox)
        self._audit.append(audit)

    def dead_letter(self, letter: DeadLetter, key: str | None) -> None:
        """Send a record to the dead-letter topic with the rest of the batch."""
        self._outbox.append(
            bulk.OutboxEntry(
                self.dead_letter_topic, key, letter.model_dump(mode="json")
            )
        )
        subject = (
            f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}"
        )
        self._audit.append(
            bulk.AuditEntry(
                "dead_letter", subject, letter.event_id, {"error": letter.error}
            )
        )

    def mark_processed(
        self, event_id: str, source: SourcePosition, outcome: str
    ) -> None:
        """Record an input's id with how it came out."""
        self._processed.append(
            bulk.ProcessedEntry(
                event_id, source.topic, source.partition, source.offset, outcome
            )
        )

    def write(self, conn: psycopg.Connection[Any]) -> None:
        """Write everything the batch decided, in the caller's transaction."""
        saved = list(self._saved.values())
        documents = [self._documents[state.person_id] for state in saved]
        bulk.save_persons(conn, saved, documents)
        deleted = [key for key, row in self._members.items() if row is None]
        bulk.delete_memberships(conn, deleted)
        bulk.upsert_memberships(conn, _present(self._members.values()))
        bulk.set_timers(conn, list(self._timers.items()))
        bulk.hold_events(conn, self._held)
        if self._outbox:
            bulk.append_outbox(conn, self._outbox)
        if self._audit:
            bulk.append_audit(conn, self._audit)
        bulk.mark_processed(conn, self._processed)


def _present(
    rows: Iterable[bulk.MembershipRow | None],
) -> list[bulk.MembershipRow]:
    return [row for row in rows if row is not None]


class MembershipEvents:
    """The outbox and audit entries of decided membership changes.

    Payloads are MembershipEvent.decided's JSON, built directly: the decisions
    name persons, programs and rules that passed validation when they were
    stored, and a batch can decide thousands of changes.
    """

    def __init__(self, topic: str, changed_at: datetime) -> None:
        self.topic = topic
        self.shared = MembershipEvent.shared_json(changed_at)

    def entries(
        self, decision: Decision, cause_event_id: str
    ) -> tuple[bulk.OutboxEntry, bulk.AuditEntry]:
        """Return the outbox entry and the audit line of one decision."""
        payload = MembershipEvent.decided_json(
            self.shared,
            decision.action,
            decision.program_id,
            decision.role,
            decision.person_id,
            decision.decided_by,
            cause_event_id,
        )
        detail = {
            "program_id": decision.program_id,
            "role": decision.role.value,
            "decided_by": decision.decided_by,
            "event_id": payload["event_id"],
        }
        outbox = bulk.OutboxEntry(self.topic, decision.person_id, payload)
        audit = bulk.AuditEntry(
            decision.action.value, decision.person_id, cause_event_id, detail
        )
        return outbox, audit
