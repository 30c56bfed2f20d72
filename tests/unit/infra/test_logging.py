"""Log lines: JSON with the handled event's position, text by default."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta

from infra.errors import DatabaseUnavailableError
from infra.logging import (
    ContextFilter,
    JsonFormatter,
    batch_fields,
    describe_failure,
    log_context,
    logging_config,
    silenced,
)


def render(logger_name: str = "test", **extra: object) -> list[dict[str, object]]:
    """Log one record through the JSON formatter and the context filter."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Capture()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("processed person_id=%s", "p-1", extra=extra)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in lines]


def test_a_json_line_carries_the_message_and_the_extra_ids():
    (entry,) = render(person_id="p-1", rule_id="r-1", department="R&D")

    assert entry["message"] == "processed person_id=p-1"
    assert entry["level"] == "info"
    assert entry["person_id"] == "p-1"
    assert entry["rule_id"] == "r-1"
    # Only identifiers are copied out of extra: never a person's attributes.
    assert "department" not in entry


def test_a_json_line_is_stamped_in_utc_to_the_millisecond(monkeypatch):
    # The process zone must not show: lines from several hosts are merged.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        before = datetime.now(UTC)
        (entry,) = render()
    finally:
        monkeypatch.undo()
        time.tzset()

    at = datetime.fromisoformat(str(entry["at"]))
    assert str(entry["at"]).endswith("+00:00")
    assert before - timedelta(milliseconds=1) <= at <= datetime.now(UTC)


def test_a_json_line_carries_the_position_of_the_event_being_handled():
    with log_context(event_id="e-1", topic="hr.person-events", partition=2, offset=41):
        (entry,) = render()

    assert (entry["event_id"], entry["topic"], entry["partition"], entry["offset"]) == (
        "e-1",
        "hr.person-events",
        2,
        41,
    )
    (outside,) = render()
    assert "event_id" not in outside


def test_the_context_reaches_records_logged_from_a_worker_thread():
    async def handle() -> list[dict[str, object]]:
        with log_context(event_id="e-2", topic="t", partition=0, offset=1):
            return await asyncio.to_thread(render)

    (entry,) = asyncio.run(handle())

    assert entry["event_id"] == "e-2"


def test_an_unknown_event_id_is_left_out_rather_than_null():
    with log_context(event_id=None, topic="t", partition=0, offset=3):
        (entry,) = render()

    assert "event_id" not in entry
    assert entry["offset"] == 3


def test_text_is_the_default_format_and_json_is_chosen_by_name():
    text = logging_config()
    as_json = logging_config("DEBUG", "json")

    assert "format" in text["formatters"]["default"]
    assert as_json["formatters"]["default"] == {"()": JsonFormatter}
    assert as_json["root"]["level"] == "DEBUG"
    assert as_json["handlers"]["stderr"]["filters"] == ["context"]


def test_a_batch_from_one_partition_is_found_like_a_single_record():
    positions = [("hr.person-events", 2, 41), ("hr.person-events", 2, 39)]

    with log_context(**batch_fields(positions)):
        (entry,) = render()

    assert entry["topic"] == "hr.person-events"
    assert entry["partition"] == 2
    assert (entry["first_offset"], entry["last_offset"]) == (39, 41)
    assert entry["offset_ranges"] == {"2": [39, 41]}
    # A batch line concerns no one record.
    assert "offset" not in entry


def test_a_batch_over_several_partitions_gives_each_partitions_range():
    fields = batch_fields([("t", 1, 7), ("t", 0, 5), ("t", 1, 9), ("t", 0, 4)])

    assert fields == {"topic": "t", "offset_ranges": {"0": [4, 5], "1": [7, 9]}}
    assert batch_fields([]) == {}


def test_a_record_of_a_batch_carries_its_own_position_and_the_batchs_range():
    with (
        log_context(**batch_fields([("t", 0, 10), ("t", 1, 3)])),
        log_context(event_id="e-3", topic="t", partition=1, offset=3),
    ):
        (entry,) = render()

    assert (entry["event_id"], entry["partition"], entry["offset"]) == ("e-3", 1, 3)
    assert entry["offset_ranges"] == {"0": [10, 10], "1": [3, 3]}


def test_a_silenced_logger_and_its_children_drop_records_until_the_block_ends():
    library = logging.getLogger("test-library")
    library.setLevel(logging.WARNING)
    # A child with no level of its own, as kafka-python's modules are.
    child = logging.getLogger("test-library.net")
    seen: list[str] = []

    def warn() -> None:
        if child.isEnabledFor(logging.WARNING):
            seen.append("warned")

    with silenced("test-library"):
        warn()
    assert seen == []
    with silenced("test-library", enabled=False):
        warn()
    assert seen == ["warned"]

    assert library.level == logging.WARNING


def test_a_failure_is_described_by_type_and_place_never_by_its_words():
    try:
        {"department": "eng"}["salary: 90000"]
    except KeyError as error:
        described = describe_failure(error)

    assert described.startswith("KeyError at test_logging.py:")
    assert "90000" not in described


def test_mentorflow_s_own_errors_keep_their_message_which_names_ids_only():
    error = DatabaseUnavailableError("postgresql failed: connection refused")

    assert describe_failure(error) == (
        "DatabaseUnavailableError: postgresql failed: connection refused"
    )
    assert describe_failure(ValueError("no traceback")) == "ValueError"
