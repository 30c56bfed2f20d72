"""The faust app: agents for person and config events, the relay and timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import faust

from infra.settings import Settings
from infra.store import SourcePosition
from schemas.errors import MentorflowError
from workers.engine import Engine, Outcome
from workers.relay import OutboxRelay

logger = logging.getLogger(__name__)

# A record that fails this many times for a reason that is not retriable is
# dead-lettered, so that one poisoned record cannot stall its partition.
MAX_ATTEMPTS = 3
MAX_BACKOFF_S = 30.0

RecordHandler = Callable[[bytes, bytes | None, SourcePosition], Outcome]


class Health:
    """What the worker knows of its own state, for logs and probes."""

    def __init__(self) -> None:
        self.degraded_reason: str | None = None
        self.processed = 0

    def degrade(self, reason: str) -> None:
        """Record that the worker is retrying instead of making progress."""
        if self.degraded_reason is None:
            logger.warning("worker degraded: %s", reason)
        self.degraded_reason = reason

    def recover(self) -> None:
        """Record that progress resumed."""
        if self.degraded_reason is not None:
            logger.warning("worker recovered from: %s", self.degraded_reason)
        self.degraded_reason = None


def build_app(settings: Settings, engine: Engine, relay: OutboxRelay) -> faust.App:
    """Return the faust app wired to the engine and the relay."""
    kafka = settings.kafka
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
        web_enabled=settings.worker.web_port != 0,
        web_port=settings.worker.web_port or 6066,
        web_bind="127.0.0.1",
        producer_acks=-1,
    )
    health = Health()
    outbox_written = asyncio.Event()

    person_topic = app.topic(
        kafka.person_topic, key_serializer="raw", value_serializer="raw"
    )
    config_topic = app.topic(
        kafka.config_topic, key_serializer="raw", value_serializer="raw"
    )

    async def consume(stream: Any, handler: RecordHandler) -> None:
        async for event in stream.events():
            message = event.message
            source = SourcePosition(message.topic, message.partition, message.offset)
            outcome = await _handle(
                handler, engine, event.value, event.key, source, health
            )
            health.processed += 1
            if outcome.changes or outcome.kind == "dead_letter":
                outbox_written.set()

    @app.agent(person_topic, name="person-events")
    async def process_person_events(stream: Any) -> None:
        await consume(stream, engine.handle_person_record)

    @app.agent(config_topic, name="config-events")
    async def process_config_events(stream: Any) -> None:
        await consume(stream, engine.handle_config_record)

    @app.task
    async def relay_outbox() -> None:
        await _relay_forever(app, relay, outbox_written, settings, health)

    @app.timer(interval=settings.worker.sweep_interval_s)
    async def sweep() -> None:
        await _guarded(health, "sweep", engine.sweep)

    @app.task
    async def follow_the_calendar() -> None:
        # Runs at start too, so that held events and time flips that fell due
        # while no worker ran are applied at once, not at the next sweep.
        while not app.should_stop:
            released = await _guarded(health, "held events", engine.release_due_events)
            flipped = await _guarded(health, "time flips", engine.apply_due_flips)
            if released or flipped:
                outbox_written.set()
            await asyncio.sleep(settings.worker.calendar_interval_s)

    return app


async def _handle(
    handler: RecordHandler,
    engine: Engine,
    value: bytes,
    key: bytes | None,
    source: SourcePosition,
    health: Health,
) -> Outcome:
    """Handle one record, retrying with backoff until it is done.

    Retriable failures (database or broker away) are retried without end, and
    the worker reports itself degraded meanwhile; anything else is retried a
    few times and then dead-lettered with the error.
    """
    failures = 0
    while True:
        try:
            outcome = await asyncio.to_thread(handler, value, key, source)
        except MentorflowError as error:
            if not error.retriable:
                raise
            failures += 1
            health.degrade(str(error))
            await asyncio.sleep(_backoff_s(failures))
            continue
        except Exception as error:
            failures += 1
            logger.exception(
                "processing failed topic=%s partition=%d offset=%d attempt=%d",
                source.topic,
                source.partition,
                source.offset,
                failures,
            )
            if failures < MAX_ATTEMPTS:
                await asyncio.sleep(_backoff_s(failures))
                continue
            reason = f"processing failed {failures} times: {error!r}"
            outcome = await _guarded_letter(engine, value, key, source, reason, health)
        health.recover()
        return outcome


async def _guarded_letter(
    engine: Engine,
    value: bytes,
    key: bytes | None,
    source: SourcePosition,
    reason: str,
    health: Health,
) -> Outcome:
    failures = 0
    while True:
        try:
            return await asyncio.to_thread(
                engine.dead_letter, value, key, source, reason
            )
        except MentorflowError as error:
            failures += 1
            health.degrade(str(error))
            await asyncio.sleep(_backoff_s(failures))


async def _relay_forever(
    app: faust.App,
    relay: OutboxRelay,
    outbox_written: asyncio.Event,
    settings: Settings,
    health: Health,
) -> None:
    """Publish the outbox whenever something was written, and on an interval."""
    failures = 0
    while not app.should_stop:
        try:
            sent = await asyncio.to_thread(relay.relay_once)
        except MentorflowError as error:
            failures += 1
            health.degrade(str(error))
            await asyncio.sleep(_backoff_s(failures))
            continue
        failures = 0
        if sent:
            continue
        outbox_written.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                outbox_written.wait(), timeout=settings.worker.relay_interval_s
            )


async def _guarded(health: Health, what: str, job: Callable[[], Any]) -> Any:
    try:
        return await asyncio.to_thread(job)
    except MentorflowError as error:
        health.degrade(f"{what}: {error}")
        return None


def _backoff_s(failures: int) -> float:
    return float(min(MAX_BACKOFF_S, 0.2 * 2 ** min(failures, 10)))


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
