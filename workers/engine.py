"""Decode, evaluate, persist: the work done for each consumed record."""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from pydantic import ValidationError

from infra import bulk
from infra.errors import ConfigRejectedError
from infra.logging import log_context
from infra.settings import KafkaSettings
from infra.store import SWEEP_LOCK_KEY, SourcePosition, Store, StoreTransaction
from infra.sweep import fill_search, sweep_memberships
from rules.errors import RulesError
from rules.evaluation import Decision, decide_departure
from rules.person_state import PersonState, apply_event
from rules.ruleset import Pair, RuleSet
from schemas.common import (
    ACCEPTED_BEFORE,
    STORABLE_TEXT,
    derive_event_id,
    holds_no_unstorable_value,
    new_event_id,
)
from schemas.config import (
    ConfigApplied,
    ConfigConfirmed,
    ConfigEvent,
    ManualMembershipAdded,
    ManualMembershipRemoved,
    ProgramDeleted,
    ProgramUpserted,
    RuleDeleted,
    RulePaused,
    RulePublished,
    RulesReordered,
    RuleUpserted,
    SegmentDeleted,
    SegmentUpserted,
    config_event_adapter,
)
from schemas.membership import DeadLetter, DecidedBy, MembershipAction
from schemas.person import PersonEvent, person_event_adapter
from schemas.segments import Rule, RuleAction, RuleStatus
from workers.batch import (
    BatchTurn,
    MembershipEvents,
    PersonBatch,
    PersonRecord,
    as_released,
    decide,
    flip_day,
    hold_until,
)
from workers.clock import BusinessClock
from workers.errors import InvalidRecordError

logger = logging.getLogger(__name__)

# How many persons a re-evaluation or a sweep loads at a time.
PERSON_CHUNK = 1000

# Held events were validated when they arrived: checks added since then must not
# refuse them now.
_STORED = {ACCEPTED_BEFORE: True}


@dataclass(frozen=True)
class Outcome:
    """How one consumed record came out."""

    kind: str
    changes: int = 0
    # The person's own membership changes; config events report only a count.
    decisions: tuple[Decision, ...] = ()
    # The record's event type, when the batch path decoded it already.
    event_type: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """What one sweep looked at and changed."""

    sweep_id: int
    persons: int
    changes: int


