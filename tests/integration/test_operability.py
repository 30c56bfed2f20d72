"""Operating a worker on Apache Kafka and PostgreSQL: lag, metrics, probes, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from infra.logging import ContextFilter, JsonFormatter
from infra.settings import KafkaSettings, PostgresSettings, Settings, WorkerSettings
from infra.store import SourcePosition, Store
from schemas.common import new_event_id
from schemas.config import CONFIG_KEY
from schemas.errors import MentorflowError
from schemas.person import PersonHired
from schemas.segments import Program, Role, RuleAction, Segment
from workers.app import Wiring, _consume_batches
from workers.batch import BatchTurn, PersonRecord
from workers.cli import main
from workers.config_file import ConfigFile, RuleEntry
from workers.demo import worker_process
from workers.engine import Outcome
from workers.errors import AgentFailedError
from workers.health import Health
from workers.metrics import WorkerMetrics
from workers.publishing import (
    keyed_by_person,
    publish_events,
    read_topic,
    wait_until_outbox_empty,
    wait_until_processed,
)
from workers.runtime import settings_environment

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
# A title no log line may repeat: logs carry ids, never a person's attributes.
SECRET_TITLE = "Senior Quantum Gardener"


def segment(segment_id: str, condition: dict[str, str]) -> Segment:
    return Segment.model_validate(
        {"segment_id": segment_id, "definition": {"all": [condition]}}
    )


# Anyone in R&D is a mentee, but a senior one is removed again: the two rules
# overlap on senior R&D people, where dashboard order decides.
CONFIG = ConfigFile(
    programs=(Program(program_id="eng", name="Engineering mentorship"),),
    segments=(
        segment("rnd", {"attribute": "department", "operator": "eq", "value": "R&D"}),
        segment(
            "seniors",
            {"attribute": "title", "operator": "starts_with", "value": "senior"},
        ),
    ),
    rules=(
        RuleEntry(
            rule_id="eng-mentees",
            action=RuleAction.ADD,
            program="eng",
            role=Role.MENTEE,
            segment="rnd",
        ),
        RuleEntry(
            rule_id="eng-graduates",
            action=RuleAction.REMOVE,
            program="eng",
            role=Role.MENTEE,
            segment="seniors",
        ),
    ),
)


@pytest.fixture
def settings(settings: Settings, free_port: int) -> Settings:
    """The test's settings with the web server on a free port and JSON logs."""
    worker = settings.worker.model_copy(
        update={"web_port": free_port, "metrics_interval_s": 0.5, "log_format": "json"}
    )
    return Settings(settings.postgres, settings.kafka, worker)


def hire(person_id: str, title: str = "Engineer") -> PersonHired:
    return PersonHired(
        event_id=new_event_id(),
        occurred_at=T0,
        person_id=person_id,
        attributes={"title": title, "department": "R&D"},
    )


def publish_config(settings: Settings, producer: Any, store: Store) -> None:
    keyed = [(CONFIG_KEY, CONFIG.to_event())]
    wait_until_processed(
        store, publish_events(producer, settings.kafka.config_topic, keyed)
    )


def publish_people(
    settings: Settings, producer: Any, store: Store, *events: Any
) -> None:
    ids = publish_events(producer, settings.kafka.person_topic, keyed_by_person(events))
    wait_until_processed(store, ids)
    wait_until_outbox_empty(store)


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        # Not listening yet.
        return 0, b""


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def sample(port: int, name: str, **labels: str) -> float | None:
    return samples(port).get((name, frozenset(labels.items())))


def cells(line: str) -> list[str]:
    """The cells of one line of a rich table, without the borders."""
    parts = line.replace("│", "|").split("|")
    return [part.strip() for part in parts[1:-1]]


def lag_total(cli: Callable[..., subprocess.CompletedProcess[str]]) -> int:
    result = cli("lag", "--json")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["total_lag"])


