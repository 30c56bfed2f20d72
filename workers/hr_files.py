"""Turning HR exports (a roster and its job history) into person events."""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.common import new_event_id, utc_now
from schemas.person import PersonSnapshot, PersonUpdated
from workers.errors import HRFileError

logger = logging.getLogger(__name__)

# Roster columns renamed to the attribute names segments use.
COLUMN_ATTRIBUTES = {
    "job_title": "title",
    "department_name": "department",
}
ID_COLUMNS = ("person_id", "employee_id")
# The attributes a job carries; a job change replaces all of them.
JOB_ATTRIBUTES = ("job_id", "title", "department_id", "department")
HISTORY_COLUMNS = (
    "employee_id",
    "start_date",
    "end_date",
    "job_id",
    "job_title",
    "department_id",
    "department_name",
)
# A cell in this form is a number; Python's int() and float() take more, such
# as "1_000", "nan" and "Infinity" (a person may be called Nan).
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class RejectedRow:
    """A history row that contradicts the roster, and why."""

    person_id: str
    start_date: str
    reason: str


def read_roster(path: Path) -> dict[str, dict[str, Any]]:
    """Return each person's attributes from a roster CSV, by person_id.

    Empty cells are left out; cells that read as finite numbers become
    numbers, except in identifier columns (``*_id``), which stay text. Raises
    HRFileError when the file cannot be read, has no identifier column, or a
    row has no id or the id of an earlier row.
    """
    roster: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    with _open_csv(path, "roster") as file, _readable(path, "roster"):
        reader = csv.DictReader(file)
        id_column = next(
            (c for c in ID_COLUMNS if c in (reader.fieldnames or [])), None
        )
        if reader.fieldnames is None:
            raise HRFileError(f"roster {path} is empty; expected a header row")
        if id_column is None:
            raise HRFileError(
                f"roster {path} has no person_id or employee_id column;"
                f" found {reader.fieldnames}"
            )
        for row in reader:
            line = reader.line_num
            if None in row:
                raise HRFileError(
                    f"roster {path} line {line}: more cells than the"
                    f" {len(reader.fieldnames)} columns of the header"
                )
            person_id = (row.pop(id_column) or "").strip()
            if not person_id:
                raise HRFileError(f"roster {path} line {line}: no {id_column}")
            if person_id in lines:
                raise HRFileError(
                    f"roster {path} line {line}: {id_column} {person_id!r} is"
                    f" already on line {lines[person_id]}; one row a person"
                )
            lines[person_id] = line
            roster[person_id] = {
                COLUMN_ATTRIBUTES.get(column, column): _cell(column, value)
                for column, value in row.items()
                if value is not None and value.strip()
            }
    return roster


def snapshot_events(
    roster: dict[str, dict[str, Any]], occurred_at: datetime | None = None
) -> list[PersonSnapshot]:
    """Return one snapshot event a person, all stamped with one instant.

    Raises HRFileError naming the person whose row makes no valid event.
    """
    occurred_at = occurred_at or utc_now()
    events = []
    for person_id, attributes in roster.items():
        with _valid_event(f"roster: person {person_id!r}"):
            events.append(
                PersonSnapshot(
                    event_id=new_event_id(),
                    occurred_at=occurred_at,
                    person_id=person_id,
                    attributes=attributes,
                )
            )
    return events


def history_events(
    history_path: Path,
    roster: dict[str, dict[str, Any]],
    replayed_at: datetime | None = None,
) -> tuple[list[PersonUpdated], list[RejectedRow]]:
    """Return the job history as dated job changes, and the rows rejected.

    For each person, the earlier jobs are replayed in date order and followed
    by a change back to the roster's current job, on the day after the last
    earlier job ended. A row that starts before the person's hire date, ends
    before it starts, or overlaps the previous row is rejected: the sample data
    has such rows, and an HR system would not emit them as changes.

    All changes come in one chronological sequence; each is stamped with the
    replay instant plus its rank, so that later dates always win.
    """
    accepted, rejected = _validated_rows(history_path, roster)
    changes: list[tuple[date, str, dict[str, Any]]] = []
    for person_id, rows in accepted.items():
        for row in rows:
            changes.append((row["start"], person_id, _job(row)))
        current = roster[person_id]
        back_on = rows[-1]["end"] + timedelta(days=1)
        changes.append(
            (back_on, person_id, {name: current.get(name) for name in JOB_ATTRIBUTES})
        )
    changes.sort(key=lambda change: (change[0], _id_order(change[1])))

    base = replayed_at or utc_now()
    events = []
    for rank, (effective, person_id, job) in enumerate(changes):
        with _valid_event(f"job history: person {person_id!r} on {effective}"):
            events.append(
                PersonUpdated(
                    event_id=new_event_id(),
                    occurred_at=base + timedelta(milliseconds=rank),
                    person_id=person_id,
                    effective_at=effective,
                    changes=job,
                )
            )
    return events, rejected


