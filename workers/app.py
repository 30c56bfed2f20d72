"""The faust app: agents for person and config events, the relay and timers.

With a web port configured, faust's web server also answers ``/metrics``
(Prometheus text), ``/healthz`` (alive) and ``/readyz`` (consuming, database
reachable, outbox draining), 200 or 503 with a short JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from infra.lag import LagReader
from infra.logging import batch_fields, describe_failure, log_context
from infra.settings import Settings
from infra.store import SourcePosition
from schemas.errors import MentorflowError
from workers.batch import BatchTurn, PersonRecord
from workers.engine import Engine, Outcome
from workers.engine_process import (
    STOP_WAIT_S,
    EngineProcess,
    EngineProcessLostError,
)
from workers.errors import AgentFailedError, PredecessorFailedError
from workers.health import Health
from workers.metrics import (
    CONFIG_SOURCE,
    CONTENT_TYPE,
    PERSON_SOURCE,
    WorkerMetrics,
    label_record,
)
from workers.relay import OutboxRelay
from workers.retry import backoff_s

logger = logging.getLogger(__name__)

# A record that fails this many times for a reason that is not retriable is
# dead-lettered, so that one poisoned record cannot stall its partition.
MAX_ATTEMPTS = 3

PERSON_AGENT = "person-events"
CONFIG_AGENT = "config-events"
# The child process that applies person batches, as health names it.
ENGINE_PROCESS = "engine-process"

RecordHandler = Callable[[bytes, bytes | None, SourcePosition], Outcome]
# Stops the app with an error: faust.App.crash.
Crash = Callable[[BaseException], Awaitable[None]]


class InFlight:
    """Counts the events the agents took and have not acknowledged or given up."""

    def __init__(self) -> None:
        self.count = 0
        self._none = asyncio.Event()
        self._none.set()

    def taken(self, count: int) -> None:
        self.count += count
        self._none.clear()

    def done(self, count: int) -> None:
        self.count -= count
        if self.count <= 0:
            self._none.set()

    async def wait_none(self) -> None:
        await self._none.wait()


@dataclass
class Wiring:
    """What the agents, tasks and pages of one app share."""

    settings: Settings
    engine: Engine
    relay: OutboxRelay
    health: Health
    metrics: WorkerMetrics
    lag_reader: LagReader | None = None
    # Applies person batches in a child process; None applies them in threads.
    engine_process: EngineProcess | None = None
    outbox_written: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: InFlight = field(default_factory=InFlight)


def build_app(
    settings: Settings,
    engine: Engine,
    relay: OutboxRelay,
    metrics: WorkerMetrics | None = None,
    lag_reader: LagReader | None = None,
    engine_process: EngineProcess | None = None,
) -> faust.App:
    """Return the faust app wired to the engine, the relay and the metrics.

    Without a lag reader, the lag gauges stay empty. With an engine process,
    person batches apply in it; the engine handles everything else.
    """
    kafka = settings.kafka
    worker = settings.worker
    # faust names the consumer group after the app.
    app = faust.App(
        kafka.consumer_group,
        broker=[f"kafka://{server}" for server in kafka.servers],
        broker_credentials=_credentials(settings),
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=kafka.heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        # mentorflow keeps no state in faust: no tables, no leader topic.
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_enabled=worker.web_port != 0,
        web_port=worker.web_port or 6066,
        web_bind=worker.web_host,
        producer_acks=-1,
        # faust would wait for the events being handled without end, behind a
        # batch that waits on a lock say: _finish_in_flight bounds the wait.
        stream_wait_empty=False,
        # faust writes a folder of its own even with no tables; keep it with
        # the rest of the worker's files, not in whatever folder it started in.
        datadir=str(worker.data_dir / "faust"),
    )
    health = Health(
        (PERSON_AGENT, CONFIG_AGENT),
        outbox_stall_s=worker.outbox_stall_s,
        # Three missed refreshes in a row mean the refresh itself is stuck.
        database_check_max_age_s=3 * worker.metrics_interval_s
        + settings.postgres.connect_timeout_s,
    )
    wiring = Wiring(
        settings,
        engine,
        relay,
        health,
        metrics or WorkerMetrics(),
        lag_reader,
        engine_process,
    )
    # A broker slow to acknowledge is probably away: say so while the relay
    # waits, not only once it gives up.
    relay.on_slow = functools.partial(health.degrade, component="relay")
    _add_agents(app, wiring)
    _add_tasks(app, wiring)
    _add_pages(app, wiring)
    return app


def _add_agents(app: faust.App, wiring: Wiring) -> None:
    kafka = wiring.settings.kafka
    engine = wiring.engine
    person_topic = app.topic(
        kafka.person_topic, key_serializer="raw", value_serializer="raw"
    )
    config_topic = app.topic(
        kafka.config_topic, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(person_topic, name=PERSON_AGENT)
    async def process_person_events(stream: Any) -> None:
        async with _stopping_on_failure(wiring, app.crash, PERSON_AGENT):
            if wiring.settings.worker.batch_size > 1:
                await _consume_batches(wiring, stream, app.crash)
            else:
                handler = engine.handle_person_record
                await _consume(wiring, stream, PERSON_AGENT, handler)

    @app.agent(config_topic, name=CONFIG_AGENT)
    async def process_config_events(stream: Any) -> None:
        async with _stopping_on_failure(wiring, app.crash, CONFIG_AGENT):
            await _consume(wiring, stream, CONFIG_AGENT, engine.handle_config_record)

    @app.on_before_shutdown.connect
    async def on_stopping(
        sender: Any, /, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        await _finish_in_flight(wiring)

    @app.on_partitions_assigned.connect
    def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # faust sends the set of assigned partitions as the one argument.
        (assigned,) = args
        wiring.health.assigned = True
        logger.info("partitions assigned count=%d", len(assigned))

    @app.on_partitions_revoked.connect
    def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        (revoked,) = args
        wiring.health.assigned = False
        logger.info("partitions revoked count=%d", len(revoked))


def _add_tasks(app: faust.App, wiring: Wiring) -> None:
    settings = wiring.settings
    engine = wiring.engine
    health = wiring.health

    if settings.worker.relay_in_worker:

        @app.task
        async def relay_outbox() -> None:
            await _relay_forever(app, wiring)

    if wiring.engine_process is not None:

        @app.task
        async def watch_engine_process() -> None:
            await _watch_engine_process(wiring, app.crash)

    @app.timer(interval=settings.worker.sweep_interval_s)
    async def sweep() -> None:
        started = time.perf_counter()
        result = await _guarded(wiring, "sweep", engine.sweep)
        if result is not None:
            seconds = time.perf_counter() - started
            wiring.metrics.record_sweep(result, seconds, time.time())
            if result.changes:
                wiring.outbox_written.set()

    @app.task
    async def follow_the_calendar() -> None:
        # Runs at start too, so that held events, time flips and config
        # re-evaluations left over while no worker ran are done at once.
        while not app.should_stop:
            released = await _guarded(wiring, "held events", engine.release_due_events)
            flipped = await _guarded(wiring, "time flips", engine.apply_due_flips)
            # Re-evaluations that a crash interrupted carry on from here.
            resumed = await _guarded(wiring, "re-evaluations", engine.run_reevaluations)
            if released or flipped or resumed:
                wiring.outbox_written.set()
            await asyncio.sleep(settings.worker.calendar_interval_s)

    # Timer loops rather than app.timer: they run at start too, so that
    # readiness knows about the database before the first interval. Two of
    # them, so that a broker slow to answer for the lag never delays the
    # database check.
    @app.task
    async def refresh_outbox() -> None:
        while not app.should_stop:
            await _refresh_outbox(wiring)
            wiring.metrics.ready.set(1 if health.readiness().is_ready else 0)
            await asyncio.sleep(settings.worker.metrics_interval_s)

    if wiring.lag_reader is not None:
        lag_reader = wiring.lag_reader

        @app.task
        async def refresh_lag() -> None:
            while not app.should_stop:
                await _refresh_lag(wiring, lag_reader)
                await asyncio.sleep(settings.worker.metrics_interval_s)


def _add_pages(app: faust.App, wiring: Wiring) -> None:
    if not wiring.settings.worker.web_port:
        return
    health = wiring.health

    @app.page("/metrics")
    async def metrics_page(view: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type=, hence the header.
        body = wiring.metrics.render()
        return view.bytes(body, headers={"Content-Type": CONTENT_TYPE})

    @app.page("/healthz")
    async def liveness_page(view: Any, request: Any) -> Any:
        # Answering at all shows the event loop turns; faust restarts crashed
        # agents by itself, so a restart by the orchestrator would not help.
        return view.json({"status": "alive", "processed": health.processed})

    @app.page("/readyz")
    async def readiness_page(view: Any, request: Any) -> Any:
        readiness = health.readiness()
        wiring.metrics.ready.set(1 if readiness.is_ready else 0)
        status = 200 if readiness.is_ready else 503
        return view.json(readiness.to_json(), status=status)


@contextlib.asynccontextmanager
async def _stopping_on_failure(
    wiring: Wiring, crash: Crash, agent: str, *, reraise: bool = False
) -> AsyncIterator[None]:
    """Stop the worker, which then exits with status 1, when an agent fails.

    A record that cannot be handled is retried and dead-lettered by _handle;
    what fails here failed around the records (labelling, counting,
    acknowledging). faust would restart the agent, but the restarted agent may
    never see the events taken for the one that failed, and nothing past them
    was committed: a new process resumes from the committed offsets instead,
    and the redelivered events change nothing. With reraise, the failure goes
    on as AgentFailedError, which an enclosing block does not report again.
    """
    try:
        yield
    except AgentFailedError:
        if reraise:
            raise
    except Exception as error:
        reason = describe_failure(error)
        logger.error("agent failed, stopping the worker agent=%s: %s", agent, reason)
        logger.debug("agent failure in full", exc_info=True)
        wiring.health.degrade(f"failed, the worker stops: {reason}", agent)
        failure = AgentFailedError(f"agent {agent} failed: {reason}")
        # faust logs the crash once more, with a traceback, at ERROR.
        await crash(failure)
        if reraise:
            raise failure from error


async def _finish_in_flight(wiring: Wiring) -> None:
    """Give the events being handled STOP_WAIT_S to commit and be acknowledged.

    faust has stopped fetching by now, and commits the acknowledged offsets
    after this. Events still being handled then are given up: their offsets
    stay uncommitted, so they come again to the next worker, and the engine's
    child process is killed when the time is up (EngineProcess.close), which
    rolls its batch back.
    """
    if wiring.engine_process is not None:
        wiring.engine_process.stopping(STOP_WAIT_S)
    try:
        await asyncio.wait_for(wiring.in_flight.wait_none(), STOP_WAIT_S)
    except TimeoutError:
        logger.warning(
            "events still being handled %.0f s after the worker began to stop"
            " count=%d; they are not acknowledged, and come again",
            STOP_WAIT_S,
            wiring.in_flight.count,
        )


async def _watch_engine_process(wiring: Wiring, crash: Crash) -> None:
    """Stop the worker when the engine's child process dies, batches or not.

    A batch handed over afterwards would stop it too, but a quiet worker would
    stay ready without the process that applies its batches until one comes.
    """
    assert wiring.engine_process is not None
    async with _stopping_on_failure(wiring, crash, ENGINE_PROCESS):
        await wiring.engine_process.wait_exited()
        raise EngineProcessLostError(wiring.engine_process.death())


async def _consume(
    wiring: Wiring, stream: Any, agent: str, handler: RecordHandler
) -> None:
    """Handle every event of an agent's stream in order, acknowledging each once done.

    faust's own iteration acknowledges an event in a ``finally``, so an event
    whose handling was cancelled (a worker that stops without waiting for it)
    would be committed without its transaction: acknowledging is left to us.
    """
    health = wiring.health
    source_label = PERSON_SOURCE if agent == PERSON_AGENT else CONFIG_SOURCE
    max_bytes = wiring.settings.worker.max_event_bytes
    manual = stream.noack()
    health.agent_started(agent)
    try:
        async for event in manual.events():
            message = event.message
            source = SourcePosition(message.topic, message.partition, message.offset)
            label = label_record(event.value or b"", max_bytes)
            with log_context(
                event_id=label.event_id,
                topic=source.topic,
                partition=source.partition,
                offset=source.offset,
            ):
                started = time.perf_counter()
                wiring.in_flight.taken(1)
                try:
                    outcome = await _handle(
                        wiring, agent, handler, event.value, event.key, source
                    )
                    await manual.ack(event)
                finally:
                    wiring.in_flight.done(1)
                seconds = time.perf_counter() - started
            wiring.metrics.record_event(
                source_label, label.event_type, outcome, seconds
            )
            health.processed += 1
            if outcome.changes or outcome.kind == "dead_letter":
                wiring.outbox_written.set()
    finally:
        health.agent_stopped(agent)


async def _consume_batches(wiring: Wiring, stream: Any, crash: Crash) -> None:
    """Handle the person stream in batches, acknowledging each once it is committed.

    faust's take() acknowledges a batch in a ``finally`` when its generator
    resumes or is closed, so a batch whose handling raised or was cancelled
    would be acknowledged, and its offsets committed, without its
    transaction. noack_take() yields the same batches (as events) and leaves
    acknowledging to us: only after the batch's transaction committed.

    Up to BATCHES_IN_FLIGHT batches run at once. In threads, the events of
    persons that no earlier running batch names run at once, the others once
    those batches committed (see BatchTurn); in the engine's child process,
    one after the other while the next batch is taken (see EngineProcess).
    Batches are acknowledged in the order they were taken.
    """
    health = wiring.health
    worker = wiring.settings.worker
    window = asyncio.Semaphore(BATCHES_IN_FLIGHT)
    taken: asyncio.Queue[_InFlight | None] = asyncio.Queue()
    finisher = asyncio.ensure_future(
        _acknowledge_failing_loudly(wiring, stream, taken, crash)
    )
    running: list[_InFlight] = []
    health.agent_started(PERSON_AGENT)
    try:
        batches = stream.noack_take(worker.batch_size, within=worker.batch_window_s)
        async for events in batches:
            records = [
                PersonRecord(
                    event.value or b"",
                    event.key,
                    SourcePosition(
                        event.message.topic,
                        event.message.partition,
                        event.message.offset,
                    ),
                )
                for event in events
            ]
            positions = [
                (record.source.topic, record.source.partition, record.source.offset)
                for record in records
            ]
            await window.acquire()
            running = [batch for batch in running if not batch.task.done()]
            turn = BatchTurn()
            # The task keeps the batch's log context; acknowledging does not.
            with log_context(**batch_fields(positions)):
                task = asyncio.ensure_future(
                    _handle_batch(wiring, records, tuple(running), turn)
                )
            task.add_done_callback(functools.partial(_batch_done, wiring, window))
            batch = _InFlight(events, records, task, turn, time.perf_counter())
            running.append(batch)
            wiring.in_flight.taken(len(records))
            taken.put_nowait(batch)
            if finisher.done():
                finisher.result()
        taken.put_nowait(None)
        await finisher
    finally:
        finisher.cancel()
        # Those queued after the acknowledger stopped, or that it never reached.
        _give_up(wiring, taken)
        health.agent_stopped(PERSON_AGENT)


# Batches of the person stream handled at once (see BatchTurn): enough that
# one always has Python work while the others wait on the database.
BATCHES_IN_FLIGHT = 2


@dataclass
class _InFlight:
    """A batch handed to a thread, to be acknowledged in its turn."""

    events: list[Any]
    records: list[PersonRecord]
    task: asyncio.Future[list[Outcome]]
    turn: BatchTurn
    started: float


async def _acknowledge_failing_loudly(
    wiring: Wiring,
    stream: Any,
    taken: asyncio.Queue[_InFlight | None],
    crash: Crash,
) -> None:
    """Acknowledge in order; stop the worker if that fails, even between batches."""
    async with _stopping_on_failure(wiring, crash, PERSON_AGENT, reraise=True):
        await _acknowledge_in_order(wiring, stream, taken)


async def _acknowledge_in_order(
    wiring: Wiring, stream: Any, taken: asyncio.Queue[_InFlight | None]
) -> None:
    """Acknowledge and count each batch once handled, in the order taken."""
    max_bytes = wiring.settings.worker.max_event_bytes
    try:
        while (batch := await taken.get()) is not None:
            try:
                outcomes = await batch.task
                seconds = time.perf_counter() - batch.started
                for event in batch.events:
                    await stream.ack(event)
            finally:
                wiring.in_flight.done(len(batch.records))
            _count_batch(wiring, batch, outcomes, seconds, max_bytes)
    finally:
        _give_up(wiring, taken)


def _give_up(wiring: Wiring, taken: asyncio.Queue[_InFlight | None]) -> None:
    """Count the batches still queued as done with: nothing will acknowledge them."""
    while not taken.empty():
        batch = taken.get_nowait()
        if batch is not None:
            wiring.in_flight.done(len(batch.records))


def _count_batch(
    wiring: Wiring,
    batch: _InFlight,
    outcomes: list[Outcome],
    seconds: float,
    max_bytes: int,
) -> None:
    """Count an acknowledged batch's events in the metrics and health."""
    # The records of a batch share its time; none has one of its own.
    wiring.metrics.record_batch(len(batch.records), seconds)
    wiring.metrics.record_events(
        PERSON_SOURCE,
        [
            (
                outcome.event_type or label_record(record.raw, max_bytes).event_type,
                outcome,
            )
            for record, outcome in zip(batch.records, outcomes, strict=True)
        ],
    )
    wiring.health.processed += len(batch.records)


