"""mentorflow's benchmark: its figures beside ceilings measured in the same run.

``python -m bench.run [part]`` (``make bench`` runs them all) writes raw results
to bench/results/<part>.json and prints them. The parts:

- ``throughput``: starts an Apache Kafka broker and a fresh PostgreSQL
  database, publishes person events for 10,000 persons under 50 published
  rules over 10 programs, and measures throughput of one and of two
  ``mentorflow worker`` processes beside ceilings read from the same topic (a
  faust agent that only counts events, a bare aiokafka consumer), then
  latency at a steady rate, from an event produced to its membership event
  readable on the membership topic;
- ``sweep``, ``incremental``, ``memory``: bulk-loaded populations of up to
  1,000,000 persons under 200 rules (bench/scale.py);
- ``plots``: PNG plots of the saved results in bench/plots/ (bench/plots.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import psycopg
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from bench.cpu import CpuMeter, with_children
from infra.database import migrate, open_pool
from infra.kafka import client_options, ensure_topics, make_producer
from infra.kafka_broker import ApacheKafkaBroker
from infra.settings import KafkaSettings, PostgresSettings, Settings, WorkerSettings
from infra.store import SourcePosition, Store
from schemas.common import new_event_id
from schemas.config import CONFIG_KEY
from schemas.segments import Program, Role, RuleAction, Segment
from workers.config_file import ConfigFile, RuleEntry
from workers.demo import worker_process
from workers.runtime import build_engine

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
ENSURE_POSTGRES = ROOT / "infra" / "scripts" / "ensure-postgres.sh"
TODAY = date(2026, 6, 1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEPARTMENTS = ("eng", "sales", "support", "ops", "finance", "hr", "legal", "design")
LOCATIONS = ("paris", "lyon", "berlin", "austin", "tokyo")
PROGRAMS = 10
PARTITIONS = 6
# The throughput goal for one worker on this 2-core machine.
THROUGHPUT_GOAL_PER_S = 6_000


@dataclass(frozen=True)
class WorkerRun:
    """One measured run of the worker over the whole topic."""

    processed_per_s: float
    published_per_s: float
    peak_rss_mib: float
    membership_events: int
    # CPU microseconds per event, by part, from the first event to the drain.
    cpu_us_per_event: dict[str, float]
    machine_busy_share: float


class WorkerSetup(NamedTuple):
    """One way of running workers that the throughput part measures."""

    label: str
    workers: int
    # A ``mentorflow relay`` process publishes instead of the workers.
    relay_process: bool = False
    # Batches apply in each worker's child process, not in its threads.
    engine_process: bool = True


ONE = "1 worker"
TWO = "2 workers"
ONE_IN_THREADS = "1 worker, batches in threads"
TWO_IN_THREADS = "2 workers, batches in threads"
WORKER_SETUPS = (
    WorkerSetup(ONE, 1),
    WorkerSetup(TWO, 2),
    WorkerSetup("1 worker + relay process", 1, relay_process=True),
    # One worker in threads leaves a core's worth idle, so this pair shows how
    # workers scale while the machine has room for them.
    WorkerSetup(ONE_IN_THREADS, 1, engine_process=False),
    WorkerSetup(TWO_IN_THREADS, 2, engine_process=False),
)

PARTS = ("throughput", "sweep", "incremental", "memory", "plots")
RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    """Run one part of the benchmark, or all of them, and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument(
        "parts",
        nargs="*",
        metavar="part",
        help=f"all (the default) or some of: {', '.join(PARTS)}",
    )
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each ceiling")
    parser.add_argument("--worker-repeat", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-s", type=float, default=20.0)
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10_000, 100_000, 1_000_000],
        help="populations of the sweep part, comma-separated",
    )
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--incremental-repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    # Checked here: argparse refuses an empty list against choices
    # (https://github.com/python/cpython/issues/53834).
    unknown = set(args.parts) - {"all", *PARTS}
    if unknown:
        parser.error(
            f"unknown part {sorted(unknown)[0]!r}; choose from all, {', '.join(PARTS)}"
        )
    parts = PARTS if not args.parts or "all" in args.parts else tuple(args.parts)

    if "throughput" in parts:
        _write(args.out / "throughput.json", _throughput(args, console))
    scale_parts = [p for p in parts if p in ("sweep", "incremental", "memory")]
    if scale_parts:
        _scale(args, console, scale_parts)
    if "plots" in parts:
        # Imported here so that the other parts run without matplotlib.
        from bench import plots

        for path in plots.draw(args.out, ROOT / "bench" / "plots"):
            console.print(f"wrote {path.relative_to(ROOT)}")
    return 0