def test_lag_reaches_zero_after_processing_and_max_lag_fails_while_events_wait(
    settings, store, producer, worker_factory, cli_factory
):
    worker = worker_factory()
    publish_config(settings, producer, store)
    publish_people(settings, producer, store, hire("p-1"), hire("p-2"))

    # faust commits offsets every few seconds, not per event.
    wait_for("a zero lag", lambda: cli_factory("lag", "--max-lag", "0").returncode == 0)
    shown = cli_factory("lag")
    assert settings.kafka.person_topic in shown.stdout
    assert "total lag: 0" in shown.stdout

    worker.terminate()
    assert worker.wait(timeout=30) == 0
    publish_events(
        producer,
        settings.kafka.person_topic,
        keyed_by_person([hire("p-3"), hire("p-4"), hire("p-5")]),
    )

    assert lag_total(cli_factory) == 3
    late = cli_factory("lag", "--max-lag", "0")
    assert late.returncode == 3
    assert "lag 3 exceeds --max-lag 0" in late.stderr
    assert cli_factory("lag", "--max-lag", "3").returncode == 0


def test_a_worker_on_external_services_creates_its_data_folder(
    settings, store, producer, tmp_path
):
    # No embedded stack made the folder, and faust creates only its own in it.
    data_dir = tmp_path / "var" / "lib" / "mentorflow"
    worker = settings.worker.model_copy(update={"data_dir": data_dir})
    moved = Settings(settings.postgres, settings.kafka, worker)

    with worker_process(moved, tmp_path / "worker.log") as process:
        ids = publish_events(
            producer, settings.kafka.config_topic, [(CONFIG_KEY, CONFIG.to_event())]
        )
        wait_until_processed(store, ids, is_worker_alive=lambda: process.poll() is None)

    assert (data_dir / "faust").is_dir()


def test_lag_of_a_topic_the_cluster_lacks_fails_naming_it(
    settings, monkeypatch, capsys
):
    # Else a misspelt topic would show a lag of 0 and pass any --max-lag.
    absent = f"{settings.kafka.person_topic}.absent"
    environment = settings_environment(settings) | {
        "MENTORFLOW_KAFKA_PERSON_TOPIC": absent
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert main(["lag", "--max-lag", "0"]) == 1

    error = capsys.readouterr().err
    assert f"has no topic {absent!r}" in error
    assert settings.kafka.config_topic not in error


def test_probes_and_metrics_are_served_on_the_web_port(
    settings, store, producer, worker_factory
):
    port = settings.worker.web_port
    worker_factory()
    wait_for("/healthz", lambda: get(port, "/healthz")[0] == 200)
    wait_for("/readyz", lambda: get(port, "/readyz")[0] == 200)
    status, body = get(port, "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ready",
        "checks": {
            "consuming": "ok",
            "database": "ok",
            "broker": "ok",
            "outbox": "ok",
        },
    }

    publish_config(settings, producer, store)
    publish_people(settings, producer, store, hire("p-1"), hire("p-2"))

    processed = "mentorflow_events_processed_total"
    hired = {"source": "person", "type": "person.hired", "outcome": "applied"}
    assert sample(port, processed, **hired) == 2
    applied = {"source": "config", "type": "config.applied", "outcome": "applied"}
    assert sample(port, processed, **applied) == 1
    added = {"program": "eng", "role": "mentee", "action": "added"}
    assert sample(port, "mentorflow_membership_changes_total", **added) == 2
    published = "mentorflow_membership_events_published_total"
    wait_for("published events counted", lambda: sample(port, published, **added) == 2)
    # Person records go in batches (the default), timed per batch, not per record.
    assert sample(port, "mentorflow_person_batch_size_sum") == 2
    assert (sample(port, "mentorflow_person_batch_seconds_count") or 0) >= 1
    assert sample(port, "mentorflow_processing_seconds_count", source="person") is None
    assert sample(port, "mentorflow_processing_seconds_count", source="config") == 1

    def lag_is_zero_everywhere() -> bool:
        found = samples(port)
        lags = [v for (n, _), v in found.items() if n == "mentorflow_consumer_lag"]
        backlog = found.get(("mentorflow_outbox_backlog", frozenset()))
        # Three partitions of the person topic, one of the config topic.
        return len(lags) == 4 and not any(lags) and backlog == 0

    wait_for("zero lag and backlog gauges", lag_is_zero_everywhere)
    assert sample(port, "mentorflow_ready") == 1


def test_readyz_fails_while_the_database_refuses_connections(
    settings, store, worker_factory, database_url
):
    port = settings.worker.web_port
    worker_factory()
    wait_for("/readyz", lambda: get(port, "/readyz")[0] == 200)

    name = conninfo_to_dict(database_url)["dbname"]
    server = make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'.encode())
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            wait_for("/readyz 503", lambda: get(port, "/readyz")[0] == 503)
            status, body = get(port, "/readyz")
            assert status == 503
            checks = json.loads(body)["checks"]
            assert checks["database"] != "ok"
            assert get(port, "/healthz")[0] == 200
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())

    wait_for("/readyz 200 again", lambda: get(port, "/readyz")[0] == 200)


