"""The batch publisher on Apache Kafka: placement, order, and a broker outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.kafka import (
    BrokerUnavailableError,
    client_options,
    ensure_topics,
    make_producer,
)
from infra.kafka_broker import ApacheKafkaBroker
from infra.publisher import BatchPublisher, Record
from infra.settings import KafkaSettings


@pytest.fixture
def publisher(kafka_settings: KafkaSettings) -> Iterator[BatchPublisher]:
    publisher = BatchPublisher(kafka_settings)
    yield publisher
    publisher.close()


def read_topic(
    settings: KafkaSettings, topic: str, count: int, timeout_s: float = 60
) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """Every record of topic by partition, in offset order, once count arrived."""
    consumer = KafkaConsumer(
        **client_options(settings), group_id=None, auto_offset_reset="earliest"
    )
    partitions = [
        TopicPartition(topic, partition)
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    found: dict[int, list[tuple[bytes | None, bytes]]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while sum(map(len, found.values())) < count and time.monotonic() < deadline:
            for where, messages in consumer.poll(timeout_ms=200).items():
                found.setdefault(where.partition, []).extend(
                    (message.key, message.value) for message in messages
                )
    finally:
        consumer.close()
    return found


def test_records_land_where_kafka_python_puts_their_key_in_the_order_given(
    kafka_settings: KafkaSettings, publisher: BatchPublisher
) -> None:
    topic = kafka_settings.membership_topic
    keys = [f"person-{n % 40}".encode() for n in range(3000)]
    records = [Record(topic, key, b"%d" % n) for n, key in enumerate(keys)]
    # Records larger than a batch's room push the publisher to split batches.
    records.append(Record(topic, b"person-1", b"x" * 900_000))
    records.append(Record(topic, b"person-1", b"last"))

    publisher.publish(records[:1500])
    publisher.publish(records[1500:])

    found = read_topic(kafka_settings, topic, len(records))
    producer = make_producer(kafka_settings)
    try:
        # The reference placement: kafka-python's, as the import command sends.
        reference = {
            key: producer.send(topic, key=key.decode(), value=b"").get(30).partition
            for key in set(keys)
        }
    finally:
        producer.close()
    placed = {key: partition for partition, rows in found.items() for key, _ in rows}
    assert placed == reference
    for key in set(keys):
        values = [
            value for k, value in found[reference[key]] if k == key and value != b""
        ]
        expected = [record.value for record in records if record.key == key]
        assert values == expected


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[ApacheKafkaBroker]:
    """A broker of this test's own, since the test stops it."""
    broker = ApacheKafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


def test_a_publish_outlives_a_broker_outage_and_says_it_is_slow(
    own_broker: ApacheKafkaBroker, kafka_settings: KafkaSettings
) -> None:
    settings = kafka_settings.model_copy(update={"bootstrap": own_broker.bootstrap})
    ensure_topics(settings)
    topic = settings.membership_topic
    publisher = BatchPublisher(settings)
    slow: list[str] = []
    try:
        publisher.publish([Record(topic, b"k", b"before")])
        own_broker.stop()
        # The broker comes back while the publish below waits for it.
        restart = threading.Timer(6.0, own_broker.start)
        restart.start()

        publisher.publish(
            [Record(topic, b"k", b"during")],
            timeout_s=90,
            on_slow=slow.append,
            slow_after_s=1.0,
        )
        restart.join()
    finally:
        publisher.close()

    assert len(slow) == 1
    assert "has not acknowledged 1 records within 1 s" in slow[0]
    found = read_topic(settings, topic, 2)
    assert [value for rows in found.values() for _, value in rows] == [
        b"before",
        b"during",
    ]


def test_publishes_that_give_up_leave_one_copy_that_goes_first(
    own_broker: ApacheKafkaBroker, kafka_settings: KafkaSettings
) -> None:
    settings = kafka_settings.model_copy(update={"bootstrap": own_broker.bootstrap})
    ensure_topics(settings)
    topic = settings.membership_topic
    publisher = BatchPublisher(settings)
    try:
        publisher.publish([Record(topic, b"k", b"before")])
        own_broker.stop()
        # Two tries give up; the second waits on the first's records.
        for _ in range(2):
            with pytest.raises(BrokerUnavailableError, match="did not acknowledge"):
                publisher.publish([Record(topic, b"k", b"first try")], timeout_s=2)
        own_broker.start()

        publisher.publish([Record(topic, b"k", b"first try")], timeout_s=90)
    finally:
        publisher.close()

    found = read_topic(settings, topic, 3)
    assert [value for rows in found.values() for _, value in rows] == [
        b"before",
        b"first try",
        b"first try",
    ]
