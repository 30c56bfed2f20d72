"""The relay loop of `mentorflow relay`: retries, polling and stopping."""

from __future__ import annotations

import threading

import pytest

from infra.errors import InfraError
from infra.kafka import BrokerUnavailableError
from workers import relay as relay_module
from workers.relay import relay_until_stopped


class ScriptedRelay:
    """Answers relay_once from a script; sets stop when the script runs out."""

    def __init__(self, script: list[int | Exception], stop: threading.Event) -> None:
        self.script = script
        self.stop = stop
        self.calls = 0

    def relay_once(self) -> int:
        self.calls += 1
        step = self.script.pop(0)
        if not self.script:
            self.stop.set()
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "backoff_s", lambda failures: 0.0)


def test_the_relay_retries_a_broker_outage_and_counts_what_it_published():
    stop = threading.Event()
    relay = ScriptedRelay([BrokerUnavailableError("away"), 5, 2, 0], stop)

    published = relay_until_stopped(relay, stop, interval_s=0.0)  # type: ignore[arg-type]

    assert published == 7
    assert relay.calls == 4


def test_a_failure_that_retrying_cannot_fix_propagates():
    stop = threading.Event()
    relay = ScriptedRelay([InfraError("broken"), 0], stop)

    with pytest.raises(InfraError):
        relay_until_stopped(relay, stop, interval_s=0.0)  # type: ignore[arg-type]


def test_a_stopped_relay_publishes_nothing():
    stop = threading.Event()
    stop.set()
    relay = ScriptedRelay([3], stop)

    assert relay_until_stopped(relay, stop, interval_s=0.0) == 0  # type: ignore[arg-type]
    assert relay.calls == 0