def test_json_logs_carry_the_event_position_and_no_attributes(
    settings, store, producer, worker_factory, tmp_path
):
    worker_factory()
    publish_config(settings, producer, store)
    # Refused for its instant; its attributes must not reach the log either.
    invalid = {
        "type": "person.hired",
        "event_id": "bad-1",
        "occurred_at": "then",
        "person_id": "p-9",
        "attributes": {"title": SECRET_TITLE},
    }
    producer.send(settings.kafka.person_topic, key="p-9", value=invalid)
    publish_people(settings, producer, store, hire("p-1", SECRET_TITLE))

    lines = (tmp_path / "worker.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(entries) > 0.9 * len(lines)
    (letter,) = [e for e in entries if e["message"].startswith("dead-lettered")]
    assert letter["event_id"] == "bad-1"
    assert letter["topic"] == settings.kafka.person_topic
    assert {"partition", "offset"} <= letter.keys()
    (config,) = [e for e in entries if e["message"].startswith("applied config")]
    assert config["topic"] == settings.kafka.config_topic
    assert SECRET_TITLE not in "\n".join(lines)


def test_json_logs_of_a_batch_carry_its_topic_partitions_and_offsets(
    settings, store, producer, tmp_path, database_url
):
    # The default batch size: the person agent takes the batch path.
    default_size = WorkerSettings.model_fields["batch_size"].default
    assert settings.worker.batch_size == default_size > 1
    # A batch logs no line per record but the debug line of its commit.
    worker = settings.worker.model_copy(update={"log_level": "DEBUG"})
    verbose = Settings(settings.postgres, settings.kafka, worker)
    log_path = tmp_path / "worker.log"
    people = [hire(f"p-{n}") for n in range(1, 7)]
    with worker_process(verbose, log_path):
        publish_config(verbose, producer, store)
        publish_people(verbose, producer, store, *people)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            'SELECT partition, "offset" FROM processed_events WHERE event_id = ANY(%s)',
            ([event.event_id for event in people],),
        ).fetchall()
    lines = log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    batches = [e for e in entries if e["message"].startswith("processed person batch")]
    assert batches
    covered = set()
    for entry in batches:
        assert entry["topic"] == settings.kafka.person_topic
        ranges = entry["offset_ranges"]
        for partition, (first, last) in ranges.items():
            covered |= {(int(partition), offset) for offset in range(first, last + 1)}
        if len(ranges) == 1:
            ((partition, (first, last)),) = ranges.items()
            assert entry["partition"] == int(partition)
            assert (entry["first_offset"], entry["last_offset"]) == (first, last)
        else:
            assert "partition" not in entry
    assert set(rows) <= covered


class FailingBatchEngine:
    """Fails every batch, so that the worker retries its records one at a time."""

    def handle_person_batch(
        self,
        records: list[PersonRecord],
        *,
        after: Sequence[BatchTurn] = (),
        turn: BatchTurn | None = None,
    ) -> list[Outcome]:
        if turn is not None:
            turn.mark_settled(committed=False)
        raise RuntimeError("batch rejected")

    def handle_person_record(
        self, raw: bytes, key: bytes | None, source: SourcePosition
    ) -> Outcome:
        logging.getLogger("tests.engine").debug("processed one record")
        return Outcome("applied")