def _batch_done(
    wiring: Wiring, window: asyncio.Semaphore, task: asyncio.Future[list[Outcome]]
) -> None:
    """Free the batch's place, and wake the relay at once for what it wrote."""
    window.release()
    if task.cancelled() or task.exception() is not None:
        return
    if any(o.changes or o.kind == "dead_letter" for o in task.result()):
        wiring.outbox_written.set()


async def _handle_batch(
    wiring: Wiring,
    records: list[PersonRecord],
    earlier: Sequence[_InFlight] = (),
    turn: BatchTurn | None = None,
) -> list[Outcome]:
    """Handle a batch (Engine.handle_person_batch), or a record at a time if it fails.

    With batches taken before it still running, the first attempt runs
    alongside them (see BatchTurn); if it fails, the batch waits for them to
    be done and goes on alone. Retriable failures (database away) are retried
    without end, as for single records. Any other failure falls back to the
    per-record path, after the batches before it, whose own retries
    dead-letter the poisoned record alone; its lines carry the record's own
    event id and offset. A batch whose predecessor was left unapplied (the
    worker is stopping) is not applied either (AgentFailedError).
    """
    engine = wiring.engine
    max_bytes = wiring.settings.worker.max_event_bytes
    after = tuple(batch.turn for batch in earlier)
    failures = 0
    while True:
        try:
            outcomes = await _apply_batch(wiring, records, after, turn)
        except PredecessorFailedError:
            pass
        except EngineProcessLostError:
            raise
        except MentorflowError as error:
            if not error.retriable:
                _log_fallback(records, error)
                break
            failures += 1
            wiring.metrics.commit_failures.labels("batch").inc()
            wiring.health.degrade(str(error), PERSON_AGENT)
            await asyncio.sleep(backoff_s(failures))
        except Exception as error:
            _log_fallback(records, error)
            break
        else:
            wiring.health.recover(PERSON_AGENT)
            return outcomes
        # From the second attempt on, alone: after the batches before it.
        await _all_done(earlier)
        after, turn = (), None

    await _all_done(earlier)
    outcomes = []
    for record in records:
        source = record.source
        with log_context(
            event_id=label_record(record.raw, max_bytes).event_id,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
        ):
            outcome = await _handle(
                wiring,
                PERSON_AGENT,
                engine.handle_person_record,
                record.raw,
                record.key,
                source,
            )
        outcomes.append(outcome)
    return outcomes