def _validated_rows(
    history_path: Path, roster: dict[str, dict[str, Any]]
) -> tuple[dict[str, list[dict[str, Any]]], list[RejectedRow]]:
    by_person: dict[str, list[dict[str, Any]]] = {}
    with (
        _open_csv(history_path, "job history") as file,
        _readable(history_path, "job history"),
    ):
        reader = csv.DictReader(file)
        missing = [c for c in HISTORY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise HRFileError(
                f"job history {history_path} lacks the columns {missing};"
                f" expected {list(HISTORY_COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            person_id = row["employee_id"].strip()
            parsed: dict[str, Any] = {
                "start": _iso_date(row["start_date"], history_path, line),
                "end": _iso_date(row["end_date"], history_path, line),
                "job_id": row["job_id"],
                "title": row["job_title"],
                "department_id": row["department_id"],
                "department": row["department_name"],
            }
            by_person.setdefault(person_id, []).append(parsed)

    accepted: dict[str, list[dict[str, Any]]] = {}
    rejected: list[RejectedRow] = []
    for person_id, rows in sorted(by_person.items()):
        rows.sort(key=lambda row: row["start"])
        hired = roster.get(person_id, {}).get("hire_date")
        previous_end: date | None = None
        for row in rows:
            reason = _row_problem(row, hired, previous_end, person_id in roster)
            if reason:
                rejected.append(RejectedRow(person_id, str(row["start"]), reason))
                continue
            accepted.setdefault(person_id, []).append(row)
            previous_end = row["end"]
    return accepted, rejected


def _row_problem(
    row: dict[str, Any], hired: Any, previous_end: date | None, known: bool
) -> str | None:
    if not known:
        return "person is not in the roster"
    if row["end"] < row["start"]:
        return f"ends {row['end']} before it starts"
    if hired is not None and row["start"] < date.fromisoformat(str(hired)):
        return f"starts before the hire date {hired}"
    if previous_end is not None and row["start"] <= previous_end:
        return f"overlaps the job that ended {previous_end}"
    return None


def _open_csv(path: Path, what: str) -> Any:
    try:
        # An export from a spreadsheet may start with a byte order mark.
        return path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise HRFileError(f"cannot read the {what} {path}: {error.strerror}") from None


@contextmanager
def _readable(path: Path, what: str) -> Iterator[None]:
    """Turn a file that is not UTF-8 text or not CSV into an HRFileError."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise HRFileError(
            f"the {what} {path} is not UTF-8 text (it holds byte"
            f" {error.object[error.start]:#x}); save it as UTF-8"
        ) from None
    except csv.Error as error:
        raise HRFileError(f"the {what} {path} is not CSV: {error}") from None


@contextmanager
def _valid_event(what: str) -> Iterator[None]:
    """Turn a row that makes no valid event into an HRFileError saying why."""
    try:
        yield
    except ValidationError as error:
        problems = "; ".join(
            ": ".join(filter(None, (".".join(map(str, e["loc"])), e["msg"])))
            for e in error.errors(include_url=False)[:3]
        )
        raise HRFileError(f"{what}: {problems}") from None


def _iso_date(text: str | None, path: Path, line: int) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise HRFileError(
            f"{path} line {line}: expected a yyyy-mm-dd date, got {text!r}"
        ) from None


def _id_order(person_id: str) -> tuple[int, int, str]:
    """Numeric ids in number order, before any other id in text order."""
    if person_id.isdigit():
        return (0, int(person_id), "")
    return (1, 0, person_id)


def _job(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in JOB_ATTRIBUTES}


def _cell(column: str, value: str) -> Any:
    text = value.strip()
    if column.endswith(("_id", "_date")) or not NUMBER.fullmatch(text):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    number = float(text)
    # Too large for a double: kept as written rather than as infinity.
    return number if math.isfinite(number) else text
