"""The command line: parsing, the events its commands publish, and exit statuses."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra.kafka import BrokerUnavailableError
from infra.lag import DEFAULT_TIMEOUT_S, PartitionLag
from infra.status_queries import OutboxSummary
from schemas.config import (
    ManualMembershipAdded,
    ManualMembershipRemoved,
    RuleDeleted,
    RulePaused,
    RulePublished,
    RulesReordered,
    config_event_adapter,
)
from schemas.errors import MentorflowError
from schemas.segments import Role, Rule, RuleAction, RuleStatus
from workers import cli, cli_admin
from workers.cli import (
    LAG_EXCEEDED_STATUS,
    _lag_json,
    _parser,
    main,
    print_status,
)
from workers.cli_admin import change_event, describe_change
from workers.config_outcome import ConfigOutcome
from workers.errors import WorkerError
from workers.status import RuleLine, StatusReport


@pytest.mark.parametrize("command", ["lag", "status", "relay", "worker"])
def test_the_operability_commands_exist_with_help(command):
    args = _parser().parse_args([command])

    assert args.command == command
    assert args.run.__doc__


def test_max_lag_is_a_whole_number_of_records():
    assert _parser().parse_args(["lag", "--max-lag", "0"]).max_lag == 0
    assert _parser().parse_args(["lag"]).max_lag is None


@pytest.mark.parametrize("text", ["-1", "ten", "1.5"])
def test_a_max_lag_that_is_not_a_whole_number_is_refused(text, capsys):
    with pytest.raises(SystemExit) as refused:
        _parser().parse_args(["lag", "--max-lag", text])

    assert refused.value.code == 2
    assert "expected a whole number of records" in capsys.readouterr().err


def test_lag_json_lists_each_partition_and_the_total():
    lags = [
        PartitionLag("hr.person-events", 0, 3, 5, 2),
        PartitionLag("mentorflow.config", 0, None, 1, 1),
    ]

    assert _lag_json("mentorflow", lags) == {
        "group": "mentorflow",
        "total_lag": 3,
        "partitions": [
            {
                "topic": "hr.person-events",
                "partition": 0,
                "committed": 3,
                "end": 5,
                "lag": 2,
            },
            {
                "topic": "mentorflow.config",
                "partition": 0,
                "committed": None,
                "end": 1,
                "lag": 1,
            },
        ],
    }


@dataclass
class StubLag:
    """What the stand-in for the lag reader answers, and the timeouts it got."""

    lags: list[PartitionLag] = field(default_factory=list)
    error: MentorflowError | None = None
    timeouts_s: list[float] = field(default_factory=list)


@pytest.fixture
def stub_lag(monkeypatch):
    """Run ``mentorflow lag`` in process against a stub instead of a cluster."""
    stub = StubLag()

    class Reader:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return None

        def read(self):
            if stub.error is not None:
                raise stub.error
            return stub.lags

    def for_worker(settings, timeout_s):
        stub.timeouts_s.append(timeout_s)
        return Reader()

    for name in list(os.environ):
        if name.startswith("MENTORFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENTORFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("MENTORFLOW_POSTGRES_URL", "postgresql://u@127.0.0.1:9/db")
    monkeypatch.setattr(cli, "LagReader", SimpleNamespace(for_worker=for_worker))
    # The test process's logging belongs to pytest.
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    return stub


# 3, not 1: cron and alerting tell "behind" from "could not ask".
@pytest.mark.parametrize(("max_lag", "status"), [("3", 0), ("2", 3), ("0", 3)])
def test_exceeding_the_lag_exits_3(stub_lag, capsys, max_lag, status):
    stub_lag.lags = [
        PartitionLag("hr.person-events", 0, 3, 5, 2),
        PartitionLag("mentorflow.config", 0, None, 1, 1),
    ]

    assert main(["lag", "--json", "--max-lag", max_lag]) == status

    captured = capsys.readouterr()
    assert json.loads(captured.out)["total_lag"] == 3
    exceeded = f"lag 3 exceeds --max-lag {max_lag}" in captured.err
    assert exceeded == (status == LAG_EXCEEDED_STATUS)


def test_failing_to_ask_the_cluster_exits_1_with_the_reason(stub_lag, capsys):
    stub_lag.error = BrokerUnavailableError("kafka at 127.0.0.1:9 did not answer")

    assert main(["lag", "--max-lag", "0", "--timeout-s", "2.5"]) == 1

    assert stub_lag.timeouts_s == [2.5]
    assert (
        capsys.readouterr().err == "mentorflow: kafka at 127.0.0.1:9 did not answer\n"
    )


def test_the_lag_timeout_defaults_to_the_readers_and_must_bound_something():
    assert _parser().parse_args(["lag"]).timeout_s == DEFAULT_TIMEOUT_S
    assert _parser().parse_args(["lag", "--timeout-s", "0.5"]).timeout_s == 0.5


@pytest.mark.parametrize("text", ["0", "-1", "ten", "nan", "inf", "3600"])
def test_a_lag_timeout_that_bounds_nothing_is_refused(text, capsys):
    with pytest.raises(SystemExit) as refused:
        _parser().parse_args(["lag", "--timeout-s", text])

    assert refused.value.code == 2
    assert "expected a number of seconds above 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["apply", "c.yaml"],
        ["confirm", "e-1"],
        ["member", "add", "guild", "p1", "--role", "mentor"],
        ["member", "remove", "guild", "p1", "--role", "mentee"],
        ["rule", "publish", "r1"],
        ["rule", "pause", "r1"],
        ["rule", "delete", "r1"],
        ["rule", "reorder", "r1", "r2"],
    ],
)
def test_the_wait_for_the_workers_verdict_is_a_number_of_seconds(command):
    assert _parser().parse_args(command).wait_s == 30
    assert _parser().parse_args([*command, "--wait-s", "0"]).wait_s == 0
    assert _parser().parse_args([*command, "--wait-s", "2.5"]).wait_s == 2.5


@pytest.mark.parametrize("text", ["-1", "ten", "nan", "inf"])
def test_a_wait_that_is_not_a_number_of_seconds_is_refused(text, capsys):
    with pytest.raises(SystemExit) as refused:
        _parser().parse_args(["apply", "c.yaml", "--wait-s", text])

    assert refused.value.code == 2
    assert "expected a number of seconds from 0" in capsys.readouterr().err


def test_lag_against_an_unreachable_bootstrap_exits_1_within_its_timeout(free_port):
    bootstrap = f"127.0.0.1:{free_port}"
    # Only this test's settings: none of the caller's, aliases included.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MENTORFLOW_")
        and name not in ("DATABASE_URL", "KAFKA_BOOTSTRAP")
    }
    environment |= {
        "MENTORFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "MENTORFLOW_POSTGRES_URL": "postgresql://u@127.0.0.1:9/db",
    }

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "lag", "--timeout-s", "2"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed_s = time.monotonic() - started

    assert result.returncode == 1
    # The timeout, plus starting Python and importing the command line.
    assert elapsed_s < 2 + 6
    # One line naming the bootstrap, none of kafka-python's own.
    (line,) = result.stderr.splitlines()
    assert line.startswith("mentorflow: reading the lag of group 'mentorflow'")
    assert f"from kafka at {bootstrap} failed after 2." in line
    assert result.stdout == ""


def test_schemas_export_into_a_file_is_refused_with_the_path(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")

    assert main(["schemas", "export", str(taken)]) == 1
    assert main(["schemas", "export", str(taken / "sub")]) == 1

    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"mentorflow: cannot write the schemas into {taken}: File exists;"
        " expected a folder, or a path where one can be created",
        f"mentorflow: cannot write the schemas into {taken / 'sub'}: Not a"
        " directory; expected a folder, or a path where one can be created",
    ]


def test_status_prints_ids_with_brackets_as_they_are(capsys, monkeypatch):
    # Rich would read "[emea]" as a style and drop it, and fail on "[/x]".
    rule = Rule(
        rule_id="mentors[emea]",
        action=RuleAction.ADD,
        program_id="guild[/x]",
        role=Role.MENTOR,
        segment_id="s[bold]",
        position=0,
        status=RuleStatus.PUBLISHED,
    )
    report = StatusReport(
        rules=[RuleLine(rule, decided=1, pair_members=1)],
        conflicts=[],
        persons={"active": 1},
        last_sweep=None,
        outbox=OutboxSummary(backlog=0, oldest_at=None),
        lags=[],
    )

    monkeypatch.setattr(cli.console, "width", 200)
    print_status(report, date(2026, 6, 1))

    out = capsys.readouterr().out
    for text in ("mentors[emea]", "guild[/x]", "s[bold]"):
        assert text in out


def test_a_worker_refuses_a_web_port_that_is_taken_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(WorkerError, match="MENTORFLOW_WEB_PORT") as refused:
            cli._check_web_port("127.0.0.1", port)

    assert f"127.0.0.1:{port}" in str(refused.value)
    # Free again, and no web port at all, both pass.
    cli._check_web_port("127.0.0.1", port)
    cli._check_web_port("127.0.0.1", 0)


def test_a_worker_refuses_a_web_host_it_cannot_listen_on_naming_the_setting():
    # 192.0.2.1 is set aside for documentation: no interface here has it.
    with pytest.raises(WorkerError, match="MENTORFLOW_WEB_HOST") as refused:
        cli._check_web_port("192.0.2.1", 6066)

    assert "MENTORFLOW_WEB_PORT" not in str(refused.value)


# -- membership and rule changes ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["member", "add", "guild", "p1", "--role", "mentor"],
            ManualMembershipAdded,
        ),
        (
            ["member", "remove", "guild", "p1", "--role", "mentee"],
            ManualMembershipRemoved,
        ),
    ],
)
def test_member_commands_build_the_manual_membership_events(argv, expected):
    args = _parser().parse_args(argv)

    event = change_event(args)

    assert isinstance(event, ManualMembershipAdded | ManualMembershipRemoved)
    assert type(event) is expected
    assert (event.program_id, event.role, event.person_id) == (
        "guild",
        Role(argv[-1]),
        "p1",
    )
    # What goes onto the config topic reads back as the same event.
    assert config_event_adapter.validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("command", "expected"),
    [("publish", RulePublished), ("pause", RulePaused), ("delete", RuleDeleted)],
)
def test_rule_commands_build_the_rule_events(command, expected):
    event = change_event(_parser().parse_args(["rule", command, "add-ops"]))

    assert isinstance(event, RulePublished | RulePaused | RuleDeleted)
    assert type(event) is expected
    assert event.rule_id == "add-ops"
    assert config_event_adapter.validate_json(event.model_dump_json()) == event


def test_rule_reorder_lists_the_rules_in_the_order_given():
    event = change_event(_parser().parse_args(["rule", "reorder", "b", "a", "c"]))

    assert isinstance(event, RulesReordered)
    assert event.rule_ids == ["b", "a", "c"]


def test_each_change_gets_an_event_id_of_its_own():
    args = _parser().parse_args(["rule", "pause", "r1"])

    assert change_event(args).event_id != change_event(args).event_id


@pytest.mark.parametrize(
    "argv",
    [
        ["member", "add", "guild", "p1"],
        ["member", "add", "guild", "p1", "--role", "buddy"],
        ["member", "remove", "guild", "--role", "mentor"],
        ["member", "add", "", "p1", "--role", "mentor"],
        ["member", "add", "guild", "p" * 201, "--role", "mentor"],
        ["rule", "publish"],
        ["rule", "pause", ""],
        ["rule", "reorder"],
        ["rule", "archive", "r1"],
        ["member"],
        ["rule"],
    ],
)
def test_a_change_missing_or_misspelling_an_argument_is_refused(argv, capsys):
    with pytest.raises(SystemExit) as refused:
        _parser().parse_args(argv)

    assert refused.value.code == 2
    assert capsys.readouterr().err


def test_an_id_too_long_is_refused_with_the_limit_and_its_length(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["rule", "pause", "r" * 201])

    err = capsys.readouterr().err
    assert "expected an id of 1 to 200 characters and no NUL" in err
    assert "(201 characters)" in err


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (
            ["member", "add", "guild", "p1", "--role", "mentor"],
            "the manual addition of p1 to guild as mentor",
        ),
        (
            ["member", "remove", "guild", "p1", "--role", "mentee"],
            "the manual removal of p1 from guild as mentee",
        ),
        (["rule", "publish", "r1"], "the publication of rule r1"),
        (["rule", "pause", "r1"], "the pause of rule r1"),
        (["rule", "delete", "r1"], "the deletion of rule r1"),
        (["rule", "reorder", "r2", "r1"], "the dashboard order r2, r1"),
    ],
)
def test_each_change_is_named_for_the_admin(argv, what):
    assert describe_change(change_event(_parser().parse_args(argv))) == what


@dataclass
class StubChange:
    """What the stand-in for publishing answers, and the events it was given."""

    outcome: ConfigOutcome = field(default_factory=lambda: ConfigOutcome("applied"))
    rule_ids: list[str] = field(default_factory=list)
    published: list[tuple[object, float]] = field(default_factory=list)


@pytest.fixture
def stub_change(monkeypatch):
    """Run the change commands in process, publishing to a stub."""
    stub = StubChange()

    class Transaction:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return None

        def load_rules(self):
            return [SimpleNamespace(rule_id=rule_id) for rule_id in stub.rule_ids]

    class Store:
        def transaction(self):
            return Transaction()

        def close(self):
            return None

    def publish_config(settings, store, event, wait_s):
        stub.published.append((event, wait_s))
        return stub.outcome

    for name in list(os.environ):
        if name.startswith("MENTORFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENTORFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("MENTORFLOW_POSTGRES_URL", "postgresql://u@127.0.0.1:9/db")
    monkeypatch.setattr(cli_admin, "ensure_topics", lambda kafka: None)
    monkeypatch.setattr(cli_admin, "open_store", lambda settings: Store())
    monkeypatch.setattr(cli_admin, "publish_config", publish_config)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    monkeypatch.setattr(cli_admin.console, "width", 200)
    return stub


@pytest.mark.parametrize(
    ("outcome", "status", "message"),
    [
        (ConfigOutcome("applied"), 0, "applied the manual addition of p1 to guild"),
        (
            ConfigOutcome("rejected", "manual change names unknown program 'guild'"),
            1,
            "the worker rejected the manual addition of p1 to guild as mentor:"
            " manual change names unknown program 'guild'",
        ),
        (
            ConfigOutcome("held", "6 of 8 members of guild"),
            4,
            "held the manual addition of p1 to guild as mentor",
        ),
        (ConfigOutcome("pending"), 5, "but no worker processed it yet"),
    ],
)
def test_a_change_exits_as_apply_does_on_each_verdict(
    stub_change, capsys, outcome, status, message
):
    stub_change.outcome = outcome

    argv = ["member", "add", "guild", "p1", "--role", "mentor", "--wait-s", "7"]
    assert main(argv) == status

    ((event, wait_s),) = stub_change.published
    assert isinstance(event, ManualMembershipAdded) and wait_s == 7
    assert message in capsys.readouterr().out


def test_deleting_an_unknown_rule_is_refused_before_anything_is_published(
    stub_change, capsys
):
    stub_change.rule_ids = ["add-ops", "remove-sales"]

    assert main(["rule", "delete", "add-opps"]) == 1

    assert stub_change.published == []
    assert capsys.readouterr().err == (
        "mentorflow: no rule 'add-opps' to delete; rules now: add-ops, remove-sales\n"
    )


def test_deleting_a_known_rule_is_published(stub_change):
    stub_change.rule_ids = ["add-ops"]

    assert main(["rule", "delete", "add-ops"]) == 0

    ((event, _),) = stub_change.published
    assert isinstance(event, RuleDeleted) and event.rule_id == "add-ops"


# -- the README ------------------------------------------------------------------


def _command_names(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> set[tuple[str, ...]]:
    """Every command of the parser, nested ones as tuples of words."""
    names: set[tuple[str, ...]] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names |= _command_names(sub, (*prefix, name)) or {(*prefix, name)}
    return names


def test_the_readme_lists_every_command_it_runs_and_no_other():
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("## Running it", 1)[1].split("```", 2)[1]
    commands = _command_names(_parser())

    listed = set()
    for line in section.splitlines():
        words = re.findall(r"[a-z][a-z-]*", line.split("#", 1)[0])
        if words[:1] != ["mentorflow"]:
            continue
        known = [c for c in commands if tuple(words[1 : 1 + len(c)]) == c]
        listed.add(known[0] if known else tuple(words[1:3]))

    assert listed - commands == set()
    # The demo has a section of its own, under Set-up.
    assert commands - listed == {("demo",)}


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_one_shot_commands_show_kafka_pythons_lines_only_at_debug(
    monkeypatch, caplog, level, shown
):
    for name in list(os.environ):
        if name.startswith("MENTORFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENTORFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("MENTORFLOW_POSTGRES_URL", "postgresql://u@127.0.0.1:9/db")
    monkeypatch.setenv("MENTORFLOW_LOG_LEVEL", level)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)

    def status_with_a_refused_connection(settings, args):
        logging.getLogger("kafka.conn").warning("connect attempt to broker refused")
        return 0

    monkeypatch.setattr(cli, "run_status", status_with_a_refused_connection)
    kafka = logging.getLogger("kafka")
    found = kafka.level
    caplog.set_level(logging.DEBUG)
    try:
        # setLevel, not setattr: it also clears the loggers' cached levels.
        kafka.setLevel(logging.NOTSET)

        assert main(["status"]) == 0
        assert any(r.name == "kafka.conn" for r in caplog.records) is shown
        # The block restores the level it found.
        assert kafka.level == logging.NOTSET
    finally:
        kafka.setLevel(found)


@pytest.mark.parametrize(
    ("count", "said"), [(0, "0 rules"), (1, "1 rule"), (2, "2 rules")]
)
def test_counts_are_said_in_the_singular_only_for_one(count, said):
    assert cli.counted(count, "rule") == said


def test_piped_output_gets_room_for_a_table_unless_columns_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
):
    # Under pytest, standard output is captured: a pipe, not a terminal.
    monkeypatch.delenv("COLUMNS", raising=False)
    assert not sys.stdout.isatty()

    assert cli_admin.command_console().width == cli_admin.PIPED_WIDTH

    monkeypatch.setenv("COLUMNS", "120")
    assert cli_admin.command_console().width == 120
