"""Turning HR exports (a roster and its job history) into person events."""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.common import new_event_id, utc_now
from schemas.person import DATE_ATTRIBUTES, PersonSnapshot, PersonUpdated
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
# Only a cell written as a plain decimal is a number: a code such as "0042",
# "+1", "1e3" or "1_000" would lose its text, and Python's int() and float() also
# take "nan", "Infinity" (a person may be called Nan) and non-ASCII digits. The
# sample's commissions are written ".20", so the 0 before the point is optional.
NUMBER = re.compile(r"-?((0|[1-9][0-9]*)(\.[0-9]+)?|\.[0-9]+)")
# The one form of an HR calendar date; date.fromisoformat() also takes
# "20180617" and week dates such as "2018-W24-7".
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class RejectedRow:
    """A history row that contradicts the roster, and why."""

    person_id: str
    start_date: str
    reason: str


def read_roster(path: Path) -> dict[str, dict[str, Any]]:
    """Return each person's attributes from a roster CSV, by person_id.

    Empty cells are left out; cells written as plain decimals (``24000``,
    ``-3``, ``0.15``) become numbers, others stay text, as do identifier
    (``*_id``) and date (``*_date``) columns. Raises HRFileError when the file
    cannot be read, has no identifier column or two columns for one attribute,
    or a row has the wrong number of cells, no id, the id of an earlier row, or
    a hire or termination date that is not a yyyy-mm-dd date.
    """
    roster: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    with _open_csv(path, "roster") as file, _readable(path, "roster"):
        reader = csv.reader(file)
        header = _header(reader, path, "roster")
        id_column = next((c for c in ID_COLUMNS if c in header), None)
        if id_column is None:
            raise HRFileError(
                f"roster {path} has no person_id or employee_id column; found {header}"
            )
        _refuse_shared_attributes(header, path, "roster", COLUMN_ATTRIBUTES)

        for line, row in _rows(reader, header, path, "roster"):
            person_id = row.pop(id_column).strip()
            if not person_id:
                raise HRFileError(f"roster {path} line {line}: no {id_column}")
            if person_id in lines:
                raise HRFileError(
                    f"roster {path} line {line}: {id_column} {person_id!r} is"
                    f" already on line {lines[person_id]}; one row a person"
                )
            lines[person_id] = line
            where = f"roster {path} line {line}"
            roster[person_id] = _attributes(row, person_id, where)
    return roster


def _attributes(row: dict[str, str], person_id: str, where: str) -> dict[str, Any]:
    """Return a roster row's non-empty cells, renamed and typed."""
    attributes: dict[str, Any] = {}
    for column, value in row.items():
        if not value.strip():
            continue
        attribute = COLUMN_ATTRIBUTES.get(column, column)
        if attribute in DATE_ATTRIBUTES:
            _iso_date(value, f"{where}: {column} of person {person_id!r}")
        attributes[attribute] = _cell(column, value)
    return attributes


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
    changes.sort(key=lambda change: (change[0], natural_key(change[1])))

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
        reader = csv.reader(file)
        header = _header(reader, history_path, "job history")
        missing = [c for c in HISTORY_COLUMNS if c not in header]
        if missing:
            raise HRFileError(
                f"job history {history_path} lacks the columns {missing};"
                f" expected {list(HISTORY_COLUMNS)}"
            )
        _refuse_shared_attributes(header, history_path, "job history", {})

        for line, record in _rows(reader, header, history_path, "job history"):
            person_id = record["employee_id"].strip()
            where = f"job history {history_path} line {line}"
            of_person = f"of person {person_id!r}"
            parsed: dict[str, Any] = {
                "start": _iso_date(
                    record["start_date"], f"{where}: start_date {of_person}"
                ),
                "end": _iso_date(record["end_date"], f"{where}: end_date {of_person}"),
                "job_id": record["job_id"],
                "title": record["job_title"],
                "department_id": record["department_id"],
                "department": record["department_name"],
            }
            by_person.setdefault(person_id, []).append(parsed)

    accepted: dict[str, list[dict[str, Any]]] = {}
    rejected: list[RejectedRow] = []
    for person_id, rows in sorted(by_person.items()):
        rows.sort(key=lambda row: row["start"])
        hired = _hire_date(person_id, roster.get(person_id, {}))
        previous_end: date | None = None
        for row in rows:
            reason = _row_problem(row, hired, previous_end, person_id in roster)
            if reason:
                rejected.append(RejectedRow(person_id, str(row["start"]), reason))
                continue
            accepted.setdefault(person_id, []).append(row)
            previous_end = row["end"]
    return accepted, rejected


