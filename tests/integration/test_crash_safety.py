"""Kill -9 the worker at random points: nothing lost, nothing duplicated.

The final memberships and the published membership events are compared with
an oracle that replays the same events through the pure rule engine.
"""

from __future__ import annotations

import random
import time

import pytest

from infra.settings import Settings
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

KILLS = 5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The shortest session Kafka allows: a killed member is noticed quickly.
    kafka = settings.kafka.model_copy(update={"session_timeout_s": 6.0})
    # Small batches and relay rounds: each worker's life spans many
    # transactions, offset commits and publications for a kill to fall between.
    worker = settings.worker.model_copy(
        update={"batch_size": 50, "relay_batch_size": 50}
    )
    return Settings(settings.postgres, kafka, worker)


def test_killing_the_worker_at_random_points_loses_and_duplicates_nothing(
    settings, store, producer, worker_factory
):
    chooser = random.Random(20261203)
    events = generate_events(seed=7)
    expected = oracle(events)
    # Enough membership events for five kills to fall between publications.
    assert len(expected.all_event_ids) > 400

    worker = worker_factory("worker-0")
    ids = publish_events(
        producer, settings.kafka.config_topic, [(CONFIG_KEY, CONFIG.to_event())]
    )
    wait_until_processed(store, ids)
    event_ids = publish_events(
        producer, settings.kafka.person_topic, keyed_by_person(events)
    )

    # The config event, and each distinct person event once.
    total = len(ids) + len(set(event_ids))
    for kill in range(KILLS):
        # Kill once some more events went through, at a random point.
        target = processed_count(store) + chooser.randint(20, 150)
        deadline = time.monotonic() + 90
        while processed_count(store) < target and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker died by itself"
            # Short naps: the worker applies thousands of events a second, and
            # each nap lets it run further past the target before the kill.
            time.sleep(chooser.uniform(0.001, 0.02))
        # A kill after the last event proves nothing about losing one.
        assert processed_count(store) < total, f"kill {kill} came too late"
        worker.kill()
        worker.wait()
        worker = worker_factory(f"worker-{kill + 1}")

    wait_until_processed(store, list(dict.fromkeys(event_ids)), timeout_s=240)
    published = read_until_complete(settings.kafka, expected.all_event_ids)

    assert guild_members(store) == expected.members
    assert {event["event_id"] for event in published} == expected.all_event_ids
    assert first_seen_by_person(published) == expected.event_ids
