"""The outbox relay on PostgreSQL: rows leave only once the broker took them all."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest

from infra.kafka import BrokerUnavailableError
from infra.publisher import BatchPublisher, Record
from infra.store import Store
from workers.relay import OutboxRelay

ROWS = [("members", "p-1", {"n": 1}), ("members", "p-2", {"n": 2}), ("dlq", None, {})]


class Publisher:
    """Takes every batch, unless the broker refuses it or does not answer."""

    def __init__(self, refuses: bool = False) -> None:
        self.refuses = refuses
        self.sent: list[tuple[str, str | None, dict[str, Any]]] = []

    def publish(
        self,
        records: Sequence[Record],
        timeout_s: float = 30.0,
        on_slow: Callable[[str], None] | None = None,
    ) -> None:
        if self.refuses:
            raise BrokerUnavailableError("kafka did not acknowledge within 30 s")
        self.sent += [
            (r.topic, None if r.key is None else r.key.decode(), json.loads(r.value))
            for r in records
        ]


def relay(store: Store, publisher: Publisher) -> OutboxRelay:
    return OutboxRelay(store, cast(BatchPublisher, publisher))


def fill_outbox(store: Store) -> None:
    with store.transaction() as tx:
        for topic, key, payload in ROWS:
            tx.enqueue(topic, key, payload)


def backlog(store: Store) -> int:
    with store.transaction() as tx:
        return tx.outbox_backlog()


def test_rows_stay_in_the_outbox_unless_the_broker_acknowledged_every_one(
    store: Store,
) -> None:
    fill_outbox(store)

    with pytest.raises(BrokerUnavailableError):
        relay(store, Publisher(refuses=True)).relay_once()

    assert backlog(store) == len(ROWS)
    # The next attempt publishes them all again, in the order written.
    again = Publisher()
    assert relay(store, again).relay_once() == len(ROWS)
    assert again.sent == ROWS
    assert backlog(store) == 0
