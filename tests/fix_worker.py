"""Settings, a producer and worker processes for the integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
from workers.runtime import settings_environment

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


@pytest.fixture
def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def cli_factory(settings: Settings) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``mentorflow ARGS...`` in a child process with the test's settings."""
    # No mentorflow setting of the caller may contradict the test's own.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MENTORFLOW_")
    }

    def run(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env={**inherited, **settings_environment(settings), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    return run
