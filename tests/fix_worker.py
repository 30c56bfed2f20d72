"""Settings, a producer and worker processes for the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from infra.kafka import make_producer
from infra.settings import KafkaSettings, PostgresSettings, Settings, WorkerSettings
from workers.demo import worker_process

# The tests pin "today", so that date rules give the same answer every day.
TEST_TODAY = date(2026, 6, 1)


@pytest.fixture
def settings(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> Settings:
    """Settings for one test: its database, its topics, no web server."""
    return Settings(
        PostgresSettings(url=SecretStr(database_url)),
        kafka_settings,
        WorkerSettings(
            data_dir=tmp_path,
            web_port=0,
            as_of=TEST_TODAY,
            relay_interval_s=0.1,
            calendar_interval_s=1.0,
        ),
    )


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[Any]:
    """A producer of input events."""
    producer = make_producer(kafka_settings)
    yield producer
    producer.close()


@pytest.fixture
def worker_factory(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start ``mentorflow worker`` processes, stopped when the test ends."""
    with ExitStack() as stack:

        def start(name: str = "worker") -> Any:
            return stack.enter_context(
                worker_process(settings, tmp_path / f"{name}.log")
            )

        yield start
