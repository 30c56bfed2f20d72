"""The demo, end to end on the embedded stack, against an independent oracle.

The oracle reads the two CSV files and the demo config with nothing but the csv
and yaml modules, restates in a few lines the operators that config uses, and
replays the inputs as the demo feeds them: the roster, then the config (every
rule at once), then each job change dated on or before as-of; a change dated
later is held, and with "today" pinned it never falls due. For each program
role the last matching rule decides, and no matching rule leaves a person as
they were. Nothing of mentorflow is imported, so a shared mistake cannot
agree with itself.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

DATA = Path(__file__).parents[2] / "workers" / "data"
# What `mentorflow demo` looks from when given no --as-of.
DEFAULT_AS_OF = date(2018, 6, 30)
ROLES = ("mentor", "mentee")
FIRST_MEMBERS = 5
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))

Person = dict[str, Any]
JobChange = tuple[date, str, Person]


# -- the oracle -----------------------------------------------------------------


def fold(value: Any) -> str:
    """Text as segments compare it: NFKC, no zero-width, one space, no case."""
    text = unicodedata.normalize("NFKC", str(value)).translate(ZERO_WIDTH)
    return " ".join(text.split()).casefold()


def holds(condition: dict[str, Any], person: Person, today: date) -> bool:
    """Whether one condition of the demo config holds; absent never matches."""
    actual = person.get(condition["attribute"])
    expected: Any = condition.get("value")
    if actual is None:
        return False
    operator = condition["operator"]
    if operator == "eq":
        return fold(actual) == fold(expected)
    if operator == "in":
        return fold(actual) in {fold(option) for option in expected}
    if operator == "starts_with":
        return fold(actual).startswith(fold(expected))
    if operator == "contains":
        return fold(expected) in fold(actual)
    if operator == "gte":
        return float(actual) >= float(expected)
    if operator == "lt":
        return float(actual) < float(expected)
    days_ago = (today - date.fromisoformat(actual)).days
    if operator == "within_last":
        return 0 <= days_ago <= int(expected)
    if operator == "more_than_ago":
        return days_ago > int(expected)
    raise AssertionError(f"the oracle does not restate operator {operator!r}")


def contains(node: dict[str, Any], person: Person, today: date) -> bool:
    """Whether a segment tree of the demo config contains the person today."""
    if "all" in node:
        return all(contains(child, person, today) for child in node["all"])
    if "any" in node:
        return any(contains(child, person, today) for child in node["any"])
    assert set(node) <= {"attribute", "operator", "value"}, node
    return holds(node, person, today)


def read_roster() -> dict[str, Person]:
    """Each person's attributes that the demo config reads; empty cells absent."""
    with (DATA / "employees.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        row["employee_id"]: {
            "hire_date": row["hire_date"],
            "title": row["job_title"] or None,
            "department": row["department_name"] or None,
            "salary": int(row["salary"]),
        }
        for row in rows
    }


def read_history(
    roster: dict[str, Person],
) -> tuple[list[JobChange], list[str]]:
    """Return the dated job changes in date order, and the rejected rows.

    A row is rejected when it starts before the person's hire date. A person's
    other rows become a change each on their start date, and the roster's job
    comes back the day after the last of them ended.
    """
    with (DATA / "job_history.csv").open(newline="") as file:
        rows = sorted(
            csv.DictReader(file),
            key=lambda row: (int(row["employee_id"]), row["start_date"]),
        )
    rejected = [
        row
        for row in rows
        if row["start_date"] < roster[row["employee_id"]]["hire_date"]
    ]
    accepted: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row not in rejected:
            accepted.setdefault(row["employee_id"], []).append(row)

    changes: list[JobChange] = []
    for person_id, jobs in accepted.items():
        # Nothing else in the sample is wrong; the oracle restates no other check.
        for earlier, later in pairwise(jobs):
            assert earlier["end_date"] < later["start_date"], (earlier, later)
        for job in jobs:
            start = date.fromisoformat(job["start_date"])
            job_attributes = {
                "title": job["job_title"],
                "department": job["department_name"],
            }
            changes.append((start, person_id, job_attributes))
        back_on = date.fromisoformat(jobs[-1]["end_date"]) + timedelta(days=1)
        current = roster[person_id]
        changes.append(
            (back_on, person_id, {k: current[k] for k in ("title", "department")})
        )
    changes.sort(key=lambda change: (change[0], int(change[1])))
    lines = [
        f"{row['employee_id']} {row['start_date']}: starts before the hire date"
        f" {roster[row['employee_id']]['hire_date']}"
        for row in rejected
    ]
    return changes, lines


