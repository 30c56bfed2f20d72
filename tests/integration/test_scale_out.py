"""Several workers in one group: order per person, one end state, one sweeper."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from infra.kafka import ensure_topics
from infra.settings import KafkaSettings, Settings
from infra.store import SWEEP_LOCK_KEY, Store
from schemas.config import CONFIG_KEY
from tests.integration.workload import (
    CONFIG,
    first_seen_by_person,
    generate_events,
    guild_members,
    oracle,
    processed_count,
    read_until_complete,
)
from workers.publishing import keyed_by_person, publish_events, wait_until_processed
from workers.runtime import build_engine


@pytest.fixture
def kafka_settings(kafka_settings: KafkaSettings) -> KafkaSettings:
    # More partitions than workers, so that every worker has a share.
    wider = kafka_settings.model_copy(
        update={
            "person_topic": kafka_settings.person_topic + ".wide",
            "membership_topic": kafka_settings.membership_topic + ".wide",
            "partitions": 6,
            "session_timeout_s": 6.0,
        }
    )
    ensure_topics(wider)
    return wider


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Small batches: every partition still has events waiting when one of the
    # workers is killed a third of the way through.
    worker = settings.worker.model_copy(update={"batch_size": 50})
    return Settings(settings.postgres, settings.kafka, worker)


def assigned(log: Path) -> int:
    """How many partitions a worker holds, by the last rebalance its log shows."""
    found = re.findall(r"partitions (assigned|revoked) count=(\d+)", log.read_text())
    if not found or found[-1][0] == "revoked":
        return 0
    return int(found[-1][1])


@pytest.mark.parametrize("workers", [2, 3])
def test_a_group_of_workers_losing_one_mid_stream_ends_as_the_oracle(
    settings: Settings, store: Store, producer, worker_factory, workers, tmp_path
):
    events = generate_events(seed=workers)
    expected = oracle(events)
    group = [worker_factory(f"worker-{number}") for number in range(workers)]
    logs = [tmp_path / f"worker-{number}.log" for number in range(workers)]
    # Every worker of the group takes a share before the stream starts.
    deadline = time.monotonic() + 90
    while not all(map(assigned, logs)):
        assert time.monotonic() < deadline, [assigned(log) for log in logs]
        time.sleep(0.2)
    ids = publish_events(
        producer, settings.kafka.config_topic, [(CONFIG_KEY, CONFIG.to_event())]
    )
    wait_until_processed(store, ids)
    event_ids = publish_events(
        producer, settings.kafka.person_topic, keyed_by_person(events)
    )

    deadline = time.monotonic() + 60
    while processed_count(store) < len(events) // 3 and time.monotonic() < deadline:
        # Short naps: a worker gets through hundreds of events in a long one.
        time.sleep(0.005)
    # Killed while it holds partitions and events remain.
    assert assigned(logs[0]) > 0
    assert processed_count(store) < len(ids) + len(set(event_ids))
    group[0].kill()
    group[0].wait()

    wait_until_processed(store, list(dict.fromkeys(event_ids)), timeout_s=240)
    published = read_until_complete(settings.kafka, expected.all_event_ids)

    assert guild_members(store) == expected.members
    assert {event["event_id"] for event in published} == expected.all_event_ids
    assert first_seen_by_person(published) == expected.event_ids


def test_a_sweep_does_not_start_while_another_runs(settings: Settings, store: Store):
    holding = threading.Event()
    release = threading.Event()

    def another_sweeper() -> None:
        with store.transaction() as tx:
            assert tx.try_lock(SWEEP_LOCK_KEY)
            holding.set()
            release.wait(timeout=30)

    thread = threading.Thread(target=another_sweeper)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        assert build_engine(settings, store).sweep() is None
    finally:
        release.set()
        thread.join()
    result = build_engine(settings, store).sweep()
    assert result is not None
