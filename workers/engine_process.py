"""Applying person batches in a child process, beside the faust consumer.

A worker process runs on one interpreter lock, and faust's consumer loop and
the engine's evaluation each need most of it: in one process they take turns.
With the engine in a child process, the worker takes, decodes and
acknowledges the next batch while the child applies the one before.

The child applies batches one after the other, in the order they were handed
over, so the events of each person apply in their Kafka order. When a batch
fails, the batches handed over after it are refused (PredecessorFailedError)
until a batch is handed over to run alone: the caller retries the failed batch
alone, or handles it a record at a time itself, before the later ones run
again, each alone too.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from infra.logging import (
    current_log_fields,
    describe_failure,
    log_context,
    logging_config,
)
from infra.settings import Settings
from schemas.errors import MentorflowError
from workers.batch import PersonRecord
from workers.engine import Engine, Outcome
from workers.errors import PredecessorFailedError, WorkerError
from workers.runtime import build_engine, open_store

logger = logging.getLogger(__name__)

# How long a stopping worker waits for the events it is handling. A batch takes
# well under a second; one that runs longer waits on a lock or on a database
# that is away, and rolling it back loses nothing.
STOP_WAIT_S = 10.0


class EngineProcessLostError(WorkerError):
    """The child process that applies batches died; the worker must stop."""


class EngineProcess:
    """Hands batches of person records to Engine.handle_person_batch in a child.

    The child opens its own connections, on first use, with the worker's
    settings; the worker applied the migrations already.
    """

    def __init__(self, settings: Settings, start_timeout_s: float = 60.0) -> None:
        # Spawned, not forked: the worker already runs threads (the
        # publisher's loop, the kafka clients), which a fork would copy stopped.
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(settings,),
        )
        # Started now rather than with the first batch, so that the worker can
        # see the child die while no events come (wait_exited).
        try:
            pid = self._pool.submit(os.getpid).result(timeout=start_timeout_s)
        except (BrokenProcessPool, TimeoutError) as error:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise WorkerError(
                f"the engine's child process did not start ({type(error).__name__});"
                " see its log lines, or set MENTORFLOW_ENGINE_PROCESS=false"
            ) from None
        [self._child] = [
            child for child in multiprocessing.active_children() if child.pid == pid
        ]
        # When the worker began to stop, and when it gives up on the batch.
        self._stop_began: float | None = None
        self._stop_deadline = 0.0

    async def wait_exited(self) -> None:
        """Return once the child has exited, for whatever reason."""
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        # The sentinel becomes readable when the process ends.
        loop.add_reader(self._child.sentinel, exited.set)
        try:
            await exited.wait()
        finally:
            loop.remove_reader(self._child.sentinel)

    async def handle_batch(
        self, records: Sequence[PersonRecord], *, alone: bool
    ) -> list[Outcome]:
        """Apply a batch in the child, after every batch handed over before it.

        ``alone`` says that every batch handed over before this one is done
        with, retries included: only such a batch runs after one that failed.
        The child's log lines carry the caller's log context. Raises what the
        engine raised, MentorflowErrors as they are and anything else as a
        RuntimeError holding its description, or EngineProcessLostError.
        """
        # A pool whose child died refuses new batches at once, and fails
        # those it had: either way, the worker must stop.
        try:
            future = self._pool.submit(
                _handle_batch, list(records), alone, current_log_fields()
            )
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            raise EngineProcessLostError(self.death()) from None

    def death(self) -> str:
        """Say how the child died, for the worker's error."""
        # The pool may notice before the process is reaped, and its own thread
        # may be the one that reaps it.
        deadline = time.monotonic() + 1.0
        while (code := self._child.exitcode) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if code is None:
            how = "its pool broke"
        elif code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit status {code}"
        return f"the engine's child process died ({how}); see its last log lines"

    def stopping(self, wait_s: float = STOP_WAIT_S) -> None:
        """Say that the worker began to stop: close() waits until wait_s from now."""
        if self._stop_began is None:
            self._stop_began = time.monotonic()
            self._stop_deadline = self._stop_began + wait_s

    def close(self) -> None:
        """Let the batch being applied finish, drop the others, stop the child.

        A batch still running STOP_WAIT_S after the worker began to stop (see
        stopping), or after this call if it was not told, one waiting on a
        lock say, is cut short by killing the child: its transaction rolls
        back, and its offsets were not committed, so its events come again.
        """
        self.stopping()
        wait_s = max(0.0, self._stop_deadline - time.monotonic())
        killer = threading.Timer(wait_s, self._kill_child)
        killer.start()
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            killer.cancel()

    def _kill_child(self) -> None:
        if self._child.is_alive():
            assert self._stop_began is not None
            logger.warning(
                "the engine's child process was still applying a batch %.1f s"
                " after the worker began to stop; killing it, the batch rolls back",
                time.monotonic() - self._stop_began,
            )
            # SIGKILL, as the child ignores SIGTERM.
            self._child.kill()


# -- in the child ------------------------------------------------------------------

_settings: Settings | None = None
_engine: Engine | None = None
# A batch failed, and no batch has run alone since.
_blocked = False
# How often the child looks whether the worker is still there.
ORPHAN_CHECK_S = 1.0


def _start_child(settings: Settings) -> None:
    global _settings
    _settings = settings
    logging.config.dictConfig(
        logging_config(settings.worker.log_level, settings.worker.log_format)
    )
    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group:
    # the worker stops the child itself, after the batch it is applying, and
    # the child exits on its own when the worker is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with, args=(os.getppid(),), name="orphan-watch", daemon=True
    ).start()


def _exit_with(worker_pid: int) -> None:
    """Exit once the worker is gone, which a killed worker never says.

    The child holds its end of the task queue open itself, so it would wait
    for tasks forever. Exiting mid-batch loses nothing: the transaction rolls
    back, and the batch's offsets were never committed.
    """
    while os.getppid() == worker_pid:
        time.sleep(ORPHAN_CHECK_S)
    logger.warning("the worker process is gone; the engine process exits")
    os._exit(1)


def _handle_batch(
    records: list[PersonRecord], alone: bool, log_fields: dict[str, Any]
) -> list[Outcome]:
    global _blocked
    if _blocked and not alone:
        raise PredecessorFailedError("an earlier batch failed; this one must wait")
    _blocked = True
    with log_context(**log_fields):
        try:
            outcomes = _child_engine().handle_person_batch(records)
        except MentorflowError:
            raise
        except Exception as error:
            # The worker gets the description: not every exception pickles.
            raise RuntimeError(describe_failure(error)) from None
    _blocked = False
    return outcomes


def _child_engine() -> Engine:
    global _engine
    if _engine is None:
        assert _settings is not None, "the child was started without settings"
        _engine = build_engine(_settings, open_store(_settings, read_only=True))
    return _engine
