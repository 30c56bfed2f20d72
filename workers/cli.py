"""The ``mentorflow`` command line."""

from __future__ import annotations

import argparse
import errno
import functools
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from infra.kafka import ensure_topics, make_producer
from infra.lag import DEFAULT_TIMEOUT_S as DEFAULT_LAG_TIMEOUT_S
from infra.lag import LagReader, PartitionLag, total_lag
from infra.logging import configure_logging, logging_config, silenced
from infra.publisher import BatchPublisher
from infra.settings import (
    KafkaSettings,
    PostgresSettings,
    Settings,
    WorkerSettings,
    unknown_variables,
    variable_names,
)
from rules.explain import explain_person
from schemas.errors import MentorflowError
from schemas.export import export_json_schemas
from schemas.segments import Role
from workers.cli_admin import (
    add_admin_commands,
    add_wait_option,
    command_console,
    publish_and_report,
)
from workers.config_file import load_config_file
from workers.demo import DEFAULT_AS_OF, DemoInputs, DemoSummary, run_demo
from workers.errors import WorkerError
from workers.hr_files import history_events, read_roster, snapshot_events
from workers.publishing import keyed_by_person, publish_events
from workers.relay import OutboxRelay, relay_until_stopped
from workers.runtime import (
    build_engine,
    embedded_stack,
    open_store,
    running_stack_settings,
)

if TYPE_CHECKING:
    from workers.status import StatusReport

logger = logging.getLogger(__name__)

console = command_console()

# `mentorflow lag --max-lag N` exits with this status past N, so that cron and
# alerting can tell "behind" from "could not ask" (1).
LAG_EXCEEDED_STATUS = 3

EMBEDDED_LAG_NOTE = (
    "note: the embedded broker reports end offsets wrongly when a batch holds"
    " several records, so these figures may read low"
)

