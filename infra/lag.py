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

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from infra.kafka import BrokerUnavailableError, client_options
from infra.settings import KafkaSettings

logger = logging.getLogger(__name__)

# A committed offset of -1 means the group holds no commit for the partition.
NO_COMMIT = -1
READ_ATTEMPTS = 5
RETRY_DELAY_S = 0.5


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
    answer; the next ``read`` tries again with the same clients.
    """

    def __init__(self, settings: KafkaSettings, group_id: str, topics: Sequence[str]):
        self.settings = settings
        self.group_id = group_id
        self.topics = tuple(topics)
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def for_worker(cls, settings: KafkaSettings) -> LagReader:
        """Return a reader of the worker group's lag on its input topics."""
        topics = (settings.person_topic, settings.config_topic)
        return cls(settings, settings.consumer_group, topics)

    def read(self) -> list[PartitionLag]:
        """Return the lag of every partition of the topics."""
        attempt = 1
        while True:
            try:
                return self._read()
            except KafkaError as error:
                # A cluster that never hosted a group answers "coordinator not
                # available" while it creates its offsets topic.
                if not error.retriable or attempt >= READ_ATTEMPTS:
                    raise BrokerUnavailableError(
                        f"reading the lag of group {self.group_id!r} failed"
                        f" after {attempt} attempts: {error!r}"
                    ) from error
            time.sleep(RETRY_DELAY_S * attempt)
            attempt += 1

    def _read(self) -> list[PartitionLag]:
        admin, consumer = self._clients()
        partitions = self._partitions(consumer)
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        offsets = admin.list_group_offsets(self.group_id).get(self.group_id, {})
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
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

    def _clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        options = client_options(self.settings)
        if self._admin is None:
            self._admin = KafkaAdminClient(**options)
        if self._consumer is None:
            # No group: this consumer only asks for offsets, it never joins
            # the worker group or commits for it.
            self._consumer = KafkaConsumer(
                **options, group_id=None, enable_auto_commit=False
            )
        return self._admin, self._consumer

    def _partitions(self, consumer: KafkaConsumer) -> list[tuple[str, int]]:
        partitions: list[tuple[str, int]] = []
        for topic in self.topics:
            numbers = consumer.partitions_for_topic(topic)
            if numbers is None:
                logger.warning("lag skips unknown topic topic=%s", topic)
                continue
            partitions.extend((topic, number) for number in numbers)
        return partitions