def _hire_date(person_id: str, attributes: dict[str, Any]) -> date | None:
    """Return a roster person's hire date, which read_roster has checked."""
    hired = attributes.get("hire_date")
    if hired is None:
        return None
    # A roster built by the caller rather than by read_roster may hold anything.
    return _iso_date(str(hired), f"roster: hire_date of person {person_id!r}")


def _row_problem(
    row: dict[str, Any], hired: date | None, previous_end: date | None, known: bool
) -> str | None:
    if not known:
        return "person is not in the roster"
    if row["end"] < row["start"]:
        return f"ends {row['end']} before it starts"
    if hired is not None and row["start"] < hired:
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


def _header(reader: Any, path: Path, what: str) -> list[str]:
    header: list[str] | None = next(reader, None)
    if header is None:
        raise HRFileError(f"{what} {path} is empty; expected a header row")
    return header


def _refuse_shared_attributes(
    header: list[str], path: Path, what: str, renamed: dict[str, str]
) -> None:
    """Refuse two columns that give one attribute: one would overwrite the other."""
    columns: dict[str, str] = {}
    for column in header:
        attribute = renamed.get(column, column)
        if column in columns.values():
            raise HRFileError(
                f"{what} {path}: the header has the column {column!r} twice;"
                " expected each column once"
            )
        if attribute in columns:
            raise HRFileError(
                f"{what} {path}: the columns {columns[attribute]!r} and {column!r}"
                f" both give the attribute {attribute!r}; expected one column"
                " an attribute"
            )
        columns[attribute] = column


def _rows(
    reader: Any, header: list[str], path: Path, what: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield each row by column, with its line; refuse a row of the wrong size."""
    for cells in reader:
        # A blank line, often the last, holds no row.
        if not cells:
            continue
        line: int = reader.line_num
        if len(cells) != len(header):
            raise HRFileError(
                f"{what} {path} line {line}: expected {len(header)} cells (one a"
                f" column of the header), got {len(cells)}"
            )
        yield line, dict(zip(header, cells, strict=True))


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


def _iso_date(text: str, where: str) -> date:
    """Return a yyyy-mm-dd calendar date; raise HRFileError naming where it is."""
    stripped = text.strip()
    if ISO_DATE.fullmatch(stripped):
        # The form is right but the day may not exist, as on 2020-02-30.
        with suppress(ValueError):
            return date.fromisoformat(stripped)
    raise HRFileError(f"{where} is {text!r}; expected a yyyy-mm-dd date")


def natural_key(person_id: str) -> tuple[int, int, str]:
    """Numeric ids in number order, before any other id in text order."""
    # isdigit alone also takes superscripts such as "²", which int() refuses.
    if person_id.isascii() and person_id.isdigit():
        return (0, int(person_id), "")
    return (1, 0, person_id)


def _job(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in JOB_ATTRIBUTES}


def _cell(column: str, value: str) -> Any:
    text = value.strip()
    if column.endswith(("_id", "_date")) or not NUMBER.fullmatch(text):
        return text
    if "." not in text:
        try:
            return int(text)
        except ValueError:
            # Longer than Python converts (4300 digits): kept as written.
            return text
    number = float(text)
    # Too large for a double: kept as written rather than as infinity.
    return number if math.isfinite(number) else text