def expected_summary(as_of: date, hold_later_changes: bool = True) -> dict[str, Any]:
    """What the demo must print for as-of, computed from the files alone.

    ``hold_later_changes=False`` applies every job change, whatever its date:
    only to show that a test day is one where holding them decides.
    """
    roster = read_roster()
    changes, rejected = read_history(roster)
    config = yaml.safe_load((DATA / "demo-config.yaml").read_text())
    segments = {raw["segment_id"]: raw["definition"] for raw in config["segments"]}
    assert not any("aliases" in raw for raw in config["segments"]), "not restated"
    # Listed order is dashboard order, and every rule is published: the oracle
    # restates no explicit position or status, so the config must use none.
    rules = config["rules"]
    assert all(not {"position", "status"} & set(rule) for rule in rules)
    programs = sorted(program["program_id"] for program in config["programs"])
    members: set[tuple[str, str, str]] = set()

    def reevaluate(person_id: str) -> int:
        flips = 0
        for program in programs:
            for role in ROLES:
                matching = [
                    rule
                    for rule in rules
                    if (rule["program"], rule["role"]) == (program, role)
                    and contains(segments[rule["segment"]], roster[person_id], as_of)
                ]
                if not matching:
                    continue
                membership = (program, role, person_id)
                if (matching[-1]["action"] == "add") != (membership in members):
                    members.symmetric_difference_update({membership})
                    flips += 1
        return flips

    events = sum(reevaluate(person_id) for person_id in roster)
    for day, person_id, job in changes:
        if day <= as_of or not hold_later_changes:
            roster[person_id].update(job)
            events += reevaluate(person_id)

    pairs = []
    for program in programs:
        for role in ROLES:
            ids = sorted(
                (p for g, r, p in members if (g, r) == (program, role)), key=int
            )
            pairs.append(
                {
                    "program_id": program,
                    "role": role,
                    "members": len(ids),
                    "first_members": ids[:FIRST_MEMBERS],
                }
            )
    return {
        "as_of": as_of.isoformat(),
        "persons": len(roster),
        "pairs": pairs,
        "membership_events": events,
        "stale_events": 0,
        "dead_letters": 0,
        "rejected_history_rows": len(rejected),
        "rejected": rejected,
    }


# -- reading what the demo prints ------------------------------------------------

TABLE_TITLE = re.compile(r"^Program membership as of (\d{4}-\d{2}-\d{2})$")
FIGURES = {
    "persons": "persons",
    "membership events published": "membership_events",
    "stale events ignored": "stale_events",
    "dead letters": "dead_letters",
    "job history rows rejected": "rejected_history_rows",
}


def parse_table(stdout: str) -> dict[str, Any]:
    """Read the human output back into the shape of ``demo --json``.

    Every line must be understood: a line the parser does not know fails.
    """
    lines = stdout.rstrip("\n").splitlines()
    title = TABLE_TITLE.match(lines[0].strip())
    assert title, lines[0]
    printed: dict[str, Any] = {"as_of": title.group(1), "pairs": [], "rejected": []}
    header = next(i for i, line in enumerate(lines) if line.startswith("┃"))
    assert [cell.strip() for cell in lines[header].strip("┃").split("┃")] == [
        "program",
        "role",
        "members",
        "first members",
    ]

    for line in lines[header + 1 :]:
        if line.startswith(("┡", "└")):
            continue
        if line.startswith("│"):
            program, role, count, first = (
                cell.strip() for cell in line.strip("│").split("│")
            )
            printed["pairs"].append(
                {
                    "program_id": program,
                    "role": role,
                    "members": int(count),
                    "first_members": first.split(", ") if first else [],
                }
            )
        elif line.startswith("  "):
            printed["rejected"].append(line.strip())
        else:
            label, value = line.split(": ")
            printed[FIGURES[label]] = int(value)
    return printed


@pytest.fixture
def demo_data_dir() -> Iterator[Path]:
    # Under root the embedded PostgreSQL runs as a system user, which cannot
    # enter pytest's private temporary folders.
    folder = Path(tempfile.mkdtemp(prefix="mentorflow-demo-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_demo(data_dir: Path, *args: str) -> str:
    """Run ``mentorflow demo ARGS`` on its own embedded stack; return its stdout."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MENTORFLOW_")
        and name not in ("DATABASE_URL", "KAFKA_BOOTSTRAP", "FORCE_COLOR")
    }
    # Wide enough that rich never wraps a cell, and plain text.
    environment.update(
        MENTORFLOW_DATA_DIR=str(data_dir), COLUMNS="200", NO_COLOR="1", TERM="dumb"
    )
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# The eve of 176 becoming a Sales Manager: that change and others are still ahead,
# and holding them keeps 176 out of sales-leadership's mentors.
HELD_CHANGES_DAY = date(2016, 12, 31)


def test_on_the_json_day_holding_later_job_changes_decides():
    held = expected_summary(HELD_CHANGES_DAY)
    applied = expected_summary(HELD_CHANGES_DAY, hold_later_changes=False)

    assert held["pairs"] != applied["pairs"]
    assert held["membership_events"] != applied["membership_events"]


# Each run starts its own stack (about 15 s), so each output format is run once,
# on a different day: the table as `make demo` prints it, from the default day,
# and the JSON from a day when some job changes are still ahead.
@pytest.mark.parametrize(
    ("as_of", "output"),
    [
        pytest.param(None, "table", id="table-default-as-of"),
        pytest.param(HELD_CHANGES_DAY, "json", id="json-with-changes-ahead"),
    ],
)
def test_the_demo_prints_what_the_oracle_computes(demo_data_dir, as_of, output):
    args = ["--as-of", as_of.isoformat()] if as_of else []
    if output == "json":
        args.append("--json")

    stdout = run_demo(demo_data_dir, *args)

    printed = json.loads(stdout) if output == "json" else parse_table(stdout)
    assert printed == expected_summary(as_of or DEFAULT_AS_OF)
