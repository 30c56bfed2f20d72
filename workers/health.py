"""What the worker knows of its own state, for logs and probes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

OK = "ok"

# The components whose problems mean the broker is away or slow.
BROKER_COMPONENTS = frozenset({"broker", "relay"})


@dataclass(frozen=True)
class Readiness:
    """The answer to a readiness probe: each check is "ok" or why not."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def is_ready(self) -> bool:
        """Whether every check passed."""
        return all(state == OK for state in self.checks.values())

    def to_json(self) -> dict[str, object]:
        """Return the short JSON body of the probe."""
        status = "ready" if self.is_ready else "not ready"
        return {"status": status, "checks": dict(self.checks)}


class Health:
    """Tracks progress, assignment, the database and the outbox of one worker.

    Each component (an agent, the relay, the sweep) degrades and recovers on its
    own, so that a failed hourly sweep does not keep the worker degraded after
    the agents made progress again, nor the reverse.
    """

    def __init__(
        self,
        agents: Iterable[str] = (),
        *,
        outbox_stall_s: float = 300.0,
        database_check_max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agents = frozenset(agents)
        self.outbox_stall_s = outbox_stall_s
        self.database_check_max_age_s = database_check_max_age_s
        self.clock = clock
        self.problems: dict[str, str] = {}
        self.processed = 0
        self.assigned = False
        self.running_agents: set[str] = set()
        self.outbox_backlog: int | None = None
        self._database_checked_at: float | None = None
        self._database_error: str | None = "not checked yet"
        self._outbox_stuck_since: float | None = None

    @property
    def degraded_reason(self) -> str | None:
        """Why the worker is degraded, or None while every component progresses."""
        if not self.problems:
            return None
        return "; ".join(f"{name}: {reason}" for name, reason in self.problems.items())

    def degrade(self, reason: str, component: str = "processing") -> None:
        """Record that a component is retrying instead of making progress."""
        if component not in self.problems:
            logger.warning("worker degraded component=%s: %s", component, reason)
        self.problems[component] = reason

    def recover(self, component: str = "processing") -> None:
        """Record that a component made progress again."""
        reason = self.problems.pop(component, None)
        if reason is not None:
            logger.warning("worker recovered component=%s from: %s", component, reason)

    def agent_started(self, name: str) -> None:
        """Record that an agent iterates its stream."""
        self.running_agents.add(name)

    def agent_stopped(self, name: str) -> None:
        """Record that an agent left its stream (stopped or crashed)."""
        self.running_agents.discard(name)

    def database_reachable(self) -> None:
        """Record a successful round trip to the database."""
        self._database_checked_at = self.clock()
        self._database_error = None

    def database_unreachable(self, reason: str) -> None:
        """Record a failed round trip to the database."""
        self._database_checked_at = self.clock()
        self._database_error = reason

    def observe_outbox(self, backlog: int) -> None:
        """Record the outbox backlog; a backlog that never shrinks is stuck."""
        now = self.clock()
        previous = self.outbox_backlog
        self.outbox_backlog = backlog
        if backlog == 0 or (previous is not None and backlog < previous):
            self._outbox_stuck_since = None
        elif self._outbox_stuck_since is None:
            self._outbox_stuck_since = now

    def outbox_drained(self) -> None:
        """Record that this worker's relay published a batch."""
        self._outbox_stuck_since = None

    def readiness(self) -> Readiness:
        """Return whether the worker consumes, reaches the database and drains."""
        return Readiness(
            {
                "consuming": self._consuming(),
                "database": self._database(),
                "broker": self._broker(),
                "outbox": self._outbox(),
            }
        )

    def _consuming(self) -> str:
        if not self.assigned:
            return "waiting for a partition assignment"
        stopped = sorted(self.agents - self.running_agents)
        if stopped:
            return f"agents not running: {', '.join(stopped)}"
        stuck = {
            name: self.problems[name] for name in self.agents & self.problems.keys()
        }
        if stuck:
            return "; ".join(f"{name} retrying: {why}" for name, why in stuck.items())
        return OK

    def _broker(self) -> str:
        # The lag read and the relay are the worker's round trips to the
        # broker: the consumer and producer retry an absent one silently.
        away = {
            name: self.problems[name]
            for name in BROKER_COMPONENTS & self.problems.keys()
        }
        if away:
            return "; ".join(f"{name}: {why}" for name, why in sorted(away.items()))
        return OK

    def _database(self) -> str:
        if self._database_error is not None:
            return self._database_error
        assert self._database_checked_at is not None
        age_s = self.clock() - self._database_checked_at
        if age_s > self.database_check_max_age_s:
            return f"last checked {age_s:.0f} s ago"
        return OK

    def _outbox(self) -> str:
        if self._outbox_stuck_since is None:
            return OK
        stuck_s = self.clock() - self._outbox_stuck_since
        if stuck_s <= self.outbox_stall_s:
            return OK
        return f"backlog of {self.outbox_backlog} not shrinking for {stuck_s:.0f} s"
