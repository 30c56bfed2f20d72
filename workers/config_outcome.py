"""Publishing a config event and telling the admin what the worker made of it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from infra.kafka import make_producer
from infra.settings import Settings
from infra.store import SourcePosition, Store
from schemas.config import CONFIG_KEY, ConfigEvent
from workers.engine import dead_letter_id
from workers.errors import WorkerError

logger = logging.getLogger(__name__)


# Exit statuses of the commands that publish config events, for scripts.
EXIT_STATUS = {"applied": 0, "published": 0, "rejected": 1, "held": 4, "pending": 5}


@dataclass(frozen=True)
class ConfigOutcome:
    """How the worker handled a published config event."""

    # "applied", "held", "rejected", "pending" (no verdict in time), or
    # "published" when the caller chose not to wait for one.
    kind: str
    detail: str = ""


def publish_config(
    settings: Settings, store: Store, event: ConfigEvent, wait_s: float
) -> ConfigOutcome:
    """Publish one config event; wait up to wait_s for the worker's verdict.

    A worker applies config events asynchronously: without waiting, a change the
    worker rejects or holds would look published and done. A wait_s of 0 asks
    for no verdict: the outcome is then "published".
    """
    kafka = settings.kafka
    producer = make_producer(kafka)
    try:
        future = producer.send(
            kafka.config_topic,
            key=CONFIG_KEY,
            value=event.model_dump(mode="json", by_alias=True),
        )
        metadata = future.get(timeout=60)
    except Exception as error:
        raise WorkerError(
            f"publishing to {kafka.config_topic} failed: {error}"
        ) from error
    finally:
        producer.close()
    if wait_s == 0:
        return ConfigOutcome("published")
    source = SourcePosition(kafka.config_topic, metadata.partition, metadata.offset)
    return await_outcome(store, event.event_id, dead_letter_id(source), wait_s)


def await_outcome(
    store: Store, event_id: str, letter_id: str, wait_s: float
) -> ConfigOutcome:
    """Poll the store until the event or its dead letter is processed."""
    deadline = time.monotonic() + wait_s
    while True:
        with store.transaction() as tx:
            outcome = tx.outcome_of(event_id)
            if outcome == "held":
                (report,) = [r for e, r, _ in tx.held_configs() if e == event_id] or [
                    {}
                ]
                removals = ", ".join(
                    f"{figures['removals']} of {figures['members']} members of"
                    f" {program_id}"
                    for program_id, figures in report.items()
                )
                return ConfigOutcome("held", removals)
            if outcome is not None:
                return ConfigOutcome("applied")
            if tx.outcome_of(letter_id) is not None:
                detail = tx.audit_detail("dead_letter", letter_id) or {}
                return ConfigOutcome("rejected", str(detail.get("error", "")))
        if time.monotonic() > deadline:
            return ConfigOutcome("pending")
        time.sleep(0.2)


def describe_outcome(outcome: ConfigOutcome, event_id: str, what: str) -> str:
    """One sentence for the admin on what became of a config event."""
    if outcome.kind == "applied":
        return f"applied {what}"
    if outcome.kind == "rejected":
        return f"the worker rejected {what}: {outcome.detail}"
    if outcome.kind == "published":
        return (
            f"published {what} as event {event_id}, without waiting for the"
            " worker's verdict; `mentorflow held` lists it if it was held"
        )
    if outcome.kind == "held":
        return (
            f"held {what}: it would remove {outcome.detail}; if that is meant,"
            f" run `mentorflow confirm {event_id}`"
        )
    return (
        f"published {what} as event {event_id}, but no worker processed it yet;"
        " is a worker running?"
    )