def _log_fallback(records: Sequence[PersonRecord], error: BaseException) -> None:
    first = records[0].source
    logger.warning(
        "batch failed, retrying one record at a time topic=%s partition=%d"
        " offset=%d records=%d: %s",
        first.topic,
        first.partition,
        first.offset,
        len(records),
        describe_failure(error),
    )
    logger.debug("batch failure in full", exc_info=error)


async def _apply_batch(
    wiring: Wiring,
    records: list[PersonRecord],
    after: Sequence[BatchTurn],
    turn: BatchTurn | None,
) -> list[Outcome]:
    """Apply a batch in the engine's child process, or in a thread beside others.

    The child runs batches in the order given, so a batch there needs only
    to know whether it runs alone: no batch before it still running.
    """
    if wiring.engine_process is not None:
        return await wiring.engine_process.handle_batch(records, alone=not after)
    handle = functools.partial(
        wiring.engine.handle_person_batch, records, after=after, turn=turn
    )
    return await asyncio.to_thread(handle)


async def _all_done(batches: Sequence[_InFlight]) -> None:
    """Wait until these batches are handled; raise if one was left unapplied.

    A batch that raised or was cancelled stops the worker, and its events
    come again after a restart: applying a later batch's events now would put
    them before those of the same persons.
    """
    if batches:
        await asyncio.wait([batch.task for batch in batches])
    for batch in batches:
        if batch.task.cancelled() or batch.task.exception() is not None:
            raise AgentFailedError(
                "a batch taken before this one was not applied; neither is this one"
            )


