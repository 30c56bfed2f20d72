"""The everyday commands, end to end: import, members, explain and sweep.

Each command runs as `python -m workers.cli` in a child process against the
test's own PostgreSQL database and Kafka topics, beside a real worker where the
command needs one, and its output is read back line by line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kafka import KafkaConsumer
from kafka.serializer import Deserializer

from infra.kafka import JsonDeserializer, client_options
from infra.settings import Settings
from infra.store import SWEEP_LOCK_KEY, Store
from schemas.segments import Role
from tests.integration.polling import wait_for
from workers.publishing import read_topic, wait_until_outbox_empty

ROSTER = """\
person_id,title,department,hire_date,salary,manager_id,location
e1,Engineer,Engineering,2020-01-06,8000,e2,Lyon
e2,Senior  Engineer,Engineering,2015-03-02,12000,,Lyon
e3,Engineer,Engineering,2026-05-01,7000,e2,
s1,Sales Rep,Sales,2019-07-01,6000,s2,Paris
s2,Sales Manager,Sales,2012-02-01,15000,,Paris
"""
# What the roster's rows become: numbers where a cell reads as one, except in
# *_id columns; empty cells left out.
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "e1": {
        "title": "Engineer",
        "department": "Engineering",
        "hire_date": "2020-01-06",
        "salary": 8000,
        "manager_id": "e2",
        "location": "Lyon",
    },
    "e2": {
        "title": "Senior  Engineer",
        "department": "Engineering",
        "hire_date": "2015-03-02",
        "salary": 12000,
        "location": "Lyon",
    },
    "e3": {
        "title": "Engineer",
        "department": "Engineering",
        "hire_date": "2026-05-01",
        "salary": 7000,
        "manager_id": "e2",
    },
    "s1": {
        "title": "Sales Rep",
        "department": "Sales",
        "hire_date": "2019-07-01",
        "salary": 6000,
        "manager_id": "s2",
        "location": "Paris",
    },
    "s2": {
        "title": "Sales Manager",
        "department": "Sales",
        "hire_date": "2012-02-01",
        "salary": 15000,
        "location": "Paris",
    },
}


def segment(segment_id: str, attribute: str, operator: str, value: Any) -> Any:
    condition = {"attribute": attribute, "operator": operator, "value": value}
    return {"segment_id": segment_id, "definition": {"all": [condition]}}


def rule(rule_id: str, action: str, program: str, role: str, segment: str) -> Any:
    return {
        "rule_id": rule_id,
        "action": action,
        "program": program,
        "role": role,
        "segment": segment,
    }


# Today is the fixtures' TEST_TODAY, 2026-06-01. e2 is an engineer on senior pay:
# the add and the remove rule of guild's mentees both match, and the remove rule,
# later on the dashboard, decides.
CONFIG = {
    "programs": [{"program_id": "guild"}, {"program_id": "buddies"}],
    "segments": [
        segment("engineering", "department", "eq", "engineering"),
        segment("senior-pay", "salary", "gte", 10000),
        segment("recent-hires", "hire_date", "within_last", 90),
    ],
    "rules": [
        rule("add-engineers", "add", "guild", "mentee", "engineering"),
        rule("remove-senior-pay", "remove", "guild", "mentee", "senior-pay"),
        rule("add-senior-mentors", "add", "guild", "mentor", "senior-pay"),
        rule("add-recent-hires", "add", "buddies", "mentee", "recent-hires"),
    ],
}
# (program, role, person, decided by) once the config is applied.
MEMBERSHIPS = [
    ("buddies", "mentee", "e3", "add-recent-hires"),
    ("guild", "mentee", "e1", "add-engineers"),
    ("guild", "mentee", "e3", "add-engineers"),
    ("guild", "mentor", "e2", "add-senior-mentors"),
    ("guild", "mentor", "s2", "add-senior-mentors"),
]

Cli = Callable[..., Any]


def memberships(store: Store) -> list[tuple[str, str, str, str]]:
    with store.transaction() as tx:
        rows = tx.conn.execute(
            "SELECT program_id, role, person_id, decided_by FROM memberships"
            " ORDER BY program_id, role, person_id"
        ).fetchall()
    return [tuple(row) for row in rows]


def is_settled(store: Store) -> bool:
    """Whether no re-evaluation is under way and the outbox is empty."""
    with store.transaction() as tx:
        row = tx.conn.execute(
            "SELECT (SELECT count(*) FROM reevaluations)"
            " + (SELECT count(*) FROM outbox)"
        ).fetchone()
    return row is not None and row[0] == 0


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of the rich tables in an output, as stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]


class TextDeserializer(Deserializer):  # type: ignore[misc]
    """Reads UTF-8 keys."""

    def deserialize(self, topic: str, headers: Any, data: bytes | None) -> Any:
        return None if data is None else data.decode()


@pytest.fixture
def roster_file(tmp_path: Path) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    return path


@pytest.fixture
def configured(
    settings: Settings,
    store: Store,
    worker_factory: Callable[..., Any],
    cli_factory: Cli,
    roster_file: Path,
    tmp_path: Path,
) -> Store:
    """A worker that holds the roster and has applied CONFIG; returns the store."""
    worker_factory()
    imported = cli_factory("import", str(roster_file))
    assert imported.returncode == 0, imported.stderr
    # The worker stores each snapshot's attributes as import published them.
    wait_for(lambda: stored_attributes(store) == ATTRIBUTES)

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    applied = cli_factory("apply", str(config_file))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    wait_for(lambda: is_settled(store))
    assert memberships(store) == MEMBERSHIPS
    return store


def stored_attributes(store: Store) -> dict[str, dict[str, Any]]:
    with store.transaction() as tx:
        return {
            state.person_id: dict(state.attributes)
            for chunk in tx.iter_persons()
            for state in chunk
        }


def test_import_publishes_one_snapshot_a_person_keyed_by_person_id(
    settings, cli_factory, roster_file
):
    result = cli_factory("import", str(roster_file))

    assert result.returncode == 0, result.stderr
    topic = settings.kafka.person_topic
    assert result.stdout == f"published 5 snapshots to {topic}\n"
    consumer = KafkaConsumer(
        topic,
        **client_options(settings.kafka),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        key_deserializer=TextDeserializer(),
        value_deserializer=JsonDeserializer(),
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert sorted(record.key for record in records) == sorted(ATTRIBUTES)
    for record in records:
        event = record.value
        assert event["type"] == "person.snapshot"
        assert event["person_id"] == record.key
        assert event["attributes"] == ATTRIBUTES[record.key]
        assert event["schema_version"] == 1
        assert event["effective_at"] is None
    assert len({record.value["event_id"] for record in records}) == 5
    # One roster, one instant: the snapshots are versions of the same moment.
    assert len({record.value["occurred_at"] for record in records}) == 1


def test_import_of_a_roster_it_cannot_read_fails_and_publishes_nothing(
    settings, cli_factory, tmp_path
):
    no_ids = tmp_path / "no-ids.csv"
    no_ids.write_text("name,title\nAda,Engineer\n")

    missing = cli_factory("import", str(tmp_path / "nowhere.csv"))
    without_ids = cli_factory("import", str(no_ids))

    assert missing.returncode == without_ids.returncode == 1
    assert missing.stderr == (
        f"mentorflow: cannot read the roster {tmp_path / 'nowhere.csv'}:"
        " No such file or directory\n"
    )
    assert (
        f"roster {no_ids} has no person_id or employee_id column;"
        " found ['name', 'title']" in without_ids.stderr
    )
    assert missing.stdout == without_ids.stdout == ""
    assert read_topic(settings.kafka, settings.kafka.person_topic, 1.0) == []


def test_apply_without_waiting_publishes_the_file_and_exits_at_once(
    settings, cli_factory, tmp_path
):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG, sort_keys=False))

    # No worker runs: waiting would end in "no worker answered" (exit 5).
    result = cli_factory("apply", str(config_file), "--wait-s", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "without waiting for the worker's verdict" in result.stdout
    (event,) = read_topic(settings.kafka, settings.kafka.config_topic)
    assert event["type"] == "config.applied"
    assert [rule["rule_id"] for rule in event["rules"]] == [
        rule["rule_id"] for rule in CONFIG["rules"]
    ]


def test_members_lists_each_role_with_the_rule_that_decided(configured, cli_factory):
    with configured.transaction() as tx:
        rows = tx.members("guild")
    # The since column: when the membership was added, to the second.
    since = {
        (row.role.value, row.person_id): row.added_at.isoformat(timespec="seconds")
        for row in rows
    }

    mentees = cli_factory("members", "guild", "--role", "mentee")
    everyone = cli_factory("members", "guild")
    mentors = cli_factory("members", "guild", "--role", Role.MENTOR.value)
    empty = cli_factory("members", "buddies", "--role", "mentor")
    unknown = cli_factory("members", "ghost")

    assert mentees.returncode == everyone.returncode == mentors.returncode == 0
    assert mentees.stdout.splitlines()[0].strip() == "members of guild"
    (header,) = [line for line in mentees.stdout.splitlines() if "┃" in line]
    assert [cell.strip() for cell in header.strip().strip("┃").split("┃")] == [
        "role",
        "person",
        "source",
        "decided by",
        "since",
    ]
    assert table_rows(mentees.stdout) == [
        ["mentee", "e1", "rule", "add-engineers", since["mentee", "e1"]],
        ["mentee", "e3", "rule", "add-engineers", since["mentee", "e3"]],
    ]
    assert mentees.stdout.splitlines()[-1] == "2 members"
    assert [row[:4] for row in table_rows(mentors.stdout)] == [
        ["mentor", "e2", "rule", "add-senior-mentors"],
        ["mentor", "s2", "rule", "add-senior-mentors"],
    ]
    assert [row[:2] for row in table_rows(everyone.stdout)] == [
        ["mentee", "e1"],
        ["mentee", "e3"],
        ["mentor", "e2"],
        ["mentor", "s2"],
    ]
    assert everyone.stdout.splitlines()[-1] == "4 members"
    assert empty.returncode == 0, empty.stderr
    assert table_rows(empty.stdout) == []
    assert empty.stdout.splitlines()[-1] == "0 members"
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr.splitlines()[-1] == "mentorflow: unknown program 'ghost'"


EXPLAIN_E2 = """\
person e2 (active), as of 2026-06-01