Command = Callable[[Settings, argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as error:
        print(_settings_problem(error), file=sys.stderr)
        return 2
    unknown = unknown_variables()
    if unknown:
        print(
            "mentorflow: " + "\n  ".join(["invalid settings:", *unknown]),
            file=sys.stderr,
        )
        return 2
    if args.command != "worker":
        configure_logging(settings.worker.log_level, settings.worker.log_format)
    # A one-shot command reports a broker that is away in one line of its own;
    # kafka-python's retries, a line each, show only at DEBUG.
    quiet = (
        args.command not in LONG_RUNNING_COMMANDS
        and settings.worker.log_level != "DEBUG"
    )
    try:
        command: Command = args.run
        with silenced("kafka", enabled=quiet):
            return command(settings, args)
    except MentorflowError as error:
        print(f"mentorflow: {error}", file=sys.stderr)
        return 1


def counted(count: int, noun: str) -> str:
    """Say "1 rule" or "3 rules"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# Commands that run until stopped, whose logs an operator reads as they come.
LONG_RUNNING_COMMANDS = frozenset({"worker", "relay", "stack", "demo"})


def load_settings() -> Settings:
    """Read every setting from the environment."""
    return Settings(PostgresSettings(), KafkaSettings(), WorkerSettings())


# -- commands -----------------------------------------------------------------


def run_demo_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run the whole pipeline on the bundled sample roster."""
    data_dir = settings.worker.data_dir / "demo"
    summary = run_demo(settings, DemoInputs.bundled(), args.as_of, data_dir)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print_demo_summary(summary)
    return 0


def print_demo_summary(summary: DemoSummary) -> None:
    """Print the demo's result as tables."""
    table = Table(title=f"Program membership as of {summary.as_of}")
    table.add_column("program")
    table.add_column("role")
    table.add_column("members", justify="right")
    table.add_column("first members")
    for pair in summary.pairs:
        table.add_row(
            pair.program_id, pair.role, str(pair.members), ", ".join(pair.first_members)
        )
    console.print(table)
    console.print(f"persons: {summary.persons}")
    console.print(f"membership events published: {summary.membership_events}")
    console.print(f"stale events ignored: {summary.stale_events}")
    console.print(f"dead letters: {summary.dead_letters}")
    console.print(f"job history rows rejected: {summary.rejected_history_rows}")
    for line in summary.rejected:
        console.print(f"  {line}")


def run_stack(settings: Settings, args: argparse.Namespace) -> int:
    """Run the embedded PostgreSQL and broker until interrupted."""
    if not settings.is_embedded:
        raise WorkerError("`stack` starts the embedded services; unset the URLs first")
    with embedded_stack(settings, settings.worker.data_dir) as live:
        url = live.postgres.url
        console.print(
            f"MENTORFLOW_POSTGRES_URL={url.get_secret_value() if url else ''}"
        )
        console.print(f"MENTORFLOW_KAFKA_BOOTSTRAP={live.kafka.bootstrap}")
        console.print("the embedded stack runs until Ctrl-C")
        wait_for_stop_signal()
    return 0


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM arrives, even in a background job."""
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # A shell starts background jobs with SIGINT ignored, and an ignored signal
    # is dropped before sigwait can see it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.sigwait(stop_signals)


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the worker: consume, evaluate, apply, publish."""
    if settings.is_embedded:
        try:
            settings = running_stack_settings(settings)
        except WorkerError:
            with embedded_stack(settings, settings.worker.data_dir) as live:
                return _run_worker(live)
    return _run_worker(running_stack_settings(settings))


def _run_worker(settings: Settings) -> int:
    import faust

    from workers.app import build_app
    from workers.engine_process import EngineProcess
    from workers.metrics import WorkerMetrics

    # faust creates its folder in the data folder, but not the data folder:
    # with external services nothing else made it.
    data_dir = settings.worker.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkerError(
            f"cannot create the data folder {data_dir}: {error.strerror};"
            " set MENTORFLOW_DATA_DIR to a folder the worker may write in"
        ) from None
    _check_web_port(settings.worker.web_host, settings.worker.web_port)
    store = open_store(settings)
    ensure_topics(settings.kafka)
    engine = build_engine(settings, store)
    publisher = BatchPublisher(settings.kafka)
    metrics = WorkerMetrics()
    relay = OutboxRelay(
        store,
        publisher,
        settings.worker.relay_batch_size,
        on_published=metrics.record_published,
    )
    lag_reader = LagReader.for_worker(settings.kafka)
    worker_settings = settings.worker
    engine_process = (
        EngineProcess(settings)
        if worker_settings.engine_process and worker_settings.batch_size > 1
        else None
    )
    app = build_app(settings, engine, relay, metrics, lag_reader, engine_process)
    worker = faust.Worker(
        app,
        loglevel=settings.worker.log_level,
        logging_config=logging_config(
            settings.worker.log_level, settings.worker.log_format
        ),
        redirect_stdouts=False,
    )
    try:
        # With the broker away, stopping the worker takes about a minute.
        worker.execute_from_commandline()
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        if engine_process is not None:
            engine_process.close()
        # The worker gave what it took its time already (see the app's
        # _finish_in_flight); a statement still running in one of its threads,
        # a sweep's or one waiting on a lock, would hold the exit until it ends.
        if cancelled := store.cancel_running():
            logger.warning(
                "cancelled statements still running as the worker stopped count=%d;"
                " their transactions roll back",
                cancelled,
            )
        lag_reader.close()
        publisher.close()
        store.close()
    return 0


def _check_web_port(host: str, port: int) -> None:
    """Refuse to start when the web port is taken, before faust fails on it.

    faust binds the port only once the worker has joined its group, and then
    dies with a long traceback; another worker on the same host is the usual
    cause.
    """
    if not port:
        return
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # As the web server binds: a port left in TIME_WAIT is free to take.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except socket.gaierror as error:
        raise WorkerError(
            f"cannot serve the web port on {host!r}: {error.strerror}; set"
            " MENTORFLOW_WEB_HOST to an address of this host, like 127.0.0.1"
        ) from None
    except OSError as error:
        if error.errno == errno.EADDRNOTAVAIL:
            raise WorkerError(
                f"cannot serve the web port on {host}: no interface of this host"
                " has that address; set MENTORFLOW_WEB_HOST to one that does,"
                " like 127.0.0.1"
            ) from None
        raise WorkerError(
            f"cannot serve the web port {host}:{port}: {error.strerror} (another"
            " worker on this host?); set MENTORFLOW_WEB_PORT to a free port, or to"
            " 0 to serve no web port"
        ) from None
    finally:
        probe.close()


def run_relay(settings: Settings, args: argparse.Namespace) -> int:
    """Publish the outbox to Kafka until stopped, consuming nothing."""
    settings = running_stack_settings(settings)
    store = open_store(settings)
    ensure_topics(settings.kafka)
    publisher = BatchPublisher(settings.kafka)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, request_stop)
    logger.info("relay started interval_s=%s", settings.worker.relay_interval_s)
    try:
        relay = OutboxRelay(
            store,
            publisher,
            settings.worker.relay_batch_size,
            on_slow=functools.partial(logger.warning, "relay waiting: %s"),
        )
        published = relay_until_stopped(relay, stop, settings.worker.relay_interval_s)
    finally:
        publisher.close()
        store.close()
    logger.info("relay stopped published=%d", published)
    return 0


def run_lag(settings: Settings, args: argparse.Namespace) -> int:
    """Show the worker group's lag on each partition; fail past --max-lag."""
    embedded = settings.is_embedded
    settings = running_stack_settings(settings)
    # The error names the bootstrap and the time spent; kafka-python's line
    # about each refused connection would only bury it, so it shows at DEBUG.
    quiet = settings.worker.log_level != "DEBUG"
    with (
        silenced("kafka", enabled=quiet),
        LagReader.for_worker(settings.kafka, args.timeout_s) as reader,
    ):
        lags = reader.read()
    total = total_lag(lags)
    if args.json:
        print(json.dumps(_lag_json(settings.kafka.consumer_group, lags), indent=2))
    else:
        console.print(_lag_table(settings.kafka.consumer_group, lags))
        console.print(f"total lag: {total}")
        if embedded:
            console.print(EMBEDDED_LAG_NOTE)
    if args.max_lag is not None and total > args.max_lag:
        print(
            f"mentorflow: lag {total} exceeds --max-lag {args.max_lag}",
            file=sys.stderr,
        )
        return LAG_EXCEEDED_STATUS
    return 0


def _lag_table(group: str, lags: list[PartitionLag]) -> Table:
    table = Table(title=f"lag of consumer group {group}")
    table.add_column("topic")
    table.add_column("partition", justify="right")
    table.add_column("committed", justify="right")
    table.add_column("end", justify="right")
    table.add_column("lag", justify="right")
    for lag in lags:
        table.add_row(
            lag.topic,
            str(lag.partition),
            "-" if lag.committed is None else str(lag.committed),
            str(lag.end),
            str(lag.lag),
        )
    return table


def _lag_json(group: str, lags: list[PartitionLag]) -> dict[str, Any]:
    return {
        "group": group,
        "total_lag": total_lag(lags),
        "partitions": [
            {
                "topic": lag.topic,
                "partition": lag.partition,
                "committed": lag.committed,
                "end": lag.end,
                "lag": lag.lag,
            }
            for lag in lags
        ],
    }


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    """Show rules with member counts, conflicts, last sweep, outbox and lag."""
    from workers.status import read_status

    embedded = settings.is_embedded
    settings = running_stack_settings(settings)
    store = open_store(settings, read_only=True)
    try:
        today = build_engine(settings, store).clock.today()
        report = read_status(store, settings.kafka, today)
    finally:
        store.close()
    print_status(report, today, embedded)
    return 0


def print_status(report: StatusReport, today: date, embedded: bool = False) -> None:
    """Print the status report as tables."""
    rules = Table(title="rules in dashboard order")
    rules.add_column("pos", justify="right")
    # Ids wrap rather than lose their ends in a narrow terminal.
    for column in ("rule", "action", "program", "role", "segment", "status"):
        rules.add_column(column, overflow="fold")
    rules.add_column("decided", justify="right")
    rules.add_column("members", justify="right")
    for line in report.rules:
        rule = line.rule
        rules.add_row(
            str(rule.position),
            rule.rule_id,
            rule.action.value,
            rule.program_id,
            rule.role.value,
            rule.segment_id,
            rule.status.value,
            str(line.decided),
            str(line.pair_members),
        )
    console.print(rules)

    conflicts = Table(title=f"conflicts as of {today} (people both rules match)")
    for column in ("program", "role", "add rule", "remove rule", "decided by"):
        conflicts.add_column(column)
    conflicts.add_column("people", justify="right")
    for pair, people in report.conflicts:
        conflicts.add_row(
            pair.program_id,
            pair.role.value,
            f"{pair.add_rule_id} ({pair.add_position})",
            f"{pair.remove_rule_id} ({pair.remove_position})",
            pair.winner,
            str(people),
        )
    console.print(conflicts)

    console.print(_status_summary(report, embedded))


def _status_summary(report: StatusReport, embedded: bool) -> Table:
    summary = Table(title="pipeline", show_header=False)
    summary.add_column("what")
    summary.add_column("value")
    persons = ", ".join(f"{n} {status}" for status, n in sorted(report.persons.items()))
    summary.add_row("persons", persons or "none")
    sweep = report.last_sweep
    if sweep is None or sweep.finished_at is None:
        summary.add_row("last sweep", "none yet")
    else:
        summary.add_row(
            "last sweep",
            f"{sweep.finished_at.isoformat(timespec='seconds')}:"
            f" {sweep.persons} persons, {sweep.changes} changes",
        )
    backlog = f"{report.outbox.backlog} events"
    if report.outbox.oldest_at is not None:
        oldest = report.outbox.oldest_at.isoformat(timespec="seconds")
        backlog += f", oldest written {oldest}"
    summary.add_row("outbox backlog", backlog)
    if report.lags is None:
        summary.add_row("lag", f"unavailable: {report.lag_error}")
    else:
        lag = f"{total_lag(report.lags)} records over {len(report.lags)} partitions"
        if embedded:
            lag += " (the embedded broker may report it low)"
        summary.add_row("lag", lag)
    return summary


def run_import(settings: Settings, args: argparse.Namespace) -> int:
    """Publish a roster CSV as person snapshots."""
    settings = running_stack_settings(settings)
    roster = read_roster(args.roster)
    events = snapshot_events(roster)
    producer = make_producer(settings.kafka)
    try:
        publish_events(
            producer, settings.kafka.person_topic, keyed_by_person(events), "import"
        )
    finally:
        producer.close()
    snapshots = counted(len(events), "snapshot")
    console.print(f"published {snapshots} to {settings.kafka.person_topic}")
    return 0


def run_history(settings: Settings, args: argparse.Namespace) -> int:
    """Publish a job history CSV as dated job changes."""
    settings = running_stack_settings(settings)
    roster = read_roster(args.roster)
    events, rejected = history_events(args.history, roster)
    for row in rejected:
        console.print(f"rejected {row.person_id} {row.start_date}: {row.reason}")
    producer = make_producer(settings.kafka)
    try:
        publish_events(
            producer, settings.kafka.person_topic, keyed_by_person(events), "history"
        )
    finally:
        producer.close()
    console.print(f"published {len(events)} job changes")
    return 0


def run_apply(settings: Settings, args: argparse.Namespace) -> int:
    """Publish a config file's programs, segments and rules as one config event."""
    config = load_config_file(args.config)
    settings = running_stack_settings(settings)
    ensure_topics(settings.kafka)
    event = config.to_event()
    what = (
        f"{counted(len(config.programs), 'program')},"
        f" {counted(len(config.segments), 'segment')}"
        f" and {counted(len(config.rules), 'rule')}"
    )
    store = open_store(settings)
    try:
        return publish_and_report(settings, store, event, what, args.wait_s)
    finally:
        store.close()


def run_sweep(settings: Settings, args: argparse.Namespace) -> int:
    """Re-run every rule over everybody now."""
    store = open_store(running_stack_settings(settings))
    try:
        result = build_engine(settings, store).sweep()
    finally:
        store.close()
    if result is None:
        console.print("another sweep is running; nothing done")
        return 1
    console.print(
        f"sweep {result.sweep_id}: {result.persons} persons, {result.changes} changes"
    )
    return 0


def run_members(settings: Settings, args: argparse.Namespace) -> int:
    """List the members of a program."""
    store = open_store(running_stack_settings(settings), read_only=True)
    try:
        with store.transaction() as tx:
            if not tx.program_exists(args.program):
                raise WorkerError(f"unknown program {args.program!r}")
            rows = tx.members(args.program, args.role)
    finally:
        store.close()
    table = Table(title=f"members of {args.program}")
    for column in ("role", "person", "source", "decided by", "since"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.role.value,
            row.person_id,
            row.source,
            row.decided_by,
            row.added_at.isoformat(timespec="seconds"),
        )
    console.print(table)
    console.print(counted(len(rows), "member"))
    return 0


def run_explain(settings: Settings, args: argparse.Namespace) -> int:
    """Explain, for each program role, which rules match a person and why."""
    store = open_store(running_stack_settings(settings), read_only=True)
    engine = build_engine(settings, store)
    try:
        with store.transaction() as tx:
            person = tx.load_person(args.person, for_update=False)
            if person is None:
                raise WorkerError(f"unknown person {args.person!r}")
            held = tx.memberships_of([args.person]).get(args.person, set())
            ruleset = tx.load_ruleset()
    finally:
        store.close()
    today = args.as_of or engine.clock.today()
    console.print(f"person {person.person_id} ({person.status.value}), as of {today}")
    if not person.is_active:
        console.print(f"in no segment: the person is {person.status.value}")
        return 0
    for explanation in explain_person(ruleset, person.attributes, held, today):
        console.print()
        console.print(Text(explanation.verdict, style="bold"))
        for rule in explanation.rules:
            mark = "matches" if rule.matched else "does not match"
            console.print(
                f"  {rule.position:>3} {rule.action:<6} {rule.rule_id}"
                f" (segment {rule.segment_id}) {mark}",
                highlight=False,
            )
            for line in rule.conditions:
                state = "yes" if line.held else "no "
                console.print(
                    f"        {state} {'  ' * line.depth}{line.text}",
                    highlight=False,
                )
    return 0


def run_schemas_export(settings: Settings, args: argparse.Namespace) -> int:
    """Write the JSON Schemas of every event to a folder."""
    try:
        written = export_json_schemas(args.directory)
    except OSError as error:
        raise WorkerError(
            f"cannot write the schemas into {args.directory}: {error.strerror};"
            " expected a folder, or a path where one can be created"
        ) from None
    for path in written:
        console.print(f"wrote {path}")
    return 0


# -- parsing ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mentorflow",
        description="Keeps mentorship-program membership in step with HR data.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help=run_demo_command.__doc__)
    demo.add_argument(
        "--as-of",
        type=_date,
        default=DEFAULT_AS_OF,
        help=f"today, for date rules (default {DEFAULT_AS_OF})",
    )
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(run=run_demo_command)

    commands.add_parser("stack", help=run_stack.__doc__).set_defaults(run=run_stack)
    commands.add_parser("worker", help=run_worker.__doc__).set_defaults(run=run_worker)

    importing = commands.add_parser("import", help=run_import.__doc__)
    importing.add_argument("roster", type=Path, metavar="ROSTER.csv")
    importing.set_defaults(run=run_import)

    history = commands.add_parser("history", help=run_history.__doc__)
    history.add_argument("history", type=Path, metavar="JOB_HISTORY.csv")
    history.add_argument("--roster", type=Path, required=True, metavar="ROSTER.csv")
    history.set_defaults(run=run_history)

    apply = commands.add_parser("apply", help=run_apply.__doc__)
    apply.add_argument("config", type=Path, metavar="CONFIG.yaml")
    add_wait_option(apply)
    apply.set_defaults(run=run_apply)

    commands.add_parser("sweep", help=run_sweep.__doc__).set_defaults(run=run_sweep)
    commands.add_parser("relay", help=run_relay.__doc__).set_defaults(run=run_relay)

    lag = commands.add_parser("lag", help=run_lag.__doc__)
    lag.add_argument(
        "--max-lag",
        type=_count,
        default=None,
        metavar="N",
        help=f"exit {LAG_EXCEEDED_STATUS} when the total lag exceeds N",
    )
    lag.add_argument(
        "--timeout-s",
        type=_timeout_s,
        default=DEFAULT_LAG_TIMEOUT_S,
        metavar="SECONDS",
        help="give up (exit 1) when the cluster has not answered within SECONDS,"
        f" connecting included (default {DEFAULT_LAG_TIMEOUT_S:g})",
    )
    lag.add_argument("--json", action="store_true", help="print JSON")
    lag.set_defaults(run=run_lag)

    commands.add_parser("status", help=run_status.__doc__).set_defaults(run=run_status)

    members = commands.add_parser("members", help=run_members.__doc__)
    members.add_argument("program")
    members.add_argument("--role", type=Role, choices=list(Role))
    members.set_defaults(run=run_members)

    explain = commands.add_parser("explain", help=run_explain.__doc__)
    explain.add_argument("person")
    explain.add_argument("--as-of", type=_date, default=None)
    explain.set_defaults(run=run_explain)

    add_admin_commands(commands)

    schemas = commands.add_parser("schemas", help="work with the event schemas")
    schema_commands = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schema_commands.add_parser("export", help=run_schemas_export.__doc__)
    export.add_argument("directory", type=Path, metavar="DIR")
    export.set_defaults(run=run_schemas_export)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of records like 100, got {text!r}"
        )
    return value