async def _handle(
    wiring: Wiring,
    agent: str,
    handler: RecordHandler,
    value: bytes,
    key: bytes | None,
    source: SourcePosition,
) -> Outcome:
    """Handle one record, retrying with backoff until it is done.

    Retriable failures (database or broker away) are retried without end, and
    the agent reports itself degraded meanwhile; anything else is retried a
    few times and then dead-lettered with the error.
    """
    health = wiring.health
    failures = 0
    while True:
        try:
            outcome = await asyncio.to_thread(handler, value, key, source)
        except MentorflowError as error:
            if not error.retriable:
                raise
            failures += 1
            wiring.metrics.commit_failures.labels("event").inc()
            health.degrade(str(error), agent)
            await asyncio.sleep(backoff_s(failures))
            continue
        except Exception as error:
            failures += 1
            logger.error(
                "processing failed topic=%s partition=%d offset=%d attempt=%d: %s",
                source.topic,
                source.partition,
                source.offset,
                failures,
                describe_failure(error),
            )
            logger.debug("processing failure in full", exc_info=True)
            if failures < MAX_ATTEMPTS:
                await asyncio.sleep(backoff_s(failures))
                continue
            reason = f"processing failed {failures} times: {describe_failure(error)}"
            outcome = await _guarded_letter(wiring, agent, value, key, source, reason)
        health.recover(agent)
        return outcome