not in buddies as mentee: no rule matches, state kept
    3 add    add-recent-hires (segment recent-hires) does not match
        no  all of
        no    hire_date within_last 90 (is '2015-03-02')

not in guild as mentee: decided by remove rule 'remove-senior-pay' (position 1), the last that matches
    0 add    add-engineers (segment engineering) matches
        yes all of
        yes   department eq 'engineering' (is 'Engineering')
    1 remove remove-senior-pay (segment senior-pay) matches
        yes all of
        yes   salary gte 10000 (is 12000)

in guild as mentor: decided by add rule 'add-senior-mentors' (position 2), the last that matches
    2 add    add-senior-mentors (segment senior-pay) matches
        yes all of
        yes   salary gte 10000 (is 12000)
"""  # noqa: E501


def test_explain_shows_every_rule_of_each_role_and_the_one_that_decides(
    configured, cli_factory
):
    result = cli_factory("explain", "e2")
    unknown = cli_factory("explain", "ghost")

    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPLAIN_E2
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr.splitlines()[-1] == "mentorflow: unknown person 'ghost'"


def test_explain_as_of_a_later_day_keeps_a_membership_no_rule_matches(
    configured, cli_factory
):
    today = cli_factory("explain", "e3")
    later = cli_factory("explain", "e3", "--as-of", "2026-12-01")

    assert today.returncode == later.returncode == 0, today.stderr + later.stderr
    buddies_today = today.stdout.split("\n\n")[1].splitlines()
    assert buddies_today == [
        "in buddies as mentee: decided by add rule 'add-recent-hires' (position 3),"
        " the last that matches",
        "    3 add    add-recent-hires (segment recent-hires) matches",
        "        yes all of",
        "        yes   hire_date within_last 90 (is '2026-05-01')",
    ]
    lines = later.stdout.splitlines()
    assert lines[0] == "person e3 (active), as of 2026-12-01"
    # e3 is still a member: nothing removes a recent hire once the window passes.
    assert lines[2:6] == [
        "in buddies as mentee: no rule matches, state kept",
        "    3 add    add-recent-hires (segment recent-hires) does not match",
        "        no  all of",
        "        no    hire_date within_last 90 (is '2026-05-01')",
    ]
    assert memberships(configured) == MEMBERSHIPS


DECIDED_FIELDS = ("type", "program_id", "role", "person_id", "decided_by")


def sweeps(store: Store) -> list[tuple[int, int, int, str]]:
    with store.transaction() as tx:
        rows = tx.conn.execute(
            "SELECT id, persons, changes, cause_event_id FROM sweeps"
            " WHERE finished_at IS NOT NULL ORDER BY id"
        ).fetchall()
    return [tuple(row) for row in rows]


def test_sweep_repairs_drift_then_finds_nothing_and_never_runs_twice_at_once(
    settings, configured, cli_factory
):
    store = configured
    # Drift that no event explains: a rule's member lost, and a manual member
    # whom the remove rule matching them would have removed.
    with store.transaction() as tx:
        tx.conn.execute(
            "DELETE FROM memberships"
            " WHERE (program_id, role, person_id) = ('guild', 'mentee', 'e1')"
        )
        tx.conn.execute(
            "INSERT INTO memberships (program_id, role, person_id, source,"
            " decided_by, cause_event_id, added_at)"
            " VALUES ('guild', 'mentee', 'e2', 'manual', 'manual', 'drift', now())"
        )

    repaired = cli_factory("sweep")
    again = cli_factory("sweep")

    assert repaired.returncode == 0, repaired.stderr
    assert again.returncode == 0, again.stderr
    (first_id, *first), (second_id, *second) = sweeps(store)[-2:]
    assert repaired.stdout == f"sweep {first_id}: 5 persons, 2 changes\n"
    assert again.stdout == f"sweep {second_id}: 5 persons, 0 changes\n"
    persons, changes, cause = first
    assert (persons, changes, second[:2]) == (5, 2, [5, 0])
    assert memberships(store) == MEMBERSHIPS

    wait_until_outbox_empty(store)
    published = [
        tuple(event[name] for name in DECIDED_FIELDS)
        for event in read_topic(settings.kafka, settings.kafka.membership_topic)
        if event["cause_event_id"] == cause
    ]
    assert sorted(published) == [
        ("membership.added", "guild", "mentee", "e1", "add-engineers"),
        ("membership.removed", "guild", "mentee", "e2", "remove-senior-pay"),
    ]

    # A sweep elsewhere holds the lock: this one does nothing and says so.
    url = settings.postgres.url
    assert url is not None
    with psycopg.connect(url.get_secret_value()) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))
        blocked = cli_factory("sweep")
    assert blocked.returncode == 1
    assert blocked.stdout == "another sweep is running; nothing done\n"
    assert sweeps(store)[-1][0] == second_id
