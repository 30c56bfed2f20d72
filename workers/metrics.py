"""The worker's Prometheus metrics, kept in a registry of their own."""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from infra.lag import PartitionLag
from infra.store import OutboxRow
from schemas.config import ConfigEvent
from schemas.person import PersonEvent
from workers.engine import (
    Outcome,
    SweepResult,
    claimed_event_id,
    claimed_fields,
)

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# A label value for records whose type cannot be read or is not one of ours:
# a free-form label would let any producer grow the series without bound.
UNKNOWN = "unknown"

# The source label of each input topic.
PERSON_SOURCE = "person"
CONFIG_SOURCE = "config"

# Batch sizes go up to the largest batch_size and relay_batch_size allowed.
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
BATCH_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SWEEP_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _known_types(*unions: Any) -> frozenset[str]:
    # PersonEvent and ConfigEvent are Annotated unions discriminated by type.
    types = set()
    for union in unions:
        for model in get_args(get_args(union)[0]):
            types.add(model.model_fields["type"].default)
    return frozenset(types)


EVENT_TYPES = _known_types(PersonEvent, ConfigEvent)


@dataclass(frozen=True)
class RecordLabel:
    """What a raw record says it is, read without validating it."""

    event_type: str
    event_id: str | None


def label_record(raw: bytes, max_bytes: int) -> RecordLabel:
    """Return the record's event type (or "unknown") and event id, if any.

    Never raises: a record that is not a JSON object of a known type is
    labelled "unknown"; its id is kept only when it is a short string.
    """
    if len(raw) > max_bytes:
        return RecordLabel(UNKNOWN, None)
    fields = claimed_fields(raw)
    event_type = fields.get("type")
    event_id = claimed_event_id(fields)
    if event_type not in EVENT_TYPES:
        return RecordLabel(UNKNOWN, event_id)
    return RecordLabel(str(event_type), event_id)


