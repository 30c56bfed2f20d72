"""Consumer-group lag: committed offset, end offset and lag of each partition.

On the embedded ``tansu`` broker, ListOffsets "latest" answers the first offset
of the last batch plus one, so end offsets and lag read low whenever a batch
holds several records; the figures are exact on Apache Kafka only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from infra.errors import InfraError
from infra.kafka import BrokerUnavailableError, client_options
from infra.settings import KafkaSettings

logger = logging.getLogger(__name__)

# A committed offset of -1 means the group holds no commit for the partition.
NO_COMMIT = -1
# How long one read may take, connecting included, unless told otherwise.
DEFAULT_TIMEOUT_S = 10.0
RETRY_DELAY_S = 0.5
# kafka-python backs reconnections off up to 30 s by default, so a bounded read
# would try a refused bootstrap only once or twice.
RECONNECT_BACKOFF_MAX_MS = 1000
# The consumer refuses a request timeout that is not above its fetch wait.
MIN_REQUEST_TIMEOUT_MS = 1000


class UnknownTopicError(InfraError):
    """The cluster answered, but has no topic of that name."""


@dataclass(frozen=True, order=True)
class PartitionLag:
    """How far a consumer group is behind on one topic partition."""

    topic: str
    partition: int
    # None when the group never committed here; lag then counts from the
    # partition's beginning offset, which is where "earliest" reset starts.
    committed: int | None
    end: int
    lag: int


def partition_lags(
    partitions: Iterable[tuple[str, int]],
    committed: Mapping[tuple[str, int], int],
    beginning: Mapping[tuple[str, int], int],
    end: Mapping[tuple[str, int], int],
) -> list[PartitionLag]:
    """Return the lag of each partition, sorted by topic then partition.

    A partition missing from ``committed`` (or committed at -1) counts its lag
    from its beginning offset. Lag is never negative: a commit can run ahead of
    a stale end offset.
    """
    lags = []
    for topic, partition in sorted(set(partitions)):
        key = (topic, partition)
        last_end = end.get(key, 0)
        offset = committed.get(key, NO_COMMIT)
        start = offset if offset > NO_COMMIT else beginning.get(key, 0)
        lags.append(
            PartitionLag(
                topic=topic,
                partition=partition,
                committed=offset if offset > NO_COMMIT else None,
                end=last_end,
                lag=max(0, last_end - start),
            )
        )
    return lags


def total_lag(lags: Iterable[PartitionLag]) -> int:
    """Return the sum of the lags: records the group has yet to consume."""
    return sum(lag.lag for lag in lags)


class LagReader:
    """Reads one consumer group's lag on some topics; keeps its clients open.

    Raises BrokerUnavailableError from ``read`` when the cluster does not
    answer within ``timeout_s``; the next ``read`` tries again with the clients
    it has. A single request of a read can still take up to ``timeout_s``, so a
    read that connects but then stalls may overrun the timeout by that much.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        self.settings = settings
        self.group_id = group_id
        self.topics = tuple(topics)
        self.timeout_s = timeout_s
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def for_worker(
        cls, settings: KafkaSettings, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> LagReader:
        """Return a reader of the worker group's lag on its input topics."""
        topics = (settings.person_topic, settings.config_topic)
        return cls(settings, settings.consumer_group, topics, timeout_s)

    def read(self) -> list[PartitionLag]:
        """Return the lag of every partition of the topics, within the timeout."""
        started = time.monotonic()
        deadline = started + self.timeout_s
        attempt = 1
        while True:
            try:
                return self._read(deadline)
            except KafkaError as error:
                delay_s = RETRY_DELAY_S * attempt
                # A cluster that never hosted a group answers "coordinator not
                # available" while it creates its offsets topic.
                if not error.retriable or time.monotonic() + delay_s >= deadline:
                    raise self._failure(error, attempt, started) from error
            time.sleep(delay_s)
            attempt += 1

    def _failure(
        self, error: KafkaError, attempt: int, started: float
    ) -> BrokerUnavailableError:
        elapsed_s = time.monotonic() - started
        tries = "1 try" if attempt == 1 else f"{attempt} tries"
        return BrokerUnavailableError(
            f"reading the lag of group {self.group_id!r} from kafka at"
            f" {self.settings.bootstrap} failed after {elapsed_s:.1f} s and {tries}"
            f" (timeout {self.timeout_s:g} s): {error!r}"
        )

    def _read(self, deadline: float) -> list[PartitionLag]:
        admin, consumer = self._clients(deadline)
        partitions = self._partitions(consumer)
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        offsets = admin.list_group_offsets(self.group_id).get(self.group_id, {})
        beginning = consumer.beginning_offsets(tps, _remaining_ms(deadline))
        end = consumer.end_offsets(tps, _remaining_ms(deadline))
        return partition_lags(
            partitions,
            {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()},
            {(tp.topic, tp.partition): offset for tp, offset in beginning.items()},
            {(tp.topic, tp.partition): offset for tp, offset in end.items()},
        )

    def close(self) -> None:
        """Close the clients."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> LagReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _clients(self, deadline: float) -> tuple[KafkaAdminClient, KafkaConsumer]:
        # Both clients connect in their constructor, each for up to its
        # bootstrap timeout, so each gets what is left of the read's time.
        if self._admin is None:
            self._admin = _connected(KafkaAdminClient, **self._options(deadline))
        if self._consumer is None:
            # No group: this consumer only asks for offsets, it never joins
            # the worker group or commits for it.
            self._consumer = _connected(
                KafkaConsumer,
                **self._options(deadline),
                group_id=None,
                enable_auto_commit=False,
            )
        return self._admin, self._consumer

    def _options(self, deadline: float) -> dict[str, Any]:
        request_timeout_ms = max(MIN_REQUEST_TIMEOUT_MS, int(self.timeout_s * 1000))
        return client_options(self.settings) | {
            "bootstrap_timeout_ms": _remaining_ms(deadline),
            "request_timeout_ms": request_timeout_ms,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }

    def _partitions(self, consumer: KafkaConsumer) -> list[tuple[str, int]]:
        partitions: list[tuple[str, int]] = []
        missing = []
        for topic in self.topics:
            # kafka-python answers an empty set for a topic the cluster lacks.
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                missing.append(topic)
                continue
            partitions.extend((topic, number) for number in numbers)
        if missing:
            # A lag of 0 over no partitions would pass any --max-lag check, with
            # a misspelt topic or the wrong cluster.
            noun = "topic" if len(missing) == 1 else "topics"
            raise UnknownTopicError(
                f"kafka at {self.settings.bootstrap} has no {noun}"
                f" {', '.join(map(repr, missing))}; check the topic settings"
                " (MENTORFLOW_KAFKA_*_TOPIC), or start a worker, which creates them"
            )
        return partitions


def _connected(factory: Any, **options: Any) -> Any:
    """Build a kafka-python client, stopping its IO thread when it cannot connect.

    kafka-python 3.0 starts a client's IO thread in the constructor before it
    bootstraps, and leaves the thread running when bootstrapping fails: a worker
    reading the lag while the cluster is away would leak one thread a try.
    """
    client = factory.__new__(factory)
    try:
        client.__init__(**options)
    except BaseException:
        network_client = getattr(client, "_client", None)
        if network_client is not None:
            network_client.close()
        io_loop = getattr(client, "_net", None)
        if io_loop is not None:
            io_loop.stop()
        raise
    return client


def _remaining_ms(deadline: float) -> int:
    # At least 1 ms: parts of kafka-python read a timeout of 0 as "the default".
    return max(1, int((deadline - time.monotonic()) * 1000))
