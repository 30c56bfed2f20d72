"""The worker rides out a broker restart and a database outage, losing nothing.

The database outage refuses new connections and ends every backend; the server
process itself is not restarted.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict

from infra.kafka import ensure_topics
from infra.kafka_broker import ApacheKafkaBroker
from infra.lag import DEFAULT_TIMEOUT_S
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
BROKER_OUTAGE_S = DEFAULT_TIMEOUT_S + 5


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[ApacheKafkaBroker]:
    """A broker of this test's own, since the test restarts it."""
    broker = ApacheKafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def settings(settings: Settings, free_port: int) -> Settings:
    """The test's settings with the probes on a free port, checked often."""
    worker = settings.worker.model_copy(
        update={"web_port": free_port, "metrics_interval_s": 0.5}
    )
    return Settings(settings.postgres, settings.kafka, worker)


@pytest.fixture
def kafka_settings(
    kafka_settings: KafkaSettings, own_broker: ApacheKafkaBroker
) -> KafkaSettings:
    moved = kafka_settings.model_copy(update={"bootstrap": own_broker.bootstrap})
    ensure_topics(moved)
    return moved


@contextmanager
def database_cut_off(server_url: str, database_url: str) -> Iterator[None]:
    """Refuse connections to the database and drop the open ones, for the block.

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
    try:
        yield
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())


def wait_for_progress(store, at_least: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while processed_count(store) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def commit_failures(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "mentorflow_commit_failures"
        for sample in family.samples
        if sample.name == "mentorflow_commit_failures_total"
    }


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
    port = settings.worker.web_port
    worker = worker_factory("worker")
    ids = publish_events(
        producer, settings.kafka.config_topic, [(CONFIG_KEY, CONFIG.to_event())]
    )
    wait_until_processed(store, ids)
    topic = settings.kafka.person_topic
    # A person's events keep their order across the three parts.
    event_ids = publish_events(producer, topic, keyed_by_person(events[:500]))

    wait_for_progress(store, 200)
    own_broker.stop()
    # Longer than a lag read may take: the read doubles as the broker check,
    # and the probe must say so before the broker is back.
    stopped_at = time.monotonic()
    while readiness(port)[1].get("checks", {}).get("broker", "ok") == "ok":
        assert time.monotonic() < stopped_at + BROKER_OUTAGE_S, readiness(port)
        time.sleep(0.2)
    assert readiness(port)[0] == 503
    time.sleep(max(0.0, stopped_at + BROKER_OUTAGE_S - time.monotonic()))
    own_broker.start()
    event_ids += publish_events(producer, topic, keyed_by_person(events[500:1000]))
    wait_until_processed(store, list(dict.fromkeys(event_ids)), timeout_s=120)

    # Events arrive while the database is away: the agent retries them, and
    # the probe says so, until it is back.
    with database_cut_off(postgres_server_url, database_url):
        event_ids += publish_events(producer, topic, keyed_by_person(events[1000:]))
        deadline = time.monotonic() + 60
        while "person-events retrying" not in readiness(port)[1].get("checks", {}).get(
            "consuming", ""
        ):
            assert time.monotonic() < deadline, readiness(port)
            time.sleep(0.2)
        assert readiness(port)[0] == 503
        time.sleep(OUTAGE_S)

    wait_until_processed(store, list(dict.fromkeys(event_ids)), timeout_s=240)
    published = read_until_complete(settings.kafka, expected.all_event_ids)

    assert worker.poll() is None, "the worker died instead of waiting"
    assert guild_members(store) == expected.members
    assert {event["event_id"] for event in published} == expected.all_event_ids
    assert first_seen_by_person(published) == expected.event_ids
    log = (tmp_path / "worker.log").read_text()
    for component in ("broker", "person-events"):
        assert f"worker degraded component={component}:" in log
        assert f"worker recovered component={component} " in log
    deadline = time.monotonic() + 60
    while readiness(port)[0] != 200:
        assert time.monotonic() < deadline, readiness(port)
        time.sleep(0.2)
    # Each failed attempt of the database outage was counted.
    assert commit_failures(port).get("batch", 0) >= 1