def _write(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def _scale(args: argparse.Namespace, console: Console, parts: list[str]) -> None:
    """Run the population parts on databases they share, dropped at the end."""
    # Imported here because bench.scale imports this module's helpers.
    from bench import scale

    small, large = min(args.sizes), max(args.sizes)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        pops = scale.Populations(_postgres_server_url(), work, stack, console)
        # The sweep part goes first: it needs databases no sweep has touched.
        if "sweep" in parts:
            _write(args.out / "sweep.json", scale.sweep_part(pops, args.sizes))
        if "incremental" in parts:
            results = scale.incremental_part(
                pops, small, large, args.events, args.incremental_repeat
            )
            _write(args.out / "incremental.json", results)
        if "memory" in parts:
            results = scale.memory_part(pops, [small, large], args.events)
            _write(args.out / "memory.json", results)


def _throughput(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Throughput beside the Kafka ceilings, and latency at a steady rate."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        console.print("starting apache kafka and preparing the database...")
        broker = stack.enter_context(ApacheKafkaBroker(work / "kafka"))
        assert broker.pid is not None
        server = _postgres_server_url()
        template = stack.enter_context(_database(server, None))
        kafka = _kafka_settings(broker.bootstrap, "throughput")
        ensure_topics(kafka)
        _configure(_settings(template, kafka, work))
        total = _publish_workload(kafka, args.persons, args.updates)
        console.print(f"published {total} person events on {PARTITIONS} partitions")

        ceilings = {
            "bare aiokafka consumer": _median(
                args.repeat, lambda: total / _aiokafka_seconds(kafka, total)
            ),
            "faust agent, events()": _median(
                args.repeat,
                lambda: total / _faust_seconds(kafka, total, "events", work),
            ),
            "faust agent, noack_take()": _median(
                args.repeat, lambda: total / _faust_seconds(kafka, total, "take", work)
            ),
        }
        runs: dict[str, list[WorkerRun]] = {}
        for setup in WORKER_SETUPS:
            runs[setup.label] = [
                _worker_run(server, template, kafka, setup, total, work, broker.pid)
                for _ in range(args.worker_repeat)
            ]
        latencies = _latency_run(
            server, template, broker.bootstrap, work, args.rate, args.latency_s
        )

    results = _results(args, total, ceilings, runs, latencies)
    _print(console, results)
    return results


# -- set-up ------------------------------------------------------------------------


def _postgres_server_url() -> str:
    """The server the bench creates its databases on, as the tests find it."""
    url = PostgresSettings().url
    if url is not None:
        return url.get_secret_value()
    result = subprocess.run(
        [str(ENSURE_POSTGRES)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@contextmanager
def _database(server: str, template: str | None) -> Iterator[str]:
    """A fresh database for the block, migrated or copied from template."""
    name = f"mentorflow_bench_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    _admin(server, f'CREATE DATABASE "{name}"{copy}')
    url = make_conninfo("", **(conninfo_to_dict(server) | {"dbname": name}))
    if template is None:
        pool = open_pool(url)
        try:
            migrate(pool)
        finally:
            pool.close()
    try:
        yield url
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(server: str, statement: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(statement.encode())


def _kafka_settings(bootstrap: str, name: str) -> KafkaSettings:
    suffix = f"{name}.{uuid.uuid4().hex[:8]}"
    return KafkaSettings(
        bootstrap=bootstrap,
        person_topic=f"bench.person-events.{suffix}",
        config_topic=f"bench.config.{suffix}",
        membership_topic=f"bench.membership-events.{suffix}",
        dead_letter_topic=f"bench.dead-letter.{suffix}",
        consumer_group=f"bench-{suffix}",
        partitions=PARTITIONS,
        session_timeout_s=10.0,
        heartbeat_interval_s=1.0,
    )


def _settings(
    database_url: str,
    kafka: KafkaSettings,
    work: Path,
    *,
    relay_in_worker: bool = True,
    engine_process: bool = True,
) -> Settings:
    data_dir = work / uuid.uuid4().hex[:8]
    data_dir.mkdir()
    return Settings(
        PostgresSettings(url=SecretStr(database_url)),
        kafka,
        WorkerSettings(
            data_dir=data_dir,
            web_port=0,
            as_of=TODAY,
            log_level="WARNING",
            # Nothing falls due in the bench; keep the calendar out of the way.
            calendar_interval_s=3600,
            relay_in_worker=relay_in_worker,
            engine_process=engine_process,
        ),
    )


def bench_config() -> ConfigFile:
    """Ten programs with five published rules each, over fifty segments.

    Each program serves one department, as real mentorship programs do: a
    person is a member of one or two program roles, and an event changes
    about one membership in two. Adds and removes of a role overlap (at level
    5 and at level 1), so their order decides there.
    """
    segments: list[Segment] = []
    rules: list[RuleEntry] = []
    for i in range(PROGRAMS):
        program = f"program-{i}"
        department = _cond("department", "eq", DEPARTMENTS[i % 8])
        defined = {
            "a": {"all": [department, _cond("level", "gte", 5)]},
            "b": {
                "all": [
                    department,
                    _cond("location", "eq", LOCATIONS[i % 5]),
                    _cond("level", "lte", 5),
                ]
            },
            "c": {"all": [department, _cond("level", "lte", 2)]},
            "d": {
                "all": [
                    _cond("location", "eq", LOCATIONS[(i + 1) % 5]),
                    _cond("level", "eq", 1),
                ]
            },
            "e": {
                "all": [
                    _cond("department", "eq", DEPARTMENTS[(i + 1) % 8]),
                    _cond("title", "contains", "lead"),
                    _cond("level", "lte", 3),
                ]
            },
        }
        for letter, definition in defined.items():
            segments.append(
                Segment.model_validate(
                    {"segment_id": f"s{i}{letter}", "definition": definition}
                )
            )
        plan = [
            ("a", RuleAction.ADD, Role.MENTOR),
            ("b", RuleAction.REMOVE, Role.MENTOR),
            ("c", RuleAction.ADD, Role.MENTEE),
            ("d", RuleAction.REMOVE, Role.MENTEE),
            ("e", RuleAction.ADD, Role.MENTEE),
        ]
        for letter, action, role in plan:
            rules.append(
                RuleEntry(
                    rule_id=f"r{i}{letter}",
                    action=action,
                    program=program,
                    role=role,
                    segment=f"s{i}{letter}",
                )
            )
    programs = tuple(Program(program_id=f"program-{i}") for i in range(PROGRAMS))
    return ConfigFile(programs=programs, segments=tuple(segments), rules=tuple(rules))


def _cond(attribute: str, operator: str, value: Any) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "value": value}


def _configure(settings: Settings) -> None:
    """Publish the rules in the template database, through the engine."""
    assert settings.postgres.url is not None
    store = Store(open_pool(settings.postgres.url.get_secret_value()))
    try:
        event = bench_config().to_event()
        raw = json.dumps(event.model_dump(mode="json")).encode()
        source = SourcePosition("bench.config", 0, 0)
        outcome = build_engine(settings, store).handle_config_record(
            raw, CONFIG_KEY.encode(), source
        )
        assert outcome.kind == "applied", outcome
    finally:
        store.close()


def _person_event(chooser: random.Random, person: int, at: int, hire: bool) -> bytes:
    person_id = f"person-{person:07d}"
    occurred_at = (T0 + timedelta(milliseconds=at)).isoformat()
    if hire:
        event: dict[str, Any] = {
            "type": "person.hired",
            "schema_version": 1,
            "event_id": new_event_id(),
            "occurred_at": occurred_at,
            "person_id": person_id,
            "attributes": {
                "department": chooser.choice(DEPARTMENTS),
                "location": chooser.choice(LOCATIONS),
                "level": chooser.randint(1, 7),
                "title": chooser.choice(["engineer", "team lead", "analyst"]),
                "hire_date": "2024-03-01",
                "manager_id": f"person-{chooser.randrange(1000):07d}",
            },
        }
    else:
        change = chooser.choice(
            [
                {"level": chooser.randint(1, 7)},
                {"department": chooser.choice(DEPARTMENTS)},
                {"location": chooser.choice(LOCATIONS)},
            ]
        )
        event = {
            "type": "person.updated",
            "schema_version": 1,
            "event_id": new_event_id(),
            "occurred_at": occurred_at,
            "person_id": person_id,
            "changes": change,
        }
    return json.dumps(event).encode()


def _publish_workload(kafka: KafkaSettings, persons: int, updates: int) -> int:
    """Publish a hire for every person, then random updates; return the count."""
    chooser = random.Random(20260601)
    producer = make_producer(kafka, linger_ms=20, batch_size=256 * 1024)
    try:
        keyed = [(p, _person_event(chooser, p, p, True)) for p in range(persons)]
        for n in range(updates):
            person = chooser.randrange(persons)
            keyed.append((person, _person_event(chooser, person, persons + n, False)))
        for person, raw in keyed:
            producer.send(kafka.person_topic, key=f"person-{person:07d}", value=raw)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return len(keyed)


# -- ceilings -----------------------------------------------------------------------


def _median(repeat: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeat))


def _aiokafka_seconds(kafka: KafkaSettings, total: int) -> float:
    """Seconds a bare aiokafka consumer takes from its first message to the last."""

    async def consume() -> float:
        consumer = AIOKafkaConsumer(
            kafka.person_topic,
            bootstrap_servers=kafka.servers,
            group_id=f"bench-aiokafka-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            seen, first = 0, 0.0
            while seen < total:
                # The clock starts with the fetch that brought the first messages.
                called = time.perf_counter()
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for messages in batches.values():
                    if messages and not seen:
                        first = called
                    seen += len(messages)
            return time.perf_counter() - first
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def _faust_seconds(kafka: KafkaSettings, total: int, mode: str, work: Path) -> float:
    """Seconds a counting-only faust agent takes from its first event to the last."""
    out = work / f"faust-{uuid.uuid4().hex[:8]}.json"
    group = f"bench-faust-{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable,
        "-m",
        "bench.faust_counter",
        kafka.servers[0],
        kafka.person_topic,
        group,
        str(total),
        mode,
        str(out),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False
    )
    if not out.exists():
        raise RuntimeError(f"the faust counter failed: {result.stderr[-3000:]}")
    seconds: float = json.loads(out.read_text())["seconds"]
    return seconds


# -- the worker ---------------------------------------------------------------------


def _worker_run(
    server: str,
    template: str,
    kafka: KafkaSettings,
    setup: WorkerSetup,
    total: int,
    work: Path,
    broker_pid: int,
) -> WorkerRun:
    """Run workers over the whole topic on a fresh copy of the configured database.

    The CPU that the workers (with their child processes), the relay process
    if any, the broker and PostgreSQL spend is read from the first event
    processed to the outbox drained.
    """
    template_name = conninfo_to_dict(template)["dbname"]
    with ExitStack() as run:
        url = run.enter_context(_database(server, str(template_name)))
        group = f"bench-worker-{uuid.uuid4().hex[:8]}"
        settings = _settings(
            url,
            kafka.model_copy(update={"consumer_group": group}),
            work,
            relay_in_worker=not setup.relay_process,
            engine_process=setup.engine_process,
        )
        processes = [
            run.enter_context(worker_process(settings, work / f"worker-{n}.log"))
            for n in range(setup.workers)
        ]
        relays = [
            run.enter_context(worker_process(settings, work / "relay.log", "relay"))
            for _ in range(setup.relay_process)
        ]
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                watched = processes + relays
                before = _wait_first(conn, watched)
                meter = CpuMeter(
                    {
                        "workers": [p.pid for p in processes],
                        "relay process": [p.pid for p in relays],
                        "kafka broker": [broker_pid],
                    },
                    # The processes that apply the batches, and multiprocessing's
                    # resource tracker.
                    children_parts={"workers": "workers' child processes"},
                )
                meter.start(time.monotonic())
                first, processed_at = _wait(conn, total, "processed", watched)
                _, published_at = _wait(conn, total, "published", watched)
                cpu = meter.stop(time.monotonic())
                row = conn.execute(
                    "SELECT count(*) FROM audit_log WHERE kind LIKE 'membership.%%'"
                ).fetchone()
        except RuntimeError as error:
            logs = [work / f"worker-{n}.log" for n in range(setup.workers)]
            logs += [work / "relay.log"] if setup.relay_process else []
            tails = "\n".join(path.read_text()[-3000:] for path in logs)
            raise RuntimeError(f"{error}; worker logs end with:\n{tails}") from None
        peak_rss_mib = max(map(_peak_rss_mib, processes))
    return WorkerRun(
        processed_per_s=total / (processed_at - first).total_seconds(),
        published_per_s=total / (published_at - first).total_seconds(),
        peak_rss_mib=peak_rss_mib,
        membership_events=int(row[0]) if row else 0,
        cpu_us_per_event=cpu.per_event_us(total - before),
        machine_busy_share=cpu.busy_share,
    )


def _wait_first(conn: psycopg.Connection[Any], processes: list[Any]) -> int:
    """Poll until the workers processed their first events; return how many."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM processed_events"
            " WHERE topic LIKE 'bench.person-events.%%'"
        ).fetchone()
        if row is not None and row[0]:
            return int(row[0])
        if any(process.poll() is not None for process in processes):
            raise RuntimeError("a worker exited during the bench")
        time.sleep(0.01)
    raise TimeoutError("workers processed nothing")


def _wait(
    conn: psycopg.Connection[Any], total: int, until: str, processes: list[Any]
) -> tuple[datetime, datetime]:
    """Poll until every event is processed (or published); return the DB instants.

    processed_at is the start of each batch's transaction, so the first one is
    the moment the first event was consumed.
    """
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*), min(processed_at), clock_timestamp(),"
            " (SELECT count(*) FROM outbox) FROM processed_events"
            " WHERE topic LIKE 'bench.person-events.%%'"
        ).fetchone()
        assert row is not None
        count, first, now, backlog = row
        if count >= total and (until == "processed" or backlog == 0):
            return first, now
        if any(process.poll() is not None for process in processes):
            raise RuntimeError("a worker exited during the bench")
        time.sleep(0.05)
    raise TimeoutError(f"workers did not finish: {until}")


def _peak_rss_mib(process: subprocess.Popen[bytes]) -> float:
    """The peak RSS of a worker with the child that applies its batches, in MiB."""
    return memory_mib(process.pid)["VmHWM"]


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a worker with its child processes, in MiB.

    Each is the sum of the processes' own: VmHWM so summed is at least what
    they held at any one time.
    """
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    for member in with_children([pid]):
        status = Path(f"/proc/{member}/status").read_text()
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in found:
                found[name] += int(value.split()[0]) / 1024
    return found


# -- latency ------------------------------------------------------------------------


def _latency_run(
    server: str,
    template: str,
    bootstrap: str,
    work: Path,
    rate: float,
    duration_s: float,
) -> list[float]:
    """Produce hires at a steady rate; return produced-to-readable latencies (s)."""
    kafka = _kafka_settings(bootstrap, "latency")
    ensure_topics(kafka)
    template_name = str(conninfo_to_dict(template)["dbname"])
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    with ExitStack() as run:
        url = run.enter_context(_database(server, template_name))
        settings = _settings(url, kafka, work)
        worker = run.enter_context(worker_process(settings, work / "latency.log"))
        stop = threading.Event()
        reader = threading.Thread(
            target=_read_membership_events, args=(kafka, received, stop), daemon=True
        )
        reader.start()
        producer = make_producer(kafka, linger_ms=0)
        chooser = random.Random(7)

        # Warm up until the worker has joined its group and answers.
        warm = f"person-{9_999_999:07d}"
        deadline = time.monotonic() + 120
        while not received and time.monotonic() < deadline:
            producer.send(
                kafka.person_topic, key=warm, value=_hire_to_add(chooser, warm, 0)
            )
            producer.flush()
            time.sleep(1)
        received.clear()

        count = int(rate * duration_s)
        started = time.monotonic()
        for n in range(count):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            person_id = f"person-{n:07d}"
            raw = _hire_to_add(chooser, person_id, n + 1)
            sent[json.loads(raw)["event_id"]] = time.time()
            producer.send(kafka.person_topic, key=person_id, value=raw)
        producer.flush()
        deadline = time.monotonic() + 60
        while len(received.keys() & sent.keys()) < len(sent):
            if time.monotonic() > deadline or worker.poll() is not None:
                break
            time.sleep(0.1)
        stop.set()
        reader.join()
        producer.close()
    return sorted(received[i] - sent[i] for i in sent.keys() & received.keys())


def _hire_to_add(chooser: random.Random, person_id: str, at: int) -> bytes:
    """A hire that a mentor add rule matches: each one makes a membership event."""
    event = {
        "type": "person.hired",
        "schema_version": 1,
        "event_id": new_event_id(),
        "occurred_at": (T0 + timedelta(milliseconds=at)).isoformat(),
        "person_id": person_id,
        "attributes": {
            "department": "design",
            "location": chooser.choice(LOCATIONS),
            "level": 7,
            "title": "engineer",
        },
    }
    return json.dumps(event).encode()


def _read_membership_events(
    kafka: KafkaSettings, received: dict[str, float], stop: threading.Event
) -> None:
    """Record when the first membership event of each cause becomes readable."""
    consumer = KafkaConsumer(
        kafka.membership_topic,
        **client_options(kafka),
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
    )
    try:
        while not stop.is_set():
            for messages in consumer.poll(timeout_ms=100).values():
                now = time.time()
                for message in messages:
                    cause = json.loads(message.value)["cause_event_id"]
                    received.setdefault(cause, now)
    finally:
        consumer.close()


# -- output -------------------------------------------------------------------------


def _results(
    args: argparse.Namespace,
    total: int,
    ceilings: dict[str, float],
    runs: dict[str, list[WorkerRun]],
    latencies: list[float],
) -> dict[str, Any]:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    workers = {
        label: {
            "processed_per_s": median([r.processed_per_s for r in rs]),
            "published_per_s": median([r.published_per_s for r in rs]),
            "peak_rss_mib": max(r.peak_rss_mib for r in rs),
            "membership_events": max(r.membership_events for r in rs),
            "cpu_us_per_event": {
                part: median([r.cpu_us_per_event[part] for r in rs])
                for part in rs[0].cpu_us_per_event
            },
            "machine_busy_share": median([r.machine_busy_share for r in rs]),
            "runs": len(rs),
        }
        for label, rs in runs.items()
    }
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else []
    return {
        "events": total,
        "persons": args.persons,
        "rules": 50,
        "programs": PROGRAMS,
        "partitions": PARTITIONS,
        "ceilings_per_s": ceilings,
        "workers": workers,
        "latency": {
            "rate_per_s": args.rate,
            "measured": len(latencies),
            "p50_ms": 1000 * quantiles[49] if quantiles else None,
            "p99_ms": 1000 * quantiles[98] if quantiles else None,
            # Raw samples, sorted, for the latency plot.
            "samples_ms": [1000 * seconds for seconds in latencies],
        },
    }


def _print(console: Console, results: dict[str, Any]) -> None:
    one = results["workers"][ONE]["processed_per_s"]
    table = Table(
        title=f"throughput: {results['events']} person events, {results['persons']}"
        f" persons, {results['rules']} rules, {results['partitions']} partitions"
    )
    table.add_column("what")
    table.add_column("events/s", justify="right")
    table.add_column("worker / this", justify="right")
    for name, per_s in results["ceilings_per_s"].items():
        table.add_row(f"ceiling: {name}", f"{per_s:,.0f}", f"{one / per_s:.2f}")
    for label, run in results["workers"].items():
        table.add_row(
            f"mentorflow, {label}, processed",
            f"{run['processed_per_s']:,.0f}",
            "",
        )
        table.add_row(
            f"mentorflow, {label}, published",
            f"{run['published_per_s']:,.0f}",
            "",
        )
    workers = results["workers"]
    two = workers[TWO]["processed_per_s"]
    table.add_row("two workers / one", "", f"{two / one:.2f}")
    # No number of workers can do more than the cores allow at the CPU that
    # one worker spends an event.
    cores = _cores()
    one_cpu_us = sum(workers[ONE]["cpu_us_per_event"].values())
    cores_allow = 1e6 * cores / one_cpu_us
    table.add_row(
        f"ceiling: {cores} cores at one worker's {one_cpu_us:.0f} µs an event",
        f"{cores_allow:,.0f}",
        f"{one / cores_allow:.2f}",
    )
    table.add_row("that ceiling / one worker", "", f"{cores_allow / one:.2f}")
    in_threads = (
        workers[TWO_IN_THREADS]["processed_per_s"]
        / workers[ONE_IN_THREADS]["processed_per_s"]
    )
    table.add_row("two workers / one, batches in threads", "", f"{in_threads:.2f}")
    console.print(table)
    console.print(
        f"membership events published: {results['workers'][ONE]['membership_events']:,}"
        f" for {results['events']:,} person events"
    )

    _print_cpu(console, results)

    latency = results["latency"]
    table = Table(title=f"latency at {latency['rate_per_s']:.0f} events/s")
    table.add_column("measured events", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("worker peak RSS MiB", justify="right")
    table.add_row(
        str(latency["measured"]),
        f"{latency['p50_ms']:.0f}" if latency["p50_ms"] is not None else "-",
        f"{latency['p99_ms']:.0f}" if latency["p99_ms"] is not None else "-",
        f"{results['workers'][ONE]['peak_rss_mib']:.0f}",
    )
    console.print(table)


def _cores() -> int:
    return psutil.cpu_count() or 1


def _print_cpu(console: Console, results: dict[str, Any]) -> None:
    """Print where the CPU went per event, beside the machine's budget at the goal."""
    cores = _cores()
    budget_us = 1e6 * cores / THROUGHPUT_GOAL_PER_S
    table = Table(
        title=f"CPU per event, from the first event to the outbox drained;"
        f" at {THROUGHPUT_GOAL_PER_S:,}/s the {cores} cores allow {budget_us:.0f} µs"
    )
    table.add_column("part")
    for label in results["workers"]:
        table.add_column(f"{label}, µs", justify="right")
    runs = list(results["workers"].values())
    for part in runs[0]["cpu_us_per_event"]:
        table.add_row(part, *(f"{run['cpu_us_per_event'][part]:.0f}" for run in runs))
    table.add_row(
        "all parts",
        *(f"{sum(run['cpu_us_per_event'].values()):.0f}" for run in runs),
    )
    table.add_row(
        "machine busy share",
        *(f"{run['machine_busy_share']:.2f}" for run in runs),
    )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
