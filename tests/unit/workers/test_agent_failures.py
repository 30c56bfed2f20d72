"""An agent that fails around its records stops the worker instead of idling."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from infra.settings import Settings
from workers.app import Wiring, _stopping_on_failure
from workers.errors import AgentFailedError
from workers.health import Health
from workers.metrics import WorkerMetrics


def wiring() -> Wiring:
    health = Health(["config-events"])
    health.assigned = True
    health.agent_started("config-events")
    health.database_reachable()
    return Wiring(
        cast(Settings, None), cast(Any, None), cast(Any, None), health, WorkerMetrics()
    )


class Crashes:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    async def __call__(self, error: BaseException) -> None:
        self.errors.append(error)


async def fail_inside(
    wired: Wiring, crash: Crashes, error: Exception, *, reraise: bool = False
) -> None:
    async with _stopping_on_failure(wired, crash, "config-events", reraise=reraise):
        raise error


def test_a_failing_agent_stops_the_worker_and_reads_not_ready():
    wired, crash = wiring(), Crashes()

    asyncio.run(fail_inside(wired, crash, KeyError("a person's title")))

    (error,) = crash.errors
    assert isinstance(error, AgentFailedError)
    # Named by type and place: the key may quote the data.
    assert str(error).startswith("agent config-events failed: KeyError at ")
    assert "title" not in str(error)
    consuming = wired.health.readiness().checks["consuming"]
    assert consuming.startswith("config-events retrying: failed, the worker stops")


def test_a_failure_passed_on_is_reported_once():
    wired, crash = wiring(), Crashes()

    async def nested() -> None:
        async with _stopping_on_failure(wired, crash, "config-events"):
            await fail_inside(wired, crash, RuntimeError("boom"), reraise=True)

    asyncio.run(nested())

    assert len(crash.errors) == 1


def test_cancelling_an_agent_is_no_failure():
    wired, crash = wiring(), Crashes()

    async def cancelled() -> None:
        async with _stopping_on_failure(wired, crash, "config-events"):
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert crash.errors == []
    assert wired.health.readiness().is_ready