class WorkerMetrics:
    """Every metric the worker exports; one instance per worker process.

    The metrics live in the instance's own registry rather than in
    prometheus-client's global one, so that building an app twice (tests, the
    demo) never collides and importing this module registers nothing.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_processed = Counter(
            "mentorflow_events_processed",
            "Input records handled, by source topic, event type and outcome",
            ["source", "type", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "mentorflow_dead_letters",
            "Input records sent to the dead-letter topic, by source topic",
            ["source"],
            registry=r,
        )
        self.stale_events = Counter(
            "mentorflow_stale_events",
            "Person updates ignored because a newer version was applied",
            registry=r,
        )
        self.membership_changes = Counter(
            "mentorflow_membership_changes",
            "Membership changes decided by person events",
            ["program", "role", "action"],
            registry=r,
        )
        self.membership_events_published = Counter(
            "mentorflow_membership_events_published",
            "Membership events the relay published, whatever decided them",
            ["program", "role", "action"],
            registry=r,
        )
        self.config_membership_changes = Counter(
            "mentorflow_config_membership_changes",
            "Membership changes made by config events (not broken down)",
            registry=r,
        )
        # Only records handled one at a time: a record of a batch has no time
        # of its own, and the batch's divided by its size would read as one.
        self.processing_seconds = Histogram(
            "mentorflow_processing_seconds",
            "Time to handle one input record on its own, retries included"
            " (person records handled in batches are timed per batch)",
            ["source"],
            registry=r,
        )
        self.person_batch_size = Histogram(
            "mentorflow_person_batch_size",
            "Person records handled per batch by the person agent",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.person_batch_seconds = Histogram(
            "mentorflow_person_batch_seconds",
            "Time to handle one batch of person records, retries and the"
            " one-record-at-a-time fallback included",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.relay_batch_size = Histogram(
            "mentorflow_relay_batch_size",
            "Outbox events published per relay batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.sweep_seconds = Histogram(
            "mentorflow_sweep_seconds",
            "Duration of the sweeps this worker ran",
            buckets=SWEEP_BUCKETS,
            registry=r,
        )
        self.sweep_changes = Counter(
            "mentorflow_sweep_changes",
            "Membership changes made by sweeps (drift repaired)",
            registry=r,
        )
        self.sweep_persons = Gauge(
            "mentorflow_sweep_persons",
            "Persons evaluated by the last sweep this worker ran",
            registry=r,
        )
        self.last_sweep_timestamp = Gauge(
            "mentorflow_last_sweep_timestamp_seconds",
            "Unix time at which the last sweep this worker ran finished",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "mentorflow_outbox_backlog",
            "Events written to the outbox and not yet published",
            registry=r,
        )
        self.commit_failures = Counter(
            "mentorflow_commit_failures",
            "Transactions that failed to commit and were retried, by stage",
            ["stage"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "mentorflow_consumer_lag",
            "Records the worker group has yet to consume, by partition",
            ["topic", "partition"],
            registry=r,
        )
        self.committed_offset = Gauge(
            "mentorflow_consumer_committed_offset",
            "The worker group's committed offset (-1: none yet), by partition",
            ["topic", "partition"],
            registry=r,
        )
        self.end_offset = Gauge(
            "mentorflow_consumer_end_offset",
            "The partition's end offset",
            ["topic", "partition"],
            registry=r,
        )
        self.ready = Gauge(
            "mentorflow_ready",
            "1 when the worker's readiness checks pass, else 0",
            registry=r,
        )

    def record_event(
        self, source: str, event_type: str, outcome: Outcome, seconds: float | None
    ) -> None:
        """Count one handled input record and what it changed.

        ``seconds`` is None for a record handled as part of a batch: the batch's
        time goes to ``record_batch`` instead.
        """
        self.record_events(source, [(event_type, outcome)])
        if seconds is not None:
            self.processing_seconds.labels(source).observe(seconds)
        # Config events report a count only: their changes may span thousands
        # of people, which the outcome does not list.
        if source == CONFIG_SOURCE:
            self.config_membership_changes.inc(outcome.changes)

    def record_events(
        self, source: str, handled: Sequence[tuple[str, Outcome]]
    ) -> None:
        """Count records handled together, by event type, as record_event would.

        They have no time of their own: the batch's goes to record_batch.
        """
        outcomes = collections.Counter(
            (event_type, outcome.kind) for event_type, outcome in handled
        )
        for (event_type, kind), count in outcomes.items():
            self.events_processed.labels(source, event_type, kind).inc(count)
            if kind == "dead_letter":
                self.dead_letters.labels(source).inc(count)
            elif kind == "stale":
                self.stale_events.inc(count)
        changes = collections.Counter(
            (
                decision.program_id,
                decision.role.value,
                decision.action.value.removeprefix("membership."),
            )
            for _, outcome in handled
            for decision in outcome.decisions
        )
        for labels, count in changes.items():
            self.membership_changes.labels(*labels).inc(count)

    def record_published(self, rows: Sequence[OutboxRow]) -> None:
        """Count the membership events among outbox rows the relay published."""
        published = collections.Counter(
            (row.program_id, row.role, row.kind.removeprefix("membership."))
            for row in rows
            if row.kind is not None and row.kind.startswith("membership.")
        )
        for labels, count in published.items():
            self.membership_events_published.labels(*labels).inc(count)

    def record_batch(self, size: int, seconds: float) -> None:
        """Record one batch of person records handled by the person agent."""
        self.person_batch_size.observe(size)
        self.person_batch_seconds.observe(seconds)

    def record_sweep(self, result: SweepResult, seconds: float, at: float) -> None:
        """Record a sweep this worker ran to its end."""
        self.sweep_seconds.observe(seconds)
        self.sweep_changes.inc(result.changes)
        self.sweep_persons.set(result.persons)
        self.last_sweep_timestamp.set(at)

    def set_lag(self, lags: Iterable[PartitionLag]) -> None:
        """Replace the lag figures with a fresh reading."""
        for gauge in (self.consumer_lag, self.committed_offset, self.end_offset):
            gauge.clear()
        for lag in lags:
            labels = (lag.topic, str(lag.partition))
            self.consumer_lag.labels(*labels).set(lag.lag)
            committed = -1 if lag.committed is None else lag.committed
            self.committed_offset.labels(*labels).set(committed)
            self.end_offset.labels(*labels).set(lag.end)

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)
