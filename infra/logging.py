"""Logging configuration, applied once at start-up by the entry point."""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.errors import MentorflowError

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The fields a JSON line carries when a record has them, from ``extra=`` or
# from the event being handled. Only identifiers: a log line never carries a
# person's attributes.
CONTEXT_FIELDS = (
    "event_id",
    "topic",
    "partition",
    "offset",
    "first_offset",
    "last_offset",
    "offset_ranges",
    "person_id",
    "rule_id",
    "sweep_id",
)

_event_context: ContextVar[dict[str, Any] | None] = ContextVar(
    "mentorflow_log_context", default=None
)


def describe_failure(error: BaseException) -> str:
    """Say what failed and where, in words that carry none of the data processed.

    mentorflow's own errors name ids only, so their messages are kept. Other
    exceptions may quote the values being processed (a database error's
    detail, a KeyError's key), so they are named by their type and the
    innermost frame; the whole traceback is logged at debug level only.
    """
    if isinstance(error, MentorflowError):
        return f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return type(error).__name__
    last = frames[-1]
    return f"{type(error).__name__} at {Path(last.filename).name}:{last.lineno}"


def current_log_fields() -> dict[str, Any]:
    """Return the fields log_context attached to the records logged here."""
    return dict(_event_context.get() or {})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields to every record logged in the block, threads it starts included.

    ``asyncio.to_thread`` copies the context, so records logged by a handler
    run in a thread carry the fields of the event it handles.
    """
    current = _event_context.get() or {}
    token = _event_context.set(current | fields)
    try:
        yield
    finally:
        _event_context.reset(token)


def batch_fields(positions: Iterable[tuple[str, int, int]]) -> dict[str, Any]:
    """Return the log fields of a batch of records, given (topic, partition, offset).

    ``offset_ranges`` maps each partition to its first and last offset. A batch
    from one partition also gets ``partition``, ``first_offset`` and
    ``last_offset``, so that its lines are found like those of a single record.
    """
    ranges: dict[int, tuple[int, int]] = {}
    topics = set()
    for topic, partition, offset in positions:
        topics.add(topic)
        first, last = ranges.get(partition, (offset, offset))
        ranges[partition] = (min(first, offset), max(last, offset))
    if not ranges:
        return {}

    fields: dict[str, Any] = {
        "topic": ",".join(sorted(topics)),
        "offset_ranges": {str(p): list(ranges[p]) for p in sorted(ranges)},
    }
    if len(ranges) == 1:
        ((partition, (first, last)),) = ranges.items()
        fields |= {"partition": partition, "first_offset": first, "last_offset": last}
    return fields


@contextmanager
def silenced(name: str, enabled: bool = True) -> Iterator[None]:
    """Drop the records of a logger, and of children with no level, in the block.

    For one-shot commands that report a library's failure in their own words;
    the logger's level is restored on the way out.
    """
    target = logging.getLogger(name)
    previous = target.level
    if enabled:
        target.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        target.setLevel(previous)


class ContextFilter(logging.Filter):
    """Copies the fields of the current log context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the context's fields that the record does not set itself."""
        for name, value in (_event_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the fields of the record that matter."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line."""
        entry: dict[str, Any] = {
            # With its offset and milliseconds: lines from hosts in other zones,
            # or several in one second, still sort in the order they were logged.
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str = "INFO", log_format: str = "text") -> dict[str, Any]:
    """Return a dictConfig for the root logger at level, as text or JSON."""
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {"()": JsonFormatter}
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"context": {"()": ContextFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # The Kafka clients are chatty at info level about every connection; while
        # a broker is away they still log thousands of errors a minute.
        "loggers": {
            "kafka": {"level": "WARNING"},
            "aiokafka": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Configure the root logger; call once, from the entry point."""
    logging.config.dictConfig(logging_config(level, log_format))
