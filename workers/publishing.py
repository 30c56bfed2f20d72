"""Publishing input events, and waiting until the worker has processed them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kafka import KafkaConsumer
from rich.console import Console
from rich.progress import Progress

from infra.kafka import JsonDeserializer, client_options
from infra.settings import KafkaSettings
from infra.store import Store
from schemas.common import EventBase
from workers.errors import WorkerError

logger = logging.getLogger(__name__)


def publish_events(
    producer: Any,
    topic: str,
    keyed_events: Sequence[tuple[str, EventBase]],
    description: str | None = None,
) -> list[str]:
    """Publish events in order, with a progress bar; return their ids.

    Raises WorkerError when the broker does not acknowledge every event.
    """
    futures = []
    console = Console(stderr=True)
    show = description is not None and console.is_terminal
    with Progress(console=console, transient=True, disable=not show) as progress:
        task = progress.add_task(description or "", total=len(keyed_events))
        for key, event in keyed_events:
            payload = event.model_dump(mode="json", by_alias=True)
            futures.append(producer.send(topic, key=key, value=payload))
            progress.advance(task)
        producer.flush(timeout=60)
    for future in futures:
        try:
            future.get(timeout=60)
        except Exception as error:
            raise WorkerError(f"publishing to {topic} failed: {error}") from error
    return [event.event_id for _, event in keyed_events]


def wait_until_processed(
    store: Store,
    event_ids: Sequence[str],
    timeout_s: float = 120.0,
    is_worker_alive: Callable[[], bool] = lambda: True,
) -> None:
    """Block until the store has processed every event id.

    Raises WorkerError on timeout or when the worker stops meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with store.transaction() as tx:
            done = tx.count_processed(event_ids)
        if done == len(event_ids):
            return
        if not is_worker_alive():
            raise WorkerError(f"the worker stopped after {done} of {len(event_ids)}")
        if time.monotonic() > deadline:
            raise WorkerError(
                f"only {done} of {len(event_ids)} events processed after"
                f" {timeout_s:.0f} s"
            )
        time.sleep(0.1)


def wait_until_outbox_empty(
    store: Store,
    timeout_s: float = 60.0,
    is_worker_alive: Callable[[], bool] = lambda: True,
) -> None:
    """Block until the relay has published everything in the outbox."""
    deadline = time.monotonic() + timeout_s
    while True:
        with store.transaction() as tx:
            backlog = tx.outbox_backlog()
        if backlog == 0:
            return
        if not is_worker_alive() or time.monotonic() > deadline:
            raise WorkerError(f"{backlog} events still wait in the outbox")
        time.sleep(0.1)


def read_topic(
    settings: KafkaSettings, topic: str, idle_timeout_s: float = 3.0
) -> list[dict[str, Any]]:
    """Return every record of a topic as JSON, reading until it stays idle.

    Reads without a consumer group and does not rely on end offsets, which
    the embedded broker reports wrongly.
    """
    consumer = KafkaConsumer(
        topic,
        **client_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
        value_deserializer=JsonDeserializer(),
    )
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


def keyed_by_person(events: Iterable[Any]) -> list[tuple[str, EventBase]]:
    """Pair each person event with its key, the person id."""
    return [(event.person_id, event) for event in events]
