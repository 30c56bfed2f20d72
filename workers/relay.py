"""The outbox relay: publishes committed events to Kafka, in commit order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from infra.publisher import BatchPublisher, Record
from infra.store import RELAY_LOCK_KEY, OutboxRow, Store
from schemas.errors import MentorflowError
from workers.retry import backoff_s

logger = logging.getLogger(__name__)


class OutboxRelay:
    """Moves outbox rows to their topics, at least once and in order.

    Rows are deleted only after the broker acknowledged every one of them, in
    the same transaction that read them; a crash in between publishes them
    again with the same event ids, which consumers drop. One relay runs at a
    time across all workers (an advisory lock), so events of one person leave
    in the order they were decided.
    """

    def __init__(
        self,
        store: Store,
        publisher: BatchPublisher,
        batch_size: int = 500,
        on_published: Callable[[Sequence[OutboxRow]], None] | None = None,
        on_slow: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.batch_size = batch_size
        # Told of each batch once the broker acknowledged it and its rows left
        # the outbox; the worker counts membership events with it.
        self.on_published = on_published
        # Told, with the reason, when the broker is slow to acknowledge a
        # batch (probably away); the worker reports itself degraded with it.
        self.on_slow = on_slow

    def relay_once(self, timeout_s: float = 30.0) -> int:
        """Publish one batch; return how many events left the outbox."""
        with self.store.transaction() as tx:
            if not tx.try_lock(RELAY_LOCK_KEY):
                return 0
            rows = tx.fetch_outbox(self.batch_size)
            if not rows:
                return 0
            records = [
                Record(
                    row.topic,
                    None if row.key is None else row.key.encode(),
                    row.payload,
                )
                for row in rows
            ]
            # A record the broker refuses as too large fails every round, so the
            # outbox stalls behind it until the broker takes larger records.
            self.publisher.publish(records, timeout_s, on_slow=self.on_slow)
            # Losing this deletion in a server crash only publishes the rows
            # again, with the same ids: the commit need not wait for the disk.
            tx.conn.execute("SET LOCAL synchronous_commit = off")
            tx.delete_outbox([row.id for row in rows])
        logger.debug("relayed outbox events count=%d", len(rows))
        if self.on_published is not None:
            self.on_published(rows)
        return len(rows)

    def drain(self) -> int:
        """Publish until the outbox is empty; return how many were published."""
        total = 0
        while sent := self.relay_once():
            total += sent
        return total


def relay_until_stopped(
    relay: OutboxRelay, stop: threading.Event, interval_s: float
) -> int:
    """Publish the outbox until stop is set; return how many events were published.

    Polls every interval_s while the outbox is empty. Retriable failures
    (database or broker away) are retried with backoff and logged; anything
    else propagates.
    """
    total = failures = 0
    while not stop.is_set():
        try:
            sent = relay.relay_once()
        except MentorflowError as error:
            if not error.retriable:
                raise
            failures += 1
            logger.warning("relay failed attempt=%d: %s", failures, error)
            stop.wait(backoff_s(failures))
            continue
        if failures:
            logger.warning("relay recovered after attempts=%d", failures)
            failures = 0
        total += sent
        if not sent:
            stop.wait(interval_s)
    return total
