"""The worker's metrics: labels, counts and the exported text."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.lag import PartitionLag
from infra.store import OutboxRow
from rules.evaluation import Decision
from schemas.membership import MembershipAction
from schemas.segments import Role
from workers.engine import Outcome, SweepResult
from workers.metrics import (
    CONFIG_SOURCE,
    PERSON_SOURCE,
    UNKNOWN,
    RecordLabel,
    WorkerMetrics,
    label_record,
)


def exported(
    metrics: WorkerMetrics,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return exported(metrics).get((name, frozenset(labels.items())))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"type": "person.hired", "event_id": "e-1"}',
            RecordLabel("person.hired", "e-1"),
        ),
        (
            b'{"type": "config.applied", "event_id": "e-2"}',
            RecordLabel("config.applied", "e-2"),
        ),
        # A type of someone else's invention must not become a label value.
        (
            b'{"type": "person.exploded", "event_id": "e-3"}',
            RecordLabel(UNKNOWN, "e-3"),
        ),
        (b'{"type": "person.hired", "event_id": 7}', RecordLabel("person.hired", None)),
        (b"{not json", RecordLabel(UNKNOWN, None)),
        (b"[1, 2]", RecordLabel(UNKNOWN, None)),
        (b"\xff\xfe", RecordLabel(UNKNOWN, None)),
        (b"", RecordLabel(UNKNOWN, None)),
    ],
)
def test_a_record_is_labelled_by_its_known_type_and_never_raises(raw, expected):
    assert label_record(raw, max_bytes=1000) == expected


def test_an_oversized_record_is_not_parsed_for_its_label():
    raw = b'{"type": "person.hired", "event_id": "e-1"}'

    assert label_record(raw, max_bytes=10) == RecordLabel(UNKNOWN, None)


def test_person_outcomes_count_by_type_and_outcome_with_their_decisions():
    metrics = WorkerMetrics()
    decisions = (
        Decision("eng", Role.MENTEE, "p-1", MembershipAction.REMOVED, "eng-graduates"),
        Decision("eng", Role.MENTOR, "p-1", MembershipAction.ADDED, "eng-mentors"),
    )

    metrics.record_event(
        PERSON_SOURCE, "person.updated", Outcome("applied", 2, decisions), 0.01
    )
    metrics.record_event(PERSON_SOURCE, "person.updated", Outcome("stale"), 0.002)
    metrics.record_event(PERSON_SOURCE, UNKNOWN, Outcome("dead_letter"), 0.003)

    processed = "mentorflow_events_processed_total"
    applied = {"source": "person", "type": "person.updated", "outcome": "applied"}
    assert value(metrics, processed, **applied) == 1
    stale = {"source": "person", "type": "person.updated", "outcome": "stale"}
    assert value(metrics, processed, **stale) == 1
    assert value(metrics, "mentorflow_stale_events_total") == 1
    assert value(metrics, "mentorflow_dead_letters_total", source="person") == 1
    changes = "mentorflow_membership_changes_total"
    assert value(metrics, changes, program="eng", role="mentee", action="removed") == 1
    assert value(metrics, changes, program="eng", role="mentor", action="added") == 1
    assert value(metrics, "mentorflow_processing_seconds_count", source="person") == 3
    assert value(metrics, "mentorflow_config_membership_changes_total") == 0


def test_records_of_a_batch_are_counted_together_as_one_at_a_time():
    decisions = (
        Decision("eng", Role.MENTOR, "p-1", MembershipAction.ADDED, "eng-mentors"),
    )
    handled = [
        ("person.hired", Outcome("applied", 1, decisions)),
        ("person.hired", Outcome("applied", 1, decisions)),
        ("person.updated", Outcome("stale")),
        (UNKNOWN, Outcome("dead_letter")),
    ]
    together, one_at_a_time = WorkerMetrics(), WorkerMetrics()

    together.record_events(PERSON_SOURCE, handled)
    for event_type, outcome in handled:
        one_at_a_time.record_event(PERSON_SOURCE, event_type, outcome, None)

    def counted(metrics: WorkerMetrics) -> dict[Any, float]:
        # The _created samples hold the instant each series was created.
        return {
            key: sample
            for key, sample in exported(metrics).items()
            if not key[0].endswith("_created")
        }

    assert counted(together) == counted(one_at_a_time)
    processed = "mentorflow_events_processed_total"
    hired = {"source": "person", "type": "person.hired", "outcome": "applied"}
    assert value(together, processed, **hired) == 2
    changes = "mentorflow_membership_changes_total"
    assert value(together, changes, program="eng", role="mentor", action="added") == 2
    assert value(together, "mentorflow_dead_letters_total", source="person") == 1


def test_records_of_a_batch_are_counted_and_timed_only_by_their_batch():
    metrics = WorkerMetrics()

    metrics.record_events(PERSON_SOURCE, [("person.hired", Outcome("applied"))] * 3)
    metrics.record_batch(3, 0.3)
    metrics.record_batch(700, 1.5)

    processed = "mentorflow_events_processed_total"
    applied = {"source": "person", "type": "person.hired", "outcome": "applied"}
    assert value(metrics, processed, **applied) == 3
    # A share of the batch's time would pass for a record's own.
    seconds = "mentorflow_processing_seconds_count"
    assert value(metrics, seconds, source="person") is None
    assert value(metrics, "mentorflow_person_batch_size_count") == 2
    assert value(metrics, "mentorflow_person_batch_size_sum") == 703
    assert value(metrics, "mentorflow_person_batch_size_bucket", le="5.0") == 1
    assert value(metrics, "mentorflow_person_batch_size_bucket", le="500.0") == 1
    assert value(metrics, "mentorflow_person_batch_size_bucket", le="1000.0") == 2
    assert value(metrics, "mentorflow_person_batch_seconds_count") == 2
    assert value(metrics, "mentorflow_person_batch_seconds_sum") == pytest.approx(1.8)


MEMBERSHIP = "mentorflow.membership-events"


def test_published_membership_events_are_counted_whatever_decided_them():
    metrics = WorkerMetrics()
    added = b'{"type": "membership.added", "program_id": "eng", "role": "mentor"}'
    removed = b'{"type": "membership.removed", "program_id": "eng", "role": "mentee"}'
    letter = b'{"event_id": "x", "error": "invalid event", "payload": "{"}'
    eng_mentor_added = ("membership.added", "eng", "mentor")
    eng_mentee_removed = ("membership.removed", "eng", "mentee")

    metrics.record_published(
        [
            OutboxRow(1, MEMBERSHIP, "p-1", added, *eng_mentor_added),
            OutboxRow(2, MEMBERSHIP, "p-2", added, *eng_mentor_added),
            OutboxRow(3, MEMBERSHIP, "p-1", removed, *eng_mentee_removed),
            OutboxRow(4, "mentorflow.dead-letter", None, letter, "dead_letter"),
        ]
    )

    published = "mentorflow_membership_events_published_total"
    mentor_added = {"program": "eng", "role": "mentor", "action": "added"}
    mentee_removed = {"program": "eng", "role": "mentee", "action": "removed"}
    assert value(metrics, published, **mentor_added) == 2
    assert value(metrics, published, **mentee_removed) == 1
    counted = [key for key in exported(metrics) if key[0] == published]
    assert len(counted) == 2


def test_config_outcomes_report_only_their_count_of_changes():
    metrics = WorkerMetrics()

    metrics.record_event(CONFIG_SOURCE, "config.applied", Outcome("applied", 40), 0.5)

    assert value(metrics, "mentorflow_config_membership_changes_total") == 40
    assert not [
        name
        for name, _ in exported(metrics)
        if name == "mentorflow_membership_changes_total"
    ]


def test_sweeps_record_duration_changes_and_time():
    metrics = WorkerMetrics()

    metrics.record_sweep(
        SweepResult(1, persons=100, changes=3), 2.5, at=1_700_000_000.0
    )
    metrics.record_sweep(
        SweepResult(2, persons=101, changes=0), 1.5, at=1_700_003_600.0
    )

    assert value(metrics, "mentorflow_sweep_seconds_count") == 2
    assert value(metrics, "mentorflow_sweep_seconds_sum") == 4.0
    assert value(metrics, "mentorflow_sweep_changes_total") == 3
    assert value(metrics, "mentorflow_sweep_persons") == 101
    assert value(metrics, "mentorflow_last_sweep_timestamp_seconds") == 1_700_003_600.0


def test_a_lag_reading_replaces_the_previous_one():
    metrics = WorkerMetrics()
    metrics.set_lag(
        [
            PartitionLag("hr.person-events", 0, 5, 9, 4),
            PartitionLag("hr.person-events", 1, None, 2, 2),
        ]
    )

    assert (
        value(
            metrics, "mentorflow_consumer_lag", topic="hr.person-events", partition="0"
        )
        == 4
    )
    committed = "mentorflow_consumer_committed_offset"
    assert value(metrics, committed, topic="hr.person-events", partition="1") == -1

    metrics.set_lag([PartitionLag("hr.person-events", 0, 9, 9, 0)])

    lags = {
        k: v for k, v in exported(metrics).items() if k[0] == "mentorflow_consumer_lag"
    }
    assert list(lags.values()) == [0]


def test_each_instance_has_a_registry_of_its_own():
    first, second = WorkerMetrics(), WorkerMetrics()
    first.outbox_backlog.set(7)

    assert value(first, "mentorflow_outbox_backlog") == 7
    assert value(second, "mentorflow_outbox_backlog") == 0