class Engine:
    """Applies person and config events to the store, effectively once.

    Each record is handled in one transaction that writes the new state, the
    membership changes, their outbox rows and the record's id together, so a
    redelivered record changes nothing.
    """

    def __init__(
        self,
        store: Store,
        kafka: KafkaSettings,
        clock: BusinessClock,
        max_event_bytes: int = 1_000_000,
        blast_radius_share: float = 1.0,
        blast_radius_min_removals: int = 10,
        sweep_connections: int = 1,
        sweep_work_mem_mb: int | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.blast_radius_share = blast_radius_share
        self.blast_radius_min_removals = blast_radius_min_removals
        self.sweep_connections = sweep_connections
        self.sweep_work_mem_mb = sweep_work_mem_mb
        self._ruleset: tuple[int, RuleSet] | None = None
        self._recorder: list[Decision] | None = None

    # -- person events ----------------------------------------------------------

    def handle_person_record(
        self, raw: bytes, key: bytes | None, source: SourcePosition
    ) -> Outcome:
        """Process one record of the person topic."""
        try:
            event = self._decode_person(raw, key, source)
        except InvalidRecordError as error:
            return self.dead_letter(raw, key, source, str(error))

        with self.store.transaction() as tx:
            tx.lock_config(exclusive=False)
            if tx.is_processed(event.event_id):
                return Outcome("duplicate")
            outcome = self._hold_or_apply(tx, event)
            tx.mark_processed(event.event_id, source, outcome.kind)
        logger.debug(
            "processed person event %s person_id=%s outcome=%s",
            event.event_id,
            event.person_id,
            outcome.kind,
        )
        return outcome

    def handle_person_batch(
        self,
        records: Sequence[PersonRecord],
        *,
        after: Sequence[BatchTurn] = (),
        turn: BatchTurn | None = None,
    ) -> list[Outcome]:
        """Process records of the person topic in order, in one or two transactions.

        The effect is the per-record path's, record by record: redelivered ids
        change nothing, invalid records are dead-lettered (in the same
        transaction), each person's events apply in the order given and their
        membership events reach the outbox in the order decided. Returns one
        outcome a record. Any error rolls back the records not committed yet,
        so the caller can retry the batch or fall back to handle_person_record.

        ``after`` holds the turns of batches taken before this one and maybe
        still running: the events of persons they name run only after they
        all committed, in a second transaction (see BatchTurn); when one
        failed, they raise PredecessorFailedError. ``turn`` is told how this
        batch stands.
        """
        try:
            outcomes = self._handle_person_batch(records, after, turn)
        except BaseException:
            if turn is not None:
                turn.mark_settled(committed=False)
            raise
        if turn is not None:
            turn.mark_settled(committed=True)

        for outcome, record in zip(outcomes, records, strict=True):
            if outcome.kind == "dead_letter":
                _log_dead_letter(record.source, record.raw, outcome)
        logger.debug("processed person batch records=%d", len(records))
        return outcomes

    def _handle_person_batch(
        self,
        records: Sequence[PersonRecord],
        after: Sequence[BatchTurn],
        turn: BatchTurn | None,
    ) -> list[Outcome]:
        decoded: list[PersonEvent | DeadLetter] = []
        for raw, key, source in records:
            try:
                decoded.append(self._decode_person(raw, key, source))
            except InvalidRecordError as error:
                decoded.append(self._letter(raw, key, source, str(error)))
        if turn is not None:
            turn.mark_decoded(frozenset(_person_ids(decoded)))

        # Persons the batches before name wait for their commits; others run now.
        waiting = frozenset[str]().union(*(earlier.persons() for earlier in after))
        now = [i for i, item in enumerate(decoded) if _person_of(item) not in waiting]
        later = [i for i, item in enumerate(decoded) if _person_of(item) in waiting]
        outcomes = dict(
            zip(now, self._apply_records(decoded, records, now), strict=True)
        )
        if later:
            for earlier in after:
                earlier.wait_committed()
            applied = self._apply_records(decoded, records, later)
            outcomes.update(zip(later, applied, strict=True))
        return [outcomes[index] for index in range(len(records))]

    def _apply_records(
        self,
        decoded: Sequence[PersonEvent | DeadLetter],
        records: Sequence[PersonRecord],
        indexes: Sequence[int],
    ) -> list[Outcome]:
        """Apply some records of a batch, in their order, in one transaction."""
        if not indexes:
            return []
        items = [decoded[index] for index in indexes]
        person_ids = set(_person_ids(items))
        with self.store.transaction() as tx:
            tx.lock_config(exclusive=False)
            states = bulk.lock_persons(tx.conn, person_ids)
            seen = bulk.processed_ids(tx.conn, {item.event_id for item in items})
            batch = PersonBatch(
                self._current_ruleset(tx),
                self.clock.today(),
                self.clock.now(),
                self.kafka.membership_topic,
                self.kafka.dead_letter_topic,
                states={person_id: states.get(person_id) for person_id in person_ids},
                memberships=dict(tx.memberships_of(person_ids)),
            )
            outcomes = [
                self._batch_one(batch, seen, decoded[index], records[index])
                for index in indexes
            ]
            batch.write(tx.conn)
        return outcomes

    def _batch_one(
        self,
        batch: PersonBatch,
        seen: set[str],
        item: PersonEvent | DeadLetter,
        record: PersonRecord,
    ) -> Outcome:
        """Apply one decoded record of a batch; seen gains its id."""
        event_type = None if isinstance(item, DeadLetter) else item.type
        if item.event_id in seen:
            return Outcome("duplicate", event_type=event_type)
        seen.add(item.event_id)
        if isinstance(item, DeadLetter):
            batch.dead_letter(item, _text(record.key))
            batch.mark_processed(item.event_id, record.source, "dead_letter")
            return _DeadLettered("dead_letter", error=item.error)
        kind, decisions = batch.hold_or_apply(item)
        batch.mark_processed(item.event_id, record.source, kind)
        return Outcome(kind, len(decisions), tuple(decisions), event_type)

    def release_due_events(self, limit: int = 500) -> int:
        """Apply every held person event whose effective date has come.

        Works through the due events limit persons a transaction until none is
        due, so events that fell due while no worker ran are all applied by the
        first call after start. A person's due events are taken and applied
        together, in the order as_released gives. Returns the events released.
        """
        persons, events = _until_drained(self._release_due_persons, limit)
        if events:
            logger.info("released held events persons=%d events=%d", persons, events)
        return events

    def _release_due_persons(self, limit: int) -> tuple[int, int]:
        """Release the due events of up to limit persons; return both counts."""
        today = self.clock.today()
        with self.store.transaction() as tx:
            tx.lock_config(exclusive=False)
            person_ids = tx.persons_with_due_events(today, limit)
            # Persons before their events, in person_id order, as every path locks.
            bulk.lock_persons(tx.conn, person_ids)
            due = tx.take_due_events(today, person_ids)
            for person_id in sorted(due):
                held = (
                    person_event_adapter.validate_python(payload, context=_STORED)
                    for payload in due[person_id]
                )
                for event in as_released(held, self.clock.zone):
                    self._apply_person_event(tx, event)
        return len(person_ids), sum(map(len, due.values()))

    def _hold_or_apply(self, tx: StoreTransaction, event: PersonEvent) -> Outcome:
        due_on = hold_until(event, self.clock.today())
        if due_on is not None:
            payload = event.model_dump(mode="json")
            tx.hold_event(event.event_id, event.person_id, due_on, payload)
            tx.audit(
                "person.held", event.person_id, event.event_id, {"due_on": str(due_on)}
            )
            return Outcome("held")
        return self._apply_person_event(tx, event)

    def _apply_person_event(self, tx: StoreTransaction, event: PersonEvent) -> Outcome:
        current = tx.load_person(event.person_id)
        transition = apply_event(current, event)
        if not transition.applied:
            tx.audit("person.stale", event.person_id, event.event_id)
            return Outcome("stale")

        tx.save_person(transition.state)
        memberships = tx.memberships_of([event.person_id]).get(event.person_id, set())
        decisions = self._decide(tx, transition.state, memberships)
        changes = self._apply_decisions(tx, decisions, "rule", event.event_id)
        tx.set_timer(event.person_id, self._next_flip(tx, transition.state))
        return Outcome("applied", changes, tuple(decisions))

    def apply_due_flips(self, limit: int = 500) -> int:
        """Re-evaluate the persons whose time-relative outcomes may have changed.

        Timers are durable, and a call works through them limit persons a
        transaction until none is due, so flips that fell due while no worker
        ran are all applied by the first call after start. Returns the changes
        made.
        """
        persons, changes = _until_drained(self._flip_due_persons, limit)
        if persons:
            logger.info("applied due flips persons=%d changes=%d", persons, changes)
        return changes

    def _flip_due_persons(self, limit: int) -> tuple[int, int]:
        """Re-evaluate up to limit persons with due timers; return persons, changes."""
        today = self.clock.today()
        with self.store.transaction() as tx:
            tx.lock_config(exclusive=False)
            person_ids = tx.persons_with_due_timers(today, limit)
            # Persons first, in person_id order, then their timers: person batches
            # and re-evaluations lock in that order, and a transaction taking the
            # same rows in the other order could deadlock with them.
            states = bulk.lock_persons(tx.conn, person_ids)
            due = tx.lock_due_timers(today, person_ids)

            held = tx.memberships_of(person_id for person_id, _ in due)
            changes = 0
            timers: list[tuple[str, date | None]] = []
            for person_id, due_on in due:
                state = states.get(person_id)
                if state is None:
                    timers.append((person_id, None))
                    continue
                cause = derive_event_id("time", person_id, due_on, today)
                decisions = self._decide(tx, state, held.get(person_id, set()))
                changes += self._apply_decisions(tx, decisions, "rule", cause)
                timers.append((person_id, self._next_flip(tx, state)))
            bulk.set_timers(tx.conn, timers)
        return len(person_ids), changes

    def _next_flip(self, tx: StoreTransaction, state: PersonState) -> date | None:
        if not state.is_active:
            return None
        return flip_day(self._current_ruleset(tx), state, self.clock.today())

    def _decide(
        self,
        tx: StoreTransaction,
        state: PersonState,
        memberships: set[Pair],
        pairs: Iterable[Pair] | None = None,
    ) -> list[Decision]:
        if state.departure_reason is not None:
            return decide_departure(
                state.person_id, memberships, state.departure_reason
            )
        return decide(
            self._current_ruleset(tx), state, memberships, self.clock.today(), pairs
        )

    def _current_ruleset(self, tx: StoreTransaction) -> RuleSet:
        version = tx.config_version()
        if self._ruleset is None or self._ruleset[0] != version:
            self._ruleset = (version, tx.load_ruleset())
        return self._ruleset[1]

    # -- config events ----------------------------------------------------------

    def handle_config_record(
        self, raw: bytes, key: bytes | None, source: SourcePosition
    ) -> Outcome:
        """Process one record of the config topic."""
        try:
            event = self._decode(raw, source, config_event_adapter.validate_json)
        except InvalidRecordError as error:
            return self.dead_letter(raw, key, source, str(error))

        try:
            with self.store.transaction() as tx:
                tx.lock_config(exclusive=True)
                if tx.is_processed(event.event_id):
                    return Outcome("duplicate")
                if isinstance(event, ConfigConfirmed):
                    tx.mark_processed(event.event_id, source, "applied")
                    event = self._take_held(tx, event)
                elif self._hold_if_too_destructive(tx, event):
                    tx.mark_processed(event.event_id, source, "held")
                    return Outcome("held")
                else:
                    tx.mark_processed(event.event_id, source, "applied")
                changes, touched = self._apply_config_event(tx, event)
                if touched:
                    tx.start_reevaluation(event.event_id, touched)
        except (ConfigRejectedError, RulesError) as error:
            return self.dead_letter(raw, key, source, str(error))

        changes += self.run_reevaluations()
        logger.info(
            "applied config event %s type=%s changes=%d",
            event.event_id,
            event.type,
            changes,
        )
        return Outcome("applied", changes)

    def run_reevaluations(self) -> int:
        """Carry on the re-evaluations that config changes started.

        Each chunk of persons is its own transaction, so a change that touches
        millions of people never holds one transaction or person locks for long,
        and a crash resumes from the last chunk done. Returns the changes made.

        The config agent calls this in a worker thread: the consumer keeps
        polling and heartbeating meanwhile, but config events behind the change
        wait until its last chunk is done.
        """
        changes = 0
        while True:
            with self.store.transaction() as tx:
                tx.lock_config(exclusive=False)
                job = tx.next_reevaluation()
                if job is None:
                    return changes
                persons = tx.load_persons_after(job.after_person_id, PERSON_CHUNK)
                pairs = set(job.pairs)
                changes += self._evaluate_chunk(tx, persons, job.cause_event_id, pairs)
                if len(persons) < PERSON_CHUNK:
                    tx.finish_reevaluation(job.cause_event_id)
                else:
                    tx.advance_reevaluation(job.cause_event_id, persons[-1].person_id)

    def _hold_if_too_destructive(
        self, tx: StoreTransaction, event: ConfigEvent
    ) -> bool:
        """Hold a change that would remove too large a share of a program.

        Manual changes and program deletions say what they remove; they are
        never held.
        """
        if self.blast_radius_share >= 1 or isinstance(
            event, ManualMembershipAdded | ManualMembershipRemoved | ProgramDeleted
        ):
            return False
        removals = self._removals_by_program(tx, event)
        members: Counter[str] = Counter()
        for (program_id, _), count in tx.membership_counts().items():
            members[program_id] += count
        report = {
            program_id: {"removals": removed, "members": members[program_id]}
            for program_id, removed in sorted(removals.items())
            if removed >= self.blast_radius_min_removals
            and removed > self.blast_radius_share * members[program_id]
        }
        if not report:
            return False
        tx.hold_config(event.event_id, event.model_dump(mode="json"), report)
        tx.audit("config.held", _config_subject(event), event.event_id, report)
        logger.warning(
            "held config event %s for confirmation: it would remove %s",
            event.event_id,
            ", ".join(
                f"{r['removals']} of {r['members']} members of {p}"
                for p, r in report.items()
            ),
        )
        return True

    def _removals_by_program(
        self, tx: StoreTransaction, event: ConfigEvent
    ) -> Counter[str]:
        """Count, per program, the members event would remove now, changing nothing.

        The change is applied in a savepoint rolled back after, and the members
        are counted inside PostgreSQL over the compiled rule set: the exclusive
        configuration lock, which holds up every person event, is held for one
        pass over the persons, not for a walk over every person in Python.
        """
        # Search copies left to compute are computed for good, not rolled back.
        fill_search(tx.conn)
        today = self.clock.today()
        removals: Counter[str] = Counter()
        try:
            with tx.savepoint():
                _, touched = self._apply_config_event(tx, event)
                ruleset = tx.load_ruleset()
                # Only pairs with a remove rule can lose members.
                removing = {
                    pair: ruleset.by_pair[pair]
                    for pair in touched
                    if any(
                        rule.action is RuleAction.REMOVE
                        for rule in ruleset.by_pair.get(pair, ())
                    )
                }
                if removing:
                    pairs = replace(ruleset, by_pair=removing)
                    removals = tx.count_removals(pairs, today)
                raise _RollBack
        except _RollBack:
            pass
        finally:
            # The cache may hold the rule set of the rolled-back version.
            self._ruleset = None
        return removals

    def _take_held(self, tx: StoreTransaction, event: ConfigConfirmed) -> ConfigEvent:
        payload = tx.take_held_config(event.held_event_id)
        if payload is None:
            raise ConfigRejectedError(
                f"no held config event {event.held_event_id!r} to confirm"
            )
        tx.audit("config.confirmed", event.held_event_id, event.event_id)
        return config_event_adapter.validate_python(payload, context=_STORED)

    def preview_config(self, event: ConfigEvent) -> list[Decision]:
        """Return the membership changes event would make now, changing nothing.

        The event goes through the very code that applies it, in a transaction
        that is then rolled back, so the preview cannot drift from the real
        thing. Raises ConfigRejectedError or RulesError as applying would.
        """
        with self.store.transaction() as tx:
            tx.lock_config(exclusive=True)
            return self._dry_run(tx, event)

    def _dry_run(self, tx: StoreTransaction, event: ConfigEvent) -> list[Decision]:
        """Apply event and re-evaluate everyone in a savepoint rolled back after.

        This walks every person in Python, so on millions of persons a preview
        costs as much as a Python sweep.
        """
        recorded: list[Decision] = []
        self._recorder = recorded
        try:
            with tx.savepoint():
                _, touched = self._apply_config_event(tx, event)
                self.reevaluate(tx, touched, event.event_id)
                raise _RollBack
        except _RollBack:
            pass
        finally:
            self._recorder = None
            # The cache may hold the rule set of the rolled-back version.
            self._ruleset = None
        return recorded

    def _apply_config_event(
        self, tx: StoreTransaction, event: ConfigEvent
    ) -> tuple[int, set[Pair]]:
        """Store the change; return its direct changes and the pairs it touches."""
        if isinstance(event, ManualMembershipAdded | ManualMembershipRemoved):
            return self._apply_manual(tx, event), set()
        if isinstance(event, ProgramDeleted):
            return self._delete_program(tx, event), set()

        touched = self._change_config(tx, event)
        tx.bump_config_version()
        tx.audit(event.type, _config_subject(event), event.event_id)
        return 0, touched

    def _change_config(self, tx: StoreTransaction, event: ConfigEvent) -> set[Pair]:
        """Store the change; return the (program, role) pairs it touches."""
        if isinstance(event, ProgramUpserted):
            tx.upsert_program(event.program)
            return set()
        if isinstance(event, SegmentUpserted):
            tx.upsert_segment(event.segment)
            users = tx.segment_users(event.segment.segment_id)
            return set().union(*map(_published_pair, users))
        if isinstance(event, SegmentDeleted):
            tx.delete_segment(event.segment_id)
            return set()
        if isinstance(event, RuleUpserted):
            previous = tx.get_rule(event.rule.rule_id)
            tx.upsert_rule(event.rule)
            return _published_pair(previous) | _published_pair(event.rule)
        if isinstance(event, RuleDeleted):
            return _published_pair(tx.delete_rule(event.rule_id))
        if isinstance(event, RulePublished | RulePaused):
            if isinstance(event, RulePublished):
                status = RuleStatus.PUBLISHED
            else:
                status = RuleStatus.PAUSED
            rule = tx.set_rule_status(event.rule_id, status)
            return {(rule.program_id, rule.role)}
        if isinstance(event, ConfigApplied):
            return self._apply_batch(tx, event)
        if isinstance(event, RulesReordered):
            previous_order = tx.reorder_rules(event.rule_ids)
            positions = {rule.rule_id: rule.position for rule in tx.load_rules()}
            moved = [r for r in previous_order if positions[r.rule_id] != r.position]
            return set().union(*map(_published_pair, moved))
        raise ConfigRejectedError(f"config event {event.type} cannot be applied here")

    def _apply_batch(self, tx: StoreTransaction, event: ConfigApplied) -> set[Pair]:
        for program in event.programs:
            tx.upsert_program(program)
        touched: set[Pair] = set()
        for segment in event.segments:
            tx.upsert_segment(segment)
            for user in tx.segment_users(segment.segment_id):
                touched |= _published_pair(user)

        # The batch may swap positions among its own rules: park them first so
        # that no half-applied order trips the one-rule-per-position check.
        tx.park_rules([rule.rule_id for rule in event.rules])
        for rule in event.rules:
            touched |= _published_pair(tx.get_rule(rule.rule_id))
        for rule in event.rules:
            tx.upsert_rule(rule)
            touched |= _published_pair(rule)
        return touched

    def _apply_manual(
        self,
        tx: StoreTransaction,
        event: ManualMembershipAdded | ManualMembershipRemoved,
    ) -> int:
        if not tx.program_exists(event.program_id):
            raise ConfigRejectedError(
                f"manual change names unknown program {event.program_id!r}"
            )
        adding = isinstance(event, ManualMembershipAdded)
        person = tx.load_person(event.person_id)
        if adding and (person is None or not person.is_active):
            state = "unknown" if person is None else person.status.value
            raise ConfigRejectedError(
                f"cannot add person {event.person_id!r} to {event.program_id!r}:"
                f" the person is {state}; only active persons can be members"
            )
        pair = (event.program_id, event.role)
        held = tx.memberships_of([event.person_id]).get(event.person_id, set())
        if (pair in held) == adding:
            return 0
        action = MembershipAction.ADDED if adding else MembershipAction.REMOVED
        decision = Decision(
            event.program_id, event.role, event.person_id, action, DecidedBy.MANUAL
        )
        changes = self._apply_decisions(tx, [decision], "manual", event.event_id)
        if person is None:
            return changes

        # The published rules then run for the person, as any event would make
        # them: a remove rule takes a manual member out, an add rule puts a
        # manually removed one back. A sweep right after changes nothing.
        held = held | {pair} if adding else held - {pair}
        decisions = self._decide(tx, person, held, {pair})
        return changes + self._apply_decisions(tx, decisions, "rule", event.event_id)

    def _delete_program(self, tx: StoreTransaction, event: ProgramDeleted) -> int:
        members = tx.member_ids_of_program(event.program_id)
        decisions = [
            Decision(
                event.program_id,
                role,
                person_id,
                MembershipAction.REMOVED,
                DecidedBy.PROGRAM_DELETED,
            )
            for role, person_id in members
        ]
        changes = self._apply_decisions(tx, decisions, "rule", event.event_id)
        tx.delete_program(event.program_id)
        tx.bump_config_version()
        tx.audit(event.type, event.program_id, event.event_id)
        return changes

    def reevaluate(
        self, tx: StoreTransaction, pairs: set[Pair], cause_event_id: str
    ) -> int:
        """Re-evaluate every person for the pairs; return the changes made."""
        if not pairs:
            return 0
        changes = 0
        for chunk in tx.iter_persons(PERSON_CHUNK):
            changes += self._evaluate_chunk(tx, chunk, cause_event_id, pairs)
        return changes

    def _evaluate_chunk(
        self,
        tx: StoreTransaction,
        persons: Sequence[PersonState],
        cause_event_id: str,
        pairs: set[Pair] | None,
    ) -> int:
        memberships = tx.memberships_of(p.person_id for p in persons)
        decisions: list[Decision] = []
        for person in persons:
            held = memberships.get(person.person_id, set())
            decisions.extend(self._decide(tx, person, held, pairs))
        # A config change can add or remove time-relative conditions for anyone.
        tx.set_timers([(p.person_id, self._next_flip(tx, p)) for p in persons])
        return self._apply_decisions(tx, decisions, "rule", cause_event_id)

    # -- sweep ------------------------------------------------------------------

    def sweep(self) -> SweepResult | None:
        """Re-run every rule over everybody; None when another sweep is running."""
        cause_event_id = new_event_id()
        # Search copies still missing are computed and committed first: the
        # sweep's other connections see only what was committed.
        with self.store.transaction() as tx:
            fill_search(tx.conn)
        with self.store.transaction() as tx:
            if not tx.try_lock(SWEEP_LOCK_KEY):
                logger.info("sweep skipped: another sweep is running")
                return None
            tx.lock_config(exclusive=True)
            sweep_id = tx.start_sweep(cause_event_id, self.clock.now())
            counts = sweep_memberships(
                tx.conn,
                self._current_ruleset(tx),
                today=self.clock.today(),
                cause_event_id=cause_event_id,
                changed_at=self.clock.now(),
                membership_topic=self.kafka.membership_topic,
                connect=self.store.connect,
                connections=self.sweep_connections,
                work_mem_mb=self.sweep_work_mem_mb,
            )
            persons, changes = counts.persons, counts.changes
            tx.finish_sweep(sweep_id, self.clock.now(), persons, changes)
        logger.info(
            "sweep finished sweep_id=%d persons=%d changes=%d",
            sweep_id,
            persons,
            changes,
        )
        return SweepResult(sweep_id, persons, changes)

    # -- effects ----------------------------------------------------------------

    def _apply_decisions(
        self,
        tx: StoreTransaction,
        decisions: Sequence[Decision],
        source: str,
        cause_event_id: str,
    ) -> int:
        if self._recorder is not None:
            self._recorder.extend(decisions)
        if not decisions:
            return 0
        changed_at = self.clock.now()
        events = MembershipEvents(self.kafka.membership_topic, changed_at)
        added: list[bulk.MembershipRow] = []
        removed: list[tuple[str, str, str]] = []
        outbox: list[bulk.OutboxEntry] = []
        audit: list[bulk.AuditEntry] = []
        for decision in decisions:
            key = (decision.program_id, decision.role.value, decision.person_id)
            if decision.action is MembershipAction.ADDED:
                added.append(
                    bulk.MembershipRow(
                        *key, source, decision.decided_by, cause_event_id, changed_at
                    )
                )
            else:
                removed.append(key)
            entry, line = events.entries(decision, cause_event_id)
            outbox.append(entry)
            audit.append(line)

        # Four round trips whatever the number of decisions: a config change
        # can decide for a whole chunk of persons at once.
        bulk.delete_memberships(tx.conn, removed)
        bulk.upsert_memberships(tx.conn, added)
        bulk.append_outbox(tx.conn, outbox)
        bulk.append_audit(tx.conn, audit)
        return len(decisions)

    # -- decoding and dead letters ----------------------------------------------

    def _decode_person(
        self, raw: bytes, key: bytes | None, source: SourcePosition
    ) -> PersonEvent:
        """Validate a person record; its key must be its person_id.

        Kafka keeps one person's events in order only within one partition, so
        an event keyed as another person could overtake or trail its own.
        """
        event: PersonEvent = self._decode(
            raw, source, person_event_adapter.validate_json
        )
        if key is not None and key != event.person_id.encode():
            raise InvalidRecordError(
                f"record key {_text(key)!r} does not match person_id"
                f" {event.person_id!r}; key person events by person_id"
            )
        return event

    def _decode(self, raw: bytes, source: SourcePosition, validate: Any) -> Any:
        if len(raw) > self.max_event_bytes:
            raise InvalidRecordError(
                f"record of {len(raw)} bytes exceeds the limit of"
                f" {self.max_event_bytes} bytes"
            )
        context = {STORABLE_TEXT: True} if holds_no_unstorable_value(raw) else None
        try:
            return validate(raw, context=context)
        except ValidationError as error:
            raise InvalidRecordError(_describe(error)) from None

    def dead_letter(
        self, raw: bytes, key: bytes | None, source: SourcePosition, error: str
    ) -> Outcome:
        """Send a record verbatim to the dead-letter topic, with the reason."""
        letter = self._letter(raw, key, source, error)
        letter_id = letter.event_id
        with self.store.transaction() as tx:
            if tx.is_processed(letter_id):
                return Outcome("duplicate")
            tx.enqueue(
                self.kafka.dead_letter_topic, _text(key), letter.model_dump(mode="json")
            )
            tx.audit(
                "dead_letter",
                f"{source.topic}/{source.partition}/{source.offset}",
                letter_id,
                {"error": error},
            )
            tx.mark_processed(letter_id, source, "dead_letter")
        _log_dead_letter(source, raw, _DeadLettered("dead_letter", error=error))
        return Outcome("dead_letter")

    def _letter(
        self, raw: bytes, key: bytes | None, source: SourcePosition, error: str
    ) -> DeadLetter:
        """Return the dead letter of a record; its id derives from the position."""
        return DeadLetter.of_record(
            raw,
            event_id=dead_letter_id(source),
            occurred_at=self.clock.now(),
            error=error,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            key=_text(key),
        )


@dataclass(frozen=True)
class _DeadLettered(Outcome):
    """A dead-lettered record's outcome, with the reason for the log."""

    error: str = ""


def _log_dead_letter(source: SourcePosition, raw: bytes, outcome: Outcome) -> None:
    error = outcome.error if isinstance(outcome, _DeadLettered) else ""
    # Batches log after their commit, outside the agent's per-record context.
    claimed = claimed_event_id(claimed_fields(raw))
    with log_context(
        event_id=claimed,
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
    ):
        logger.warning(
            "dead-lettered record topic=%s partition=%d offset=%d bytes=%d: %s",
            source.topic,
            source.partition,
            source.offset,
            len(raw),
            error,
        )


def _person_of(item: PersonEvent | DeadLetter) -> str | None:
    return None if isinstance(item, DeadLetter) else item.person_id


def _person_ids(items: Iterable[PersonEvent | DeadLetter]) -> Iterator[str]:
    return (item.person_id for item in items if not isinstance(item, DeadLetter))


def dead_letter_id(source: SourcePosition) -> str:
    """The id of the dead letter of the record at this position."""
    return derive_event_id("dead-letter", source.topic, source.partition, source.offset)


def claimed_fields(raw: bytes) -> dict[str, Any]:
    """The fields a record, valid or not, claims to have; empty if none.

    Never raises: for labels and log lines, not for processing.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # The standard parser gives up on nesting about a thousand levels deep,
        # which a record of 2 kB can reach.
        return {}
    return data if isinstance(data, dict) else {}


def claimed_event_id(fields: dict[str, Any]) -> str | None:
    """The event id among a record's claimed fields, if it is a short string."""
    claimed = fields.get("event_id")
    return claimed if isinstance(claimed, str) and len(claimed) <= 200 else None


class _RollBack(Exception):
    """Raised to roll back a preview's transaction."""


def _published_pair(rule: Rule | None) -> set[Pair]:
    if rule is None or rule.status is not RuleStatus.PUBLISHED:
        return set()
    return {(rule.program_id, rule.role)}


def _config_subject(event: ConfigEvent) -> str:
    for name in ("program", "segment", "rule"):
        value = getattr(event, name, None)
        if value is not None:
            return str(getattr(value, f"{name}_id"))
    for name in ("program_id", "segment_id", "rule_id"):
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    return "rules"


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in detail["loc"]) or "record"
        problems.append(f"{where}: {detail['msg']}")
    return "invalid event: " + "; ".join(problems)


def _until_drained(
    one_pass: Callable[[int], tuple[int, int]], limit: int
) -> tuple[int, int]:
    """Run passes of up to limit persons until one finds fewer; sum their counts.

    A pass returns the persons it took and what it did to them.
    """
    persons = done = 0
    while True:
        taken, count = one_pass(limit)
        persons, done = persons + taken, done + count
        if taken < limit:
            return persons, done


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    return _utf8(data) or _base64(data)


def _utf8(data: bytes) -> str | None:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    # PostgreSQL text holds no NUL, so such a key travels as base64 instead.
    return None if "\x00" in text else text


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode()