async def _guarded_letter(
    wiring: Wiring,
    agent: str,
    value: bytes,
    key: bytes | None,
    source: SourcePosition,
    reason: str,
) -> Outcome:
    failures = 0
    while True:
        try:
            return await asyncio.to_thread(
                wiring.engine.dead_letter, value, key, source, reason
            )
        except MentorflowError as error:
            failures += 1
            wiring.metrics.commit_failures.labels("dead_letter").inc()
            wiring.health.degrade(str(error), agent)
            await asyncio.sleep(backoff_s(failures))


async def _relay_forever(app: faust.App, wiring: Wiring) -> None:
    """Publish the outbox whenever something was written, and on an interval."""
    health = wiring.health
    failures = 0
    while not app.should_stop:
        # Cleared before the outbox is read, so that a batch committed while
        # the relay reads it sets the event again instead of waiting out the
        # interval.
        wiring.outbox_written.clear()
        try:
            sent = await asyncio.to_thread(wiring.relay.relay_once)
        except MentorflowError as error:
            failures += 1
            wiring.metrics.commit_failures.labels("relay").inc()
            health.degrade(str(error), "relay")
            await asyncio.sleep(backoff_s(failures))
            continue
        failures = 0
        health.recover("relay")
        if sent:
            wiring.metrics.relay_batch_size.observe(sent)
            health.outbox_drained()
        if sent >= wiring.relay.batch_size:
            continue
        # Fewer rows than a batch: the outbox was empty as of the read, and
        # whatever committed since set the event again, so the wait ends at
        # once; only an empty outbox waits out the interval.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                wiring.outbox_written.wait(),
                timeout=wiring.settings.worker.relay_interval_s,
            )


