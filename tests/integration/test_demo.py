"""The demo, end to end on the embedded stack, against an independent oracle.

The oracle reads the same two CSV files and the same config with nothing but
the csv and yaml modules, and replays them through a plain re-statement of the
rule semantics: the last matching rule of a program role decides.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.segments import matches
from schemas.segments import Segment

DATA = Path(str(resources.files("workers") / "data"))


def read_roster() -> dict[str, dict[str, Any]]:
    roster = {}
    with (DATA / "employees.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            person = {
                "hire_date": row["hire_date"],
                "job_id": row["job_id"],
                "title": row["job_title"],
                "salary": int(row["salary"]),
                "manager_id": row["manager_id"],
                "department_id": row["department_id"],
                "department": row["department_name"],
            }
            if row["commission_pct"]:
                person["commission_pct"] = float(row["commission_pct"])
            roster[row["employee_id"]] = {k: v for k, v in person.items() if v != ""}
    return roster


def job_changes(
    roster: dict[str, dict[str, Any]],
) -> list[tuple[date, str, dict[str, Any]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with (DATA / "job_history.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            rows.setdefault(row["employee_id"], []).append(row)
    changes: list[tuple[date, str, dict[str, Any]]] = []
    for person, jobs in rows.items():
        hired = date.fromisoformat(roster[person]["hire_date"])
        valid = [
            job
            for job in sorted(jobs, key=lambda job: job["start_date"])
            if date.fromisoformat(job["start_date"]) >= hired
        ]
        for job in valid:
            changes.append(
                (
                    date.fromisoformat(job["start_date"]),
                    person,
                    {
                        "job_id": job["job_id"],
                        "title": job["job_title"],
                        "department_id": job["department_id"],
                        "department": job["department_name"],
                    },
                )
            )
        if valid:
            current = roster[person]
            back = date.fromisoformat(valid[-1]["end_date"]) + timedelta(days=1)
            keys = ("job_id", "title", "department_id", "department")
            changes.append((back, person, {k: current.get(k) for k in keys}))
    return sorted(changes, key=lambda change: (change[0], int(change[1])))


def expected_summary(as_of: date) -> dict[str, Any]:
    roster = read_roster()
    config = yaml.safe_load((DATA / "demo-config.yaml").read_text())
    segments = {
        raw["segment_id"]: Segment.model_validate(raw).definition
        for raw in config["segments"]
    }
    members: set[tuple[str, str, str]] = set()
    published: list[dict[str, str]] = []
    events = 0

    def reevaluate(person: str, program: str, role: str) -> int:
        deciding = None
        for rule in published:
            if (rule["program"], rule["role"]) != (program, role):
                continue
            if matches(segments[rule["segment"]], roster[person], as_of):
                deciding = rule
        if deciding is None:
            return 0
        want = deciding["action"] == "add"
        have = (program, role, person) in members
        if want == have:
            return 0
        (members.add if want else members.discard)((program, role, person))
        return 1

    # The config is published as one event: every rule at once, then every
    # person re-evaluated once.
    published.extend(config["rules"])
    pairs = {(rule["program"], rule["role"]) for rule in config["rules"]}
    for person in roster:
        for program, role in sorted(pairs):
            events += reevaluate(person, program, role)

    for _, person, job in job_changes(roster):
        roster[person].update({k: v for k, v in job.items() if v is not None})
        for program, role in sorted(pairs):
            events += reevaluate(person, program, role)

    summary_pairs = []
    for program in sorted(p["program_id"] for p in config["programs"]):
        for role in ("mentor", "mentee"):
            ids = sorted(
                (p for (g, r, p) in members if (g, r) == (program, role)), key=int
            )
            summary_pairs.append(
                {
                    "program_id": program,
                    "role": role,
                    "members": len(ids),
                    "first_members": ids[:5],
                }
            )
    return {"persons": len(roster), "pairs": summary_pairs, "membership_events": events}


@pytest.fixture
def demo_data_dir() -> Iterator[Path]:
    # Under root the embedded PostgreSQL runs as a system user, which cannot
    # enter pytest's private temporary folders.
    folder = Path(tempfile.mkdtemp(prefix="mentorflow-demo-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("as_of", [date(2018, 6, 30), date(2017, 3, 1)])
def test_the_demo_prints_what_the_oracle_computes(demo_data_dir, as_of):
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MENTORFLOW_")
        and name not in ("DATABASE_URL", "KAFKA_BOOTSTRAP")
    }
    environment["MENTORFLOW_DATA_DIR"] = str(demo_data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo", "--json", "--as-of", str(as_of)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)

    expected = expected_summary(as_of)
    assert printed["as_of"] == as_of.isoformat()
    assert printed["persons"] == expected["persons"] == 107
    assert printed["pairs"] == expected["pairs"]
    assert printed["membership_events"] == expected["membership_events"]
    assert printed["stale_events"] == 0
    assert printed["dead_letters"] == 0
    assert printed["rejected_history_rows"] == 4
