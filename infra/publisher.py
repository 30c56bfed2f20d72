"""Publishing many records at once, through aiokafka's batch interface.

The outbox relay hands over thousands of small records at a time and needs
only to know that the broker acknowledged all of them. kafka-python's producer
builds a future, a record and a partition hash in Python for every send;
aiokafka appends records to batches in C and acknowledges a batch as a whole,
about three times cheaper a record. aiokafka runs on an event loop, which the
publisher keeps in a thread of its own, so that the synchronous relay code can
call it from any thread, in the worker and in ``mentorflow relay`` alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, NamedTuple, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from infra.kafka import BrokerUnavailableError
from infra.settings import KafkaSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A batch the broker takes in one request; larger ones are split.
MAX_BATCH_BYTES = 1024 * 1024


class Record(NamedTuple):
    """One record to publish: its topic, key and value as bytes."""

    topic: str
    key: bytes | None
    value: bytes


class _StillWaitingError(Exception):
    """A wait for the broker ran past its first deadline."""


class BatchPublisher:
    """Publishes lists of records, acknowledged by every in-sync replica.

    Records of one partition reach it in the order given: they are appended
    to its batches in that order, and aiokafka keeps one batch a partition in
    flight. A keyed record goes to the partition the Java client, kafka-python
    and aiokafka's own producer would choose (murmur2 of the key).
    """

    def __init__(self, settings: KafkaSettings, linger_ms: int = 5) -> None:
        self.settings = settings
        self.linger_ms = linger_ms
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="publisher", daemon=True
        )
        self._thread.start()
        self._producer: AIOKafkaProducer | None = None
        self._in_flight: asyncio.Future[Any] | None = None
        self._unkeyed = itertools.count()

    def publish(
        self,
        records: Sequence[Record],
        timeout_s: float = 30.0,
        on_slow: Callable[[str], None] | None = None,
        slow_after_s: float = 2.0,
    ) -> None:
        """Publish records and wait until the broker acknowledged every one.

        ``on_slow`` is told, once, when that takes longer than slow_after_s:
        the broker is probably away. Records still unacknowledged from an
        earlier call that gave up are waited for before these are added, so an
        outage makes at most one extra copy of each. Raises
        BrokerUnavailableError when the broker refuses them or does not answer
        within timeout_s: some may have been published, and publishing them
        again gives duplicates with the same event ids.
        """
        if not records:
            return
        future = asyncio.run_coroutine_threadsafe(self._publish(records), self._loop)
        if on_slow is not None and slow_after_s < timeout_s:
            try:
                self._result(future, slow_after_s)
                return
            except _StillWaitingError:
                on_slow(
                    f"kafka at {self.settings.bootstrap} has not acknowledged"
                    f" {len(records)} records within {slow_after_s:.0f} s"
                )
                timeout_s -= slow_after_s
        self._result(future, timeout_s, give_up=True)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered, disconnect and stop the loop's thread."""
        try:
            if self._producer is not None:
                self._run(self._producer.stop(), timeout_s)
        except BrokerUnavailableError as error:
            logger.warning("publisher closed uncleanly: %s", error)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._loop.close()

    def _run(self, work: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        return self._result(future, timeout_s, give_up=True)

    def _result(
        self, future: Future[T], timeout_s: float, *, give_up: bool = False
    ) -> T:
        """Wait for future; past timeout_s cancel it, or raise _StillWaitingError."""
        try:
            return future.result(timeout_s)
        except FutureTimeoutError:
            if not give_up:
                raise _StillWaitingError from None
            future.cancel()
            raise BrokerUnavailableError(
                f"kafka at {self.settings.bootstrap} did not acknowledge within"
                f" {timeout_s:.0f} s"
            ) from None
        except KafkaError as error:
            raise BrokerUnavailableError(
                f"kafka at {self.settings.bootstrap} refused to publish: {error}"
            ) from error

    async def _started(self) -> AIOKafkaProducer:
        # Started on first use, so that a worker starts while the broker is
        # away and the relay retries until it answers.
        if self._producer is None:
            producer = AIOKafkaProducer(
                **aiokafka_options(self.settings),
                acks="all",
                enable_idempotence=self.settings.idempotent_producer,
                linger_ms=self.linger_ms,
                max_batch_size=MAX_BATCH_BYTES,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _publish(self, records: Sequence[Record]) -> None:
        producer = await self._started()
        if self._in_flight is not None:
            # A call that gave up left these: they go first, or fail first.
            with contextlib.suppress(KafkaError):
                await asyncio.shield(self._in_flight)
            self._in_flight = None
        counts = {
            topic: len(await producer.partitions_for(topic))
            for topic in {record.topic for record in records}
        }

        open_batches: dict[tuple[str, int], Any] = {}
        sent = []
        for record in records:
            partition = self._partition_of(record.key, counts[record.topic])
            where = (record.topic, partition)
            batch = open_batches.get(where)
            if batch is None:
                batch = open_batches[where] = producer.create_batch()
            if batch.append(key=record.key, value=record.value, timestamp=None):
                continue
            # Full: send it and start the next batch of this partition.
            sent.append(await self._send(producer, batch, where))
            batch = open_batches[where] = producer.create_batch()
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                raise BrokerUnavailableError(
                    f"a record of {len(record.value)} bytes for {record.topic}"
                    f" exceeds the largest batch of {MAX_BATCH_BYTES} bytes"
                )
        for where, batch in open_batches.items():
            sent.append(await self._send(producer, batch, where))
        # Shielded: a caller that gives up cancels the wait, not the batches.
        self._in_flight = asyncio.gather(*sent)
        await asyncio.shield(self._in_flight)
        self._in_flight = None

    @staticmethod
    async def _send(
        producer: AIOKafkaProducer, batch: Any, where: tuple[str, int]
    ) -> asyncio.Future[Any]:
        batch.close()
        topic, partition = where
        sent: asyncio.Future[Any] = await producer.send_batch(
            batch, topic, partition=partition
        )
        return sent

    def _partition_of(self, key: bytes | None, partitions: int) -> int:
        if key is None:
            return next(self._unkeyed) % partitions
        return _positive_hash(key) % partitions


# The relay sends several events of one person in a row, and aiokafka's
# murmur2 is written in Python: each recent key is hashed once.
@functools.lru_cache(maxsize=65536)
def _positive_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def aiokafka_options(settings: KafkaSettings) -> dict[str, Any]:
    """Return the connection options of an aiokafka client, TLS and SASL included."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.servers,
        "security_protocol": settings.security_protocol,
        "client_id": "mentorflow",
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.ssl_cafile) if settings.ssl_cafile else None
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if settings.sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options
