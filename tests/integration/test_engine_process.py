"""Person batches applied in the engine's child process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any, cast

import psutil
import psycopg
import pytest
from pydantic import SecretStr

from infra.settings import PostgresSettings, Settings, WorkerSettings
from infra.store import Store
from tests.fix_worker import TEST_TODAY
from tests.integration.polling import wait_for
from tests.integration.test_batches import (
    build_engine,
    chunks,
    configure,
    hire,
    person_agent_wiring,
    record,
    snapshot,
)
from tests.integration.workload import generate_events
from workers import app as worker_app
from workers.engine_process import EngineProcess, EngineProcessLostError
from workers.errors import PredecessorFailedError


def child_settings(database_url: str) -> Settings:
    return Settings(
        PostgresSettings(url=SecretStr(database_url)),
        worker=WorkerSettings(as_of=TEST_TODAY, log_level="WARNING"),
    )


@pytest.fixture
def engine_process(database_url: str) -> Iterator[EngineProcess]:
    engine_process = EngineProcess(child_settings(database_url))
    yield engine_process
    engine_process.close()


def child_pids() -> list[int]:
    """The pids of the children that apply batches (not multiprocessing's tracker)."""
    return [
        child.pid
        for child in psutil.Process().children()
        if "spawn_main" in " ".join(child.cmdline())
    ]


def test_the_child_leaves_what_the_engine_in_process_leaves(
    store: Store, other_store: Store, engine_process: EngineProcess
) -> None:
    events = generate_events(seed=5)
    records = [record(event, event.person_id) for event in events]
    configure(build_engine(store))
    in_process = build_engine(other_store)
    configure(in_process)

    async def in_child() -> list[str]:
        kinds = []
        for chunk in chunks(records, 211):
            outcomes = await engine_process.handle_batch(chunk, alone=False)
            kinds += [outcome.kind for outcome in outcomes]
        return kinds

    child_kinds = asyncio.run(in_child())
    own_kinds = [
        outcome.kind
        for chunk in chunks(records, 211)
        for outcome in in_process.handle_person_batch(chunk)
    ]

    assert child_kinds == own_kinds
    assert {"applied", "stale", "duplicate"} <= set(child_kinds)
    assert snapshot(store) == snapshot(other_store)


def test_after_a_failed_batch_only_a_batch_run_alone_is_taken(
    store: Store, engine_process: EngineProcess
) -> None:
    configure(build_engine(store))
    broken = [cast(Any, ("not a record",))]

    async def scenario() -> list[str]:
        with pytest.raises(RuntimeError, match="ValueError"):
            await engine_process.handle_batch(broken, alone=True)
        with pytest.raises(PredecessorFailedError):
            await engine_process.handle_batch([record(hire("p1"))], alone=False)
        alone = await engine_process.handle_batch([record(hire("p1"))], alone=True)
        after = await engine_process.handle_batch([record(hire("p2"))], alone=False)
        return [outcome.kind for outcome in alone + after]

    assert asyncio.run(scenario()) == ["applied", "applied"]
    assert [row[0] for row in snapshot(store)["persons"]] == ["p1", "p2"]


def test_a_child_that_died_stops_the_batches(
    store: Store, engine_process: EngineProcess
) -> None:
    configure(build_engine(store))

    async def scenario() -> None:
        await engine_process.handle_batch([record(hire("p1"))], alone=True)
        [pid] = child_pids()
        os.kill(pid, signal.SIGKILL)
        # Whether the pool has noticed yet or not, and for every batch after.
        for person_id in ("p2", "p3"):
            with pytest.raises(EngineProcessLostError, match="killed by SIGKILL"):
                await engine_process.handle_batch([record(hire(person_id))], alone=True)

    asyncio.run(scenario())


def test_a_child_that_dies_between_batches_stops_the_worker(
    store: Store, engine_process: EngineProcess
) -> None:
    crashes: list[BaseException] = []

    async def crash(error: BaseException) -> None:
        crashes.append(error)

    wiring = person_agent_wiring(build_engine(store), engine_process)

    async def scenario() -> None:
        watch = worker_app._watch_engine_process(wiring, crash)
        watcher = asyncio.ensure_future(watch)
        await asyncio.sleep(0.3)
        assert not watcher.done(), "the watcher gave up on a living child"
        # Started with the engine process, before any batch.
        [pid] = child_pids()
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(watcher, timeout=10)

    asyncio.run(scenario())
    [error] = crashes
    assert "child process died (killed by SIGKILL)" in str(error)
    assert "engine-process" in (wiring.health.degraded_reason or "")


def test_a_lost_child_stops_the_person_agent_instead_of_falling_back(
    store: Store,
) -> None:
    engine = build_engine(store)
    configure(engine)

    class LostChild:
        async def handle_batch(self, records: Any, *, alone: bool) -> Any:
            raise EngineProcessLostError("the engine's child process died")

    wiring = person_agent_wiring(engine, cast(EngineProcess, LostChild()))

    with pytest.raises(EngineProcessLostError):
        asyncio.run(worker_app._handle_batch(wiring, [record(hire("p1"))]))
    # Not applied a record at a time by the worker's own engine either.
    assert snapshot(store)["persons"] == []


def test_the_child_exits_when_the_worker_is_killed(
    store: Store, database_url: str
) -> None:
    configure(build_engine(store))
    # A worker of its own, to be killed without a chance to stop its child.
    script = textwrap.dedent(
        f"""
        import asyncio, time
        import psutil
        from tests.integration.test_engine_process import child_settings
        from tests.integration.test_batches import hire, record
        from workers.engine_process import EngineProcess

        engine_process = EngineProcess(child_settings({database_url!r}))
        asyncio.run(engine_process.handle_batch([record(hire("p1"))], alone=True))
        print(*(c.pid for c in psutil.Process().children()), flush=True)
        time.sleep(120)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as worker:
        assert worker.stdout is not None
        pids = worker.stdout.readline().split()
        children = [psutil.Process(int(pid)) for pid in pids]
        worker.kill()
    assert children, "the worker started no child"

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(map(is_alive, children)):
        time.sleep(0.2)
    left = [child for child in children if is_alive(child)]
    assert not left, f"left running after the worker was killed: {left}"


def test_stopping_kills_a_batch_that_outlasts_the_wait(
    store: Store, database_url: str
) -> None:
    configure(build_engine(store))
    engine_process = EngineProcess(child_settings(database_url))

    async def scenario() -> float:
        batch = asyncio.ensure_future(
            engine_process.handle_batch([record(hire("p1"))], alone=True)
        )
        await asyncio.sleep(1.0)
        assert not batch.done(), "the batch did not wait on the lock"
        started = time.monotonic()
        engine_process.stopping(0.5)
        await asyncio.to_thread(engine_process.close)
        stopped_in_s = time.monotonic() - started
        with pytest.raises(EngineProcessLostError):
            await batch
        return stopped_in_s

    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE persons IN ACCESS EXCLUSIVE MODE")
        stopped_in_s = asyncio.run(scenario())
        # The killed child's server process stops waiting too, lock or not.
        wait_for(lambda: waiting_on_locks(database_url) == 0, 10)
        locker.rollback()

    assert stopped_in_s < 5
    assert child_pids() == []
    assert snapshot(store)["persons"] == []


def waiting_on_locks(database_url: str) -> int:
    """How many server processes of the test's database wait on a lock."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def is_alive(process: psutil.Process) -> bool:
    # A child whose parent was killed may stay a zombie where nothing reaps it.
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