class BatchStream:
    """The part of a faust stream the batch consumer uses, over fixed batches."""

    def __init__(self, *batches: list[Any]) -> None:
        self.batches = batches
        self.acked: list[Any] = []

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        for batch in self.batches:
            yield batch

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


def consumed(topic: str, partition: int, offset: int, event_id: str) -> Any:
    value = json.dumps({"type": "person.hired", "event_id": event_id}).encode()
    message = SimpleNamespace(topic=topic, partition=partition, offset=offset)
    return SimpleNamespace(value=value, key=b"p-1", message=message)


def test_records_of_a_failed_batch_log_their_own_position_and_the_batchs(tmp_path):
    # No services: the engine is a stand-in, the log capture is JSON's own.
    settings = Settings(
        PostgresSettings(url=SecretStr("postgresql://u@127.0.0.1:9/db")),
        KafkaSettings(bootstrap="127.0.0.1:9"),
        WorkerSettings(data_dir=tmp_path),
    )
    wiring = Wiring(
        settings,
        cast(Any, FailingBatchEngine()),
        cast(Any, None),
        Health(),
        WorkerMetrics(),
    )
    stream = BatchStream([consumed("hr", 1, 40, "e-40"), consumed("hr", 1, 41, "e-41")])
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    capture = Capture(logging.DEBUG)
    capture.setFormatter(JsonFormatter())
    capture.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(capture)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        asyncio.run(_consume_batches(wiring, stream, must_not_crash))
    finally:
        root.setLevel(level)
        root.removeHandler(capture)

    entries = [json.loads(line) for line in lines]
    (failed,) = [e for e in entries if e["message"].startswith("batch failed")]
    assert (failed["topic"], failed["partition"]) == ("hr", 1)
    assert (failed["first_offset"], failed["last_offset"]) == (40, 41)
    assert "offset" not in failed
    records = [e for e in entries if e["message"] == "processed one record"]
    assert [(e["event_id"], e["partition"], e["offset"]) for e in records] == [
        ("e-40", 1, 40),
        ("e-41", 1, 41),
    ]
    assert len(stream.acked) == 2
    exported = {
        sample.name: sample.value
        for family in text_string_to_metric_families(wiring.metrics.render().decode())
        for sample in family.samples
    }
    assert exported["mentorflow_person_batch_size_sum"] == 2
    assert exported["mentorflow_person_batch_seconds_count"] == 1


class RecordingBatchEngine:
    """Notes what the stream had acknowledged when each batch was handed over.

    With ``failure``, every batch and every record fails with it.
    """

    def __init__(self, stream: BatchStream, failure: Exception | None = None) -> None:
        self.stream = stream
        self.failure = failure
        self.acked_before: list[list[Any]] = []
        self.acked_when_done: list[list[Any]] = []

    def handle_person_batch(
        self,
        records: list[PersonRecord],
        *,
        after: Sequence[BatchTurn] = (),
        turn: BatchTurn | None = None,
    ) -> list[Outcome]:
        self.acked_before.append(list(self.stream.acked))
        # Batches may overlap: give the others time to be acknowledged meanwhile.
        time.sleep(0.2)
        self.acked_when_done.append(list(self.stream.acked))
        if turn is not None:
            turn.mark_settled(committed=self.failure is None)
        if self.failure is not None:
            raise self.failure
        return [Outcome("applied") for _ in records]

    def handle_person_record(
        self, raw: bytes, key: bytes | None, source: SourcePosition
    ) -> Outcome:
        assert self.failure is not None
        raise self.failure


async def must_not_crash(error: BaseException) -> None:
    raise AssertionError(f"the worker was stopped: {error}")


def offline_wiring(tmp_path: Any, engine: Any) -> Wiring:
    settings = Settings(
        PostgresSettings(url=SecretStr("postgresql://u@127.0.0.1:9/db")),
        KafkaSettings(bootstrap="127.0.0.1:9"),
        WorkerSettings(data_dir=tmp_path),
    )
    return Wiring(settings, engine, cast(Any, None), Health(), WorkerMetrics())


