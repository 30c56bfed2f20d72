"""The outbox relay on PostgreSQL: rows leave only once the broker took them all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from infra.kafka import BrokerUnavailableError
from infra.store import Store
from workers.relay import OutboxRelay

ROWS = [("members", "p-1", {"n": 1}), ("members", "p-2", {"n": 2}), ("dlq", None, {})]


class Acknowledgement:
    """The future of one send: the broker's answer, given when asked."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class Producer:
    """Takes every send; the broker refuses those numbered in refused."""

    def __init__(
        self, refused: frozenset[int] = frozenset(), flush_fails: bool = False
    ) -> None:
        self.refused = refused
        self.flush_fails = flush_fails
        self.sent: list[tuple[str, str | None, dict[str, Any]]] = []

    def send(self, topic: str, key: str | None, value: bytes) -> Acknowledgement:
        self.sent.append((topic, key, json.loads(value)))
        refused = len(self.sent) - 1 in self.refused
        return Acknowledgement(KafkaTimeoutError("no answer") if refused else None)

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_fails:
            raise KafkaTimeoutError("flush timed out")


def fill_outbox(store: Store) -> None:
    with store.transaction() as tx:
        for topic, key, payload in ROWS:
            tx.enqueue(topic, key, payload)


def backlog(store: Store) -> int:
    with store.transaction() as tx:
        return tx.outbox_backlog()


@pytest.mark.parametrize(
    "producer",
    [Producer(refused=frozenset({1})), Producer(flush_fails=True)],
    ids=["one send refused", "flush timed out"],
)
def test_rows_stay_in_the_outbox_unless_the_broker_acknowledged_every_one(
    store: Store, producer: Producer
) -> None:
    fill_outbox(store)

    with pytest.raises(BrokerUnavailableError):
        OutboxRelay(store, producer).relay_once()

    assert backlog(store) == len(ROWS)
    # The next attempt publishes them all again, in the order written.
    again = Producer()
    assert OutboxRelay(store, again).relay_once() == len(ROWS)
    assert again.sent == ROWS
    assert backlog(store) == 0
