"""Readiness: consuming, database reachable, outbox draining."""

from __future__ import annotations

import pytest

from workers.health import OK, Health

AGENTS = ("person-events", "config-events")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def health(clock: FakeClock) -> Health:
    """A worker that is consuming, with a reachable database and empty outbox."""
    health = Health(AGENTS, outbox_stall_s=60, database_check_max_age_s=30, clock=clock)
    health.assigned = True
    for agent in AGENTS:
        health.agent_started(agent)
    health.database_reachable()
    health.observe_outbox(0)
    return health


def test_a_consuming_worker_with_its_database_and_an_empty_outbox_is_ready(health):
    readiness = health.readiness()

    assert readiness.is_ready
    assert readiness.to_json() == {
        "status": "ready",
        "checks": {"consuming": OK, "database": OK, "broker": OK, "outbox": OK},
    }


@pytest.mark.parametrize("component", ["broker", "relay"])
def test_a_worker_is_not_ready_while_it_cannot_reach_the_broker(health, component):
    health.degrade("kafka broker unavailable at 127.0.0.1:9092", component)

    readiness = health.readiness()

    assert not readiness.is_ready
    assert readiness.checks["broker"] == (
        f"{component}: kafka broker unavailable at 127.0.0.1:9092"
    )
    assert readiness.checks["consuming"] == OK
    health.recover(component)
    assert health.readiness().is_ready


def test_a_new_worker_is_not_ready_before_assignment_and_a_database_check(clock):
    health = Health(AGENTS, clock=clock)

    checks = health.readiness().checks

    assert checks["consuming"] == "waiting for a partition assignment"
    assert checks["database"] == "not checked yet"
    assert health.readiness().to_json()["status"] == "not ready"


def test_a_revoked_assignment_or_a_stopped_agent_stops_consuming(health):
    health.agent_stopped("config-events")
    assert health.readiness().checks["consuming"] == "agents not running: config-events"

    health.agent_started("config-events")
    health.assigned = False
    assert not health.readiness().is_ready


def test_an_agent_retrying_a_record_is_not_ready_until_it_recovers(health):
    health.degrade("postgresql failed: connection refused", "person-events")

    assert "person-events retrying" in health.readiness().checks["consuming"]
    assert (
        health.degraded_reason == "person-events: postgresql failed: connection refused"
    )

    health.recover("person-events")

    assert health.readiness().is_ready
    assert health.degraded_reason is None


def test_a_failed_sweep_degrades_the_worker_but_not_its_readiness(health):
    health.degrade("postgresql failed", "sweep")

    assert health.degraded_reason == "sweep: postgresql failed"
    assert health.readiness().is_ready


def test_an_unreachable_or_unchecked_database_is_not_ready(health, clock):
    health.database_unreachable("postgresql failed: too many connections")
    assert (
        health.readiness().checks["database"]
        == "postgresql failed: too many connections"
    )

    health.database_reachable()
    clock.now += 31
    assert health.readiness().checks["database"] == "last checked 31 s ago"


@pytest.mark.parametrize(
    ("backlogs", "ready"),
    [
        # Shrinking at least once a minute: draining.
        ([5, 8, 3, 9, 2], True),
        ([0, 0, 0, 0, 0], True),
        # Never shrinking for longer than the limit: stuck.
        ([5, 5, 5, 5, 5], False),
        ([1, 2, 3, 4, 5], False),
        # Stuck, then drained.
        ([5, 5, 5, 5, 0], True),
    ],
)
def test_the_outbox_must_shrink_within_the_stall_limit(health, clock, backlogs, ready):
    for backlog in backlogs:
        # The refresh timer checks the database and reads the backlog together.
        health.database_reachable()
        health.observe_outbox(backlog)
        clock.now += 20

    assert health.readiness().is_ready is ready


def test_a_batch_published_by_this_worker_counts_as_draining(health, clock):
    health.observe_outbox(5)
    clock.now += 61
    assert "not shrinking" in health.readiness().checks["outbox"]

    health.outbox_drained()

    assert health.readiness().checks["outbox"] == OK