async def _refresh_outbox(wiring: Wiring) -> None:
    """Read the outbox backlog, which doubles as the database check."""
    health = wiring.health
    try:
        backlog = await asyncio.to_thread(_outbox_backlog, wiring.engine)
    except MentorflowError as error:
        health.database_unreachable(str(error))
        logger.warning("database check failed: %s", error)
        return
    health.database_reachable()
    health.observe_outbox(backlog)
    wiring.metrics.outbox_backlog.set(backlog)


async def _refresh_lag(wiring: Wiring, lag_reader: LagReader) -> None:
    """Read the worker group's lag on every partition of its input topics.

    The read doubles as the broker check: the consumer and the relay's producer
    retry a broker that is away without a word, so a failed read degrades the
    worker until a read succeeds again.
    """
    try:
        lags = await asyncio.to_thread(lag_reader.read)
    except MentorflowError as error:
        # Stale figures would read as a healthy group: drop them instead.
        wiring.metrics.set_lag([])
        wiring.health.degrade(str(error), "broker")
        logger.warning("reading the consumer lag failed: %s", error)
        return
    wiring.health.recover("broker")
    wiring.metrics.set_lag(lags)


def _outbox_backlog(engine: Engine) -> int:
    with engine.store.transaction() as tx:
        return tx.outbox_backlog()


async def _guarded(wiring: Wiring, what: str, job: Callable[[], Any]) -> Any:
    try:
        result = await asyncio.to_thread(job)
    except MentorflowError as error:
        wiring.metrics.commit_failures.labels(what.replace(" ", "_")).inc()
        wiring.health.degrade(str(error), what)
        return None
    wiring.health.recover(what)
    return result


def _credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
    if kafka.sasl_mechanism is not None:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None
