"""The producer's partitioner places keyed records as Kafka's default does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from infra.kafka import KeyedPartitioner


class Cluster:
    """The part of kafka-python's cluster metadata a partitioner reads."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@given(key=st.binary(max_size=40), partitions=st.integers(1, 64))
def test_a_keyed_record_goes_where_the_default_partitioner_puts_it(
    key: bytes, partitions: int
) -> None:
    cluster = Cluster(partitions)
    expected = DefaultPartitioner().partition("t", None, key, None, None, cluster)
    keyed = KeyedPartitioner()
    assert keyed.partition("t", None, key, None, None, cluster) == expected
    # Asked again, from its memory of the key.
    assert keyed.partition("t", None, key, None, None, cluster) == expected


def test_an_unkeyed_record_goes_to_some_partition() -> None:
    cluster = Cluster(6)
    found = KeyedPartitioner().partition("t", None, None, None, b"{}", cluster)
    assert found in cluster.partitions
