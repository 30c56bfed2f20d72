"""Where a bench run's CPU time went: the worker, the broker, the database, the rest.

On a 2-core machine that runs the worker, Apache Kafka and PostgreSQL side by
side, throughput is bounded by the CPU all three spend per event: at R events
a second, the machine can spend at most ``cores / R`` CPU-seconds on each.
The meter reads each process's CPU time and the machine's busy time before and
after a measured stretch, so the bench can print that budget beside what each
part spent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import psutil

# The processes of a PostgreSQL server, the postmaster and its backends.
POSTGRES_NAME = "postgres"


@dataclass(frozen=True)
class CpuShare:
    """CPU-seconds spent over a measured stretch, by part, and the machine's."""

    seconds: float
    by_part: dict[str, float]
    machine_busy: float
    cores: int

    def per_event_us(self, events: int) -> dict[str, float]:
        """Return each part's CPU microseconds per event, and the other processes'."""
        shares = {part: 1e6 * cpu / events for part, cpu in self.by_part.items()}
        shares["other processes"] = (
            1e6 * max(0.0, self.machine_busy - sum(self.by_part.values())) / events
        )
        return shares

    @property
    def busy_share(self) -> float:
        """The share of all cores' time the machine was busy."""
        return self.machine_busy / (self.seconds * self.cores) if self.seconds else 0.0


class CpuMeter:
    """Reads the CPU time of named processes and of the machine around a stretch.

    ``parts`` maps a part's name to the pids of its processes, which must live
    until the stretch ends. Their children count with them, those started
    during the stretch included (a worker starts the process that applies its
    batches), or as a part of their own: ``children_parts`` maps a part's name
    to the name its children count under. Every other PostgreSQL server
    process of the machine counts as ``postgres``: a backend or a child that
    exits during the stretch takes what it spent with it, so keep connections
    open while measuring.
    """

    def __init__(
        self,
        parts: dict[str, Iterable[int]],
        children_parts: dict[str, str] | None = None,
    ) -> None:
        self.parts = {name: tuple(pids) for name, pids in parts.items()}
        self.children_parts = children_parts or {}
        self._started: tuple[float, dict[int, _Reading], float] | None = None

    def start(self, at: float) -> None:
        """Take the readings at the start of the stretch (at: a monotonic instant)."""
        self._started = (at, self._process_seconds(), _machine_busy_s())

    def stop(self, at: float) -> CpuShare:
        """Return what was spent since start (at: the stretch's end, monotonic)."""
        if self._started is None:
            raise RuntimeError("the cpu meter was stopped before it was started")
        started_at, before, busy_before = self._started
        after = self._process_seconds()
        # A backend that started during the stretch spent all it has.
        spent = {
            pid: reading.seconds - before.get(pid, _Reading(reading.name, 0.0)).seconds
            for pid, reading in after.items()
        }
        members: dict[str, list[int]] = {}
        for part, pids in self.parts.items():
            members.setdefault(part, []).extend(pids)
            children_part = self.children_parts.get(part, part)
            members.setdefault(children_part, []).extend(children_of(pids))
        named = {pid for pids in members.values() for pid in pids}
        postgres = [
            pid
            for pid, reading in after.items()
            if pid not in named and reading.name == POSTGRES_NAME
        ]
        by_part = {
            part: sum(spent.get(pid, 0.0) for pid in pids)
            for part, pids in {**members, POSTGRES_NAME: postgres}.items()
        }
        return CpuShare(
            seconds=at - started_at,
            by_part=by_part,
            machine_busy=_machine_busy_s() - busy_before,
            cores=psutil.cpu_count() or 1,
        )

    def _process_seconds(self) -> dict[int, _Reading]:
        readings = {}
        for process in psutil.process_iter(["name", "cpu_times"]):
            times = process.info["cpu_times"]
            if times is not None:
                readings[process.pid] = _Reading(
                    process.info["name"], times.user + times.system
                )
        return readings


def with_children(pids: Iterable[int]) -> list[int]:
    """Return these processes and all their living children."""
    pids = list(pids)
    return pids + children_of(pids)


def children_of(pids: Iterable[int]) -> list[int]:
    """Return the living children of these processes, theirs included."""
    found: list[int] = []
    for pid in pids:
        try:
            found.extend(child.pid for child in psutil.Process(pid).children(True))
        except psutil.NoSuchProcess:
            continue
    return found


class _Reading(NamedTuple):
    name: str | None
    seconds: float


def _machine_busy_s() -> float:
    # Guest time is counted inside user time already, and steal time is the
    # hypervisor's, not this machine's work.
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    return float(busy + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0))
