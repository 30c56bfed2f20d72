"""Lag per partition from committed, beginning and end offsets; bounded reads."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import GroupAuthorizationFailedError, KafkaTimeoutError

from infra.kafka import BrokerUnavailableError
from infra.lag import LagReader, PartitionLag, partition_lags, total_lag
from infra.settings import KafkaSettings

P0 = ("hr.person-events", 0)
P1 = ("hr.person-events", 1)
C0 = ("mentorflow.config", 0)


@pytest.mark.parametrize(
    ("committed", "beginning", "end", "expected_committed", "expected_lag"),
    [
        ({P0: 7}, {P0: 0}, {P0: 10}, 7, 3),
        ({P0: 10}, {P0: 0}, {P0: 10}, 10, 0),
        # No commit yet: lag counts from the beginning, where the group starts.
        ({}, {P0: 4}, {P0: 10}, None, 6),
        ({P0: -1}, {P0: 0}, {P0: 5}, None, 5),
        # A stale end offset never makes the lag negative.
        ({P0: 12}, {P0: 0}, {P0: 10}, 12, 0),
        ({}, {}, {}, None, 0),
    ],
)
def test_partition_lag_counts_from_the_commit_or_else_the_beginning(
    committed, beginning, end, expected_committed, expected_lag
):
    (lag,) = partition_lags([P0], committed, beginning, end)

    assert lag == PartitionLag(
        P0[0], P0[1], expected_committed, end.get(P0, 0), expected_lag
    )


def test_partitions_come_sorted_once_each_and_the_total_adds_them_up():
    lags = partition_lags(
        [C0, P1, P0, P1],
        {P0: 1, P1: 2, C0: 0},
        {P0: 0, P1: 0, C0: 0},
        {P0: 4, P1: 2, C0: 1},
    )

    assert [(lag.topic, lag.partition, lag.lag) for lag in lags] == [
        ("hr.person-events", 0, 3),
        ("hr.person-events", 1, 0),
        ("mentorflow.config", 0, 1),
    ]
    assert total_lag(lags) == 4
    assert total_lag([]) == 0


def unreachable_reader(timeout_s: float) -> LagReader:
    kafka = KafkaSettings(bootstrap="127.0.0.1:9", consumer_group="g")
    return LagReader(kafka, "g", ["hr.person-events"], timeout_s=timeout_s)


def test_the_timeout_reaches_every_option_that_bounds_a_client():
    reader = unreachable_reader(timeout_s=4)

    options = reader._options(time.monotonic() + 4)

    assert 3000 < options["bootstrap_timeout_ms"] <= 4000
    assert options["request_timeout_ms"] == 4000
    assert options["reconnect_backoff_max_ms"] <= 1000
    # An option kafka-python does not know would fail at the first read.
    assert set(options) <= set(KafkaAdminClient.DEFAULT_CONFIG)
    assert set(options) <= set(KafkaConsumer.DEFAULT_CONFIG)


def test_a_short_timeout_still_gives_the_consumer_a_valid_request_timeout():
    options = unreachable_reader(timeout_s=0.2)._options(time.monotonic() + 0.2)

    # The consumer refuses a request timeout that is not above its fetch wait.
    assert (
        options["request_timeout_ms"]
        > KafkaConsumer.DEFAULT_CONFIG["fetch_max_wait_ms"]
    )
    assert 0 < options["bootstrap_timeout_ms"] <= 200


def test_a_read_retries_until_its_timeout_then_names_the_bootstrap(monkeypatch):
    reader = unreachable_reader(timeout_s=1.5)
    calls = []

    def refuse(deadline: float) -> list[PartitionLag]:
        calls.append(deadline)
        raise KafkaTimeoutError("Unable to bootstrap")

    monkeypatch.setattr(reader, "_read", refuse)

    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as failed:
        reader.read()

    assert time.monotonic() - started < 1.5
    assert len(calls) == 2
    assert len(set(calls)) == 1
    assert "from kafka at 127.0.0.1:9 failed after" in str(failed.value)
    assert "2 tries (timeout 1.5 s)" in str(failed.value)


def test_an_error_that_retrying_cannot_fix_fails_the_read_at_once(monkeypatch):
    reader = unreachable_reader(timeout_s=30)

    def refuse(deadline: float) -> list[PartitionLag]:
        raise GroupAuthorizationFailedError()

    monkeypatch.setattr(reader, "_read", refuse)

    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="1 try"):
        reader.read()
    assert time.monotonic() - started < 1


def test_an_unreachable_cluster_fails_the_read_within_its_timeout_leaving_no_thread(
    free_port,
):
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{free_port}")
    threads = threading.active_count()

    started = time.monotonic()
    with (
        LagReader(kafka, "g", ["hr.person-events"], timeout_s=1) as reader,
        pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{free_port}"),
    ):
        reader.read()

    assert time.monotonic() - started < 3
    assert threading.active_count() <= threads