def test_a_batch_is_acknowledged_only_once_its_transaction_returned(tmp_path):
    first = [consumed("hr", 0, 7, "e-7"), consumed("hr", 0, 8, "e-8")]
    second = [consumed("hr", 0, 9, "e-9")]
    stream = BatchStream(first, second)
    engine = RecordingBatchEngine(stream)

    asyncio.run(
        _consume_batches(offline_wiring(tmp_path, engine), stream, must_not_crash)
    )

    # Acknowledged offsets are committed on faust's own cadence, whatever
    # became of the transaction: none may be acknowledged before it committed.
    for batch, acked in zip((first, second), engine.acked_when_done, strict=True):
        assert not any(event in acked for event in batch)
    assert stream.acked == first + second


def test_a_batch_whose_handling_fails_is_not_acknowledged(tmp_path):
    # Neither retriable nor a bug: the batch path and then the record path give
    # up, and the agent crashes with nothing of the batch acknowledged.
    stream = BatchStream([consumed("hr", 0, 7, "e-7"), consumed("hr", 0, 8, "e-8")])
    engine = RecordingBatchEngine(stream, MentorflowError("cannot go on"))

    crashes: list[BaseException] = []

    async def crash(error: BaseException) -> None:
        crashes.append(error)

    with pytest.raises(AgentFailedError, match="cannot go on"):
        asyncio.run(_consume_batches(offline_wiring(tmp_path, engine), stream, crash))

    # The worker is told to stop, once: a new process starts from the commits.
    assert [str(error) for error in crashes] == [
        "agent person-events failed: MentorflowError: cannot go on"
    ]
    assert engine.acked_before == [[]]
    assert engine.acked_when_done == [[]]
    assert stream.acked == []


def test_status_shows_rules_conflicts_backlog_and_lag(
    settings, store, producer, worker_factory, cli_factory
):
    worker_factory()
    publish_config(settings, producer, store)
    publish_people(
        settings,
        producer,
        store,
        hire("p-1"),
        hire("p-2", "Senior Engineer"),
        hire("p-3", "Senior Engineer"),
    )

    result = cli_factory("status")

    assert result.returncode == 0, result.stderr
    rows = [cells(line) for line in result.stdout.splitlines()]
    # position, rule, action, program, role, segment, status, decided, members
    assert [
        "0",
        "eng-mentees",
        "add",
        "eng",
        "mentee",
        "rnd",
        "published",
        "1",
        "1",
    ] in rows
    assert [
        "1",
        "eng-graduates",
        "remove",
        "eng",
        "mentee",
        "seniors",
        "published",
        "0",
        "1",
    ] in rows
    # program, role, add rule, remove rule, decided by, people
    assert [
        "eng",
        "mentee",
        "eng-mentees (0)",
        "eng-graduates (1)",
        "eng-graduates",
        "2",
    ] in rows
    assert ["outbox backlog", "0 events"] in rows
    # The lag itself waits on faust's next offset commit.
    (lag,) = [row for row in rows if row[:1] == ["lag"]]
    assert lag[1].endswith("records over 4 partitions")


def test_a_relay_process_publishes_what_a_worker_without_relay_wrote(
    settings, store, producer, tmp_path
):
    worker = settings.worker.model_copy(
        update={"relay_in_worker": False, "web_port": 0}
    )
    quiet = Settings(settings.postgres, settings.kafka, worker)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MENTORFLOW_")},
        **settings_environment(quiet),
    }
    with worker_process(quiet, tmp_path / "worker.log"):
        publish_config(quiet, producer, store)
        ids = publish_events(
            producer, quiet.kafka.person_topic, keyed_by_person([hire("p-1")])
        )
        wait_until_processed(store, ids)
        with store.transaction() as tx:
            assert tx.outbox_backlog() == 1

        relay = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "relay"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_outbox_empty(store)
        finally:
            relay.terminate()
            output, _ = relay.communicate(timeout=30)
    assert relay.returncode == 0, output
    events = read_topic(quiet.kafka, quiet.kafka.membership_topic, idle_timeout_s=2)
    assert [(e["type"], e["person_id"]) for e in events] == [
        ("membership.added", "p-1")
    ]