def _timeout_s(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    # NaN and infinity are floats too, and neither bounds anything.
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0 and below 3600 like 10, got {text!r}"
        )
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2018-06-30, got {text!r}"
        ) from None


def _settings_problem(error: ValidationError) -> str:
    prefixes = {
        "PostgresSettings": "MENTORFLOW_POSTGRES_",
        "KafkaSettings": "MENTORFLOW_KAFKA_",
        "WorkerSettings": "MENTORFLOW_",
    }
    prefix = prefixes.get(error.title, "")
    lines = ["mentorflow: invalid settings:"]
    for detail in error.errors(include_url=False):
        name = "_".join(str(part) for part in detail["loc"]).upper()
        # A field read under an alias reports the variable's own name.
        if not name.startswith(("MENTORFLOW_", "DATABASE_URL", "KAFKA_")):
            name = prefix + name
        name = variable_names(name)
        hint = _FORMS.get(str(detail["type"]).split("_")[0], "")
        # URLs and passwords may hold credentials: never echo them.
        secret = "URL" in name or "PASSWORD" in name
        got = "a value" if secret else repr(detail.get("input"))
        lines.append(f"  {name}: {detail['msg']} (got {got}){hint}")
    return "\n".join(lines)


# The expected form of a setting, by the kind of pydantic error it raised.
_FORMS = {
    "date": "; expected a date like 2018-06-30",
    "int": "; expected a whole number",
    "float": "; expected a number",
    "bool": "; expected true or false",
}


if __name__ == "__main__":
    sys.exit(main())
