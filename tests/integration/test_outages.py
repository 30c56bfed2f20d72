"""The worker rides out a broker restart and a database outage, losing nothing.

The database outage refuses new connections and ends every backend; the server
process itself is not restarted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from infra.kafka import ensure_topics
from infra.kafka_broker import ApacheKafkaBroker
from infra.settings import KafkaSettings, Settings
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

OUTAGE_S = 8.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[ApacheKafkaBroker]:
    """A broker of this test's own, since the test restarts it."""
    broker = ApacheKafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_settings(
    kafka_settings: KafkaSettings, own_broker: ApacheKafkaBroker
) -> KafkaSettings:
    moved = kafka_settings.model_copy(update={"bootstrap": own_broker.bootstrap})
    ensure_topics(moved)
    return moved


def cut_off_database(server_url: str, database_url: str, seconds: float) -> None:
    """Refuse connections to the database and drop the open ones, for a while.

    To a client this is what a server restart looks like, without touching
    the server that other tests share.
    """
    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'.encode())
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
    time.sleep(seconds)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())


def wait_for_progress(store, at_least: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while processed_count(store) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_broker_restart_and_a_database_outage_lose_nothing(
    settings: Settings,
    store,
    producer,
    worker_factory,
    own_broker: ApacheKafkaBroker,
    database_url: str,
    postgres_server_url: str,
    tmp_path: Path,
):
    events = generate_events(seed=11)[:1500]
    expected = oracle(events)
    worker = worker_factory("worker")
    ids = publish_events(
        producer, settings.kafka.config_topic, [(CONFIG_KEY, CONFIG.to_event())]
    )
    wait_until_processed(store, ids)
    event_ids = publish_events(
        producer, settings.kafka.person_topic, keyed_by_person(events)
    )

    wait_for_progress(store, 300)
    own_broker.stop()
    time.sleep(OUTAGE_S)
    own_broker.start()

    wait_for_progress(store, 800)
    cut_off_database(postgres_server_url, database_url, OUTAGE_S)

    wait_until_processed(store, list(dict.fromkeys(event_ids)), timeout_s=240)
    published = read_until_complete(settings.kafka, expected.all_event_ids)

    assert worker.poll() is None, "the worker died instead of waiting"
    assert guild_members(store) == expected.members
    assert {event["event_id"] for event in published} == expected.all_event_ids
    assert first_seen_by_person(published) == expected.event_ids
    log = (tmp_path / "worker.log").read_text()
    assert "worker degraded" in log
    assert "worker recovered" in log
