"""Scale benches: sweep, incremental cost and worker memory against population.

Each part bulk-loads the persons it needs into a fresh database (Populations),
which the parts of one ``python -m bench.run all`` share and drop at the end.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from bench import population
from bench.run import (
    T0,
    TODAY,
    _database,
    _kafka_settings,
    _settings,
    memory_mib,
)
from infra.database import open_pool
from infra.kafka import ensure_topics, make_producer
from infra.kafka_broker import ApacheKafkaBroker
from infra.settings import KafkaSettings, Settings, WorkerSettings
from infra.store import SourcePosition, Store
from schemas.common import new_event_id
from schemas.config import CONFIG_KEY
from workers.batch import PersonRecord
from workers.demo import worker_process
from workers.engine import Engine
from workers.runtime import build_engine

# The worker's default batch size: the incremental bench feeds batches as the
# person agent does.
BATCH: int = WorkerSettings.model_fields["batch_size"].default


@dataclass
class Population:
    """A database holding count persons under the scale rules."""

    count: int
    url: str
    swept: bool = False


@dataclass
class Populations:
    """Loaded databases by size, shared by the parts of one run."""

    server: str
    work: Path
    stack: ExitStack
    console: Console
    loaded: dict[int, Population] = field(default_factory=dict)
    load_seconds: dict[int, float] = field(default_factory=dict)

    def get(self, count: int) -> Population:
        """The database of count persons, created and loaded on first use."""
        if count not in self.loaded:
            url = self.stack.enter_context(_database(self.server, None))
            _configure(url, self.work)
            started = time.perf_counter()
            with psycopg.connect(url) as conn:
                population.copy_persons(conn, count, T0)
            _vacuum(url)
            self.load_seconds[count] = time.perf_counter() - started
            self.console.print(
                f"loaded {count:,} persons in {self.load_seconds[count]:.1f} s"
            )
            self.loaded[count] = Population(count, url)
        return self.loaded[count]

    def swept(self, count: int) -> Population:
        """The database of count persons with memberships filled by one sweep."""
        loaded = self.get(count)
        if not loaded.swept:
            _engine(loaded.url, self.work).sweep()
            _drop_unpublished(loaded.url)
            loaded.swept = True
        return loaded


def _offline_kafka() -> KafkaSettings:
    # The engine only writes topic names into the outbox; no broker is needed.
    return _kafka_settings("127.0.0.1:9", "offline")


def _engine(url: str, work: Path, kafka: KafkaSettings | None = None) -> Engine:
    settings = _settings(url, kafka or _offline_kafka(), work)
    return build_engine(settings, Store(open_pool(url)))


def _configure(url: str, work: Path) -> None:
    """Publish the 200 rules on the still empty database, through the engine."""
    engine = _engine(url, work)
    try:
        event = population.scale_config().to_event()
        raw = json.dumps(event.model_dump(mode="json")).encode()
        outcome = engine.handle_config_record(
            raw, CONFIG_KEY.encode(), SourcePosition("bench.config", 0, 0)
        )
        assert outcome.kind == "applied", outcome
    finally:
        engine.store.close()


def _vacuum(url: str) -> None:
    """Leave the tables as autovacuum would in steady state: analysed, hinted."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE persons")
        conn.execute("VACUUM ANALYZE memberships")


def _drop_unpublished(url: str) -> None:
    """Drop the outbox and audit rows that the in-process parts wrote, then vacuum.

    No relay runs for those parts, so the outbox would keep millions of rows,
    addressed to the topics of a broker that never existed, that a worker
    started later would first try to publish; a sweep reads neither table.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox, audit_log")
    _vacuum(url)


def _timed_sweep(url: str, work: Path) -> tuple[float, int]:
    engine = _engine(url, work)
    try:
        started = time.perf_counter()
        result = engine.sweep()
        seconds = time.perf_counter() - started
    finally:
        engine.store.close()
    assert result is not None
    return seconds, result.changes


def _timed_peer(url: str) -> tuple[float, int]:
    statement = population.peer_sql(TODAY)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        row = conn.execute(statement).fetchone()
        seconds = time.perf_counter() - started
    assert row is not None
    return seconds, int(row[0])


# -- (d) sweep ---------------------------------------------------------------------


def sweep_part(pops: Populations, sizes: list[int]) -> dict[str, Any]:
    """First and no-change sweep beside the plain-SQL peer, at each size."""
    rows: list[dict[str, Any]] = []
    for count in sizes:
        loaded = pops.get(count)
        assert not loaded.swept, "the sweep part needs a freshly loaded database"
        # The peer's count before the first sweep checks that both sides
        # evaluate the same rules; skipped at the largest size to save minutes.
        peer_first_s, peer_first = (
            _timed_peer(loaded.url) if count < max(sizes) else (None, None)
        )
        first_s, first = _timed_sweep(loaded.url, pops.work)
        _drop_unpublished(loaded.url)
        loaded.swept = True
        again_s, again = _timed_sweep(loaded.url, pops.work)
        peer_s, peer = _timed_peer(loaded.url)
        with psycopg.connect(loaded.url) as conn:
            found = conn.execute("SELECT count(*) FROM memberships").fetchone()
        row = {
            "persons": count,
            "load_s": pops.load_seconds[count],
            "first_sweep_s": first_s,
            "first_sweep_changes": first,
            "peer_first_s": peer_first_s,
            "peer_first_changes": peer_first,
            "no_change_sweep_s": again_s,
            "no_change_sweep_changes": again,
            "peer_no_change_s": peer_s,
            "peer_no_change_changes": peer,
            "peer_over_sweep": peer_s / again_s,
            "memberships": int(found[0]) if found else 0,
        }
        rows.append(row)
        pops.console.print(
            f"sweep {count:>9,} persons: first {first_s:7.1f} s ({first:,} changes;"
            f" peer counts {peer_first} in {peer_first_s} s), no-change"
            f" {again_s:6.1f} s ({again} changes), peer {peer_s:6.1f} s ({peer}"
            f" changes), peer/sweep {peer_s / again_s:.2f}"
        )
    return {"rules": 200, "programs": population.PROGRAMS, "sizes": rows}


# -- (c) incremental ---------------------------------------------------------------


def _update_records(
    count: int, events: int, repeat: int, chooser: random.Random
) -> list[PersonRecord]:
    """Updates of random existing persons, newer than every earlier repeat's."""
    base = T0 + timedelta(days=1 + repeat)
    records = []
    for n in range(events):
        person = population.person_id(chooser.randrange(count))
        change = chooser.choice(
            [
                {"level": chooser.randint(1, 9)},
                {"department": chooser.choice(population.DEPARTMENTS)},
                {"location": chooser.choice(population.LOCATIONS)},
                {"title": chooser.choice(population.TITLES)},
            ]
        )
        event = {
            "type": "person.updated",
            "schema_version": 1,
            "event_id": new_event_id(),
            "occurred_at": (base + timedelta(milliseconds=n)).isoformat(),
            "person_id": person,
            "changes": change,
        }
        records.append(
            PersonRecord(
                json.dumps(event).encode(),
                person.encode(),
                SourcePosition("bench.person-events", 0, repeat * events + n),
            )
        )
    return records


@dataclass
class _Incremental:
    """The engine and the figures of one population in the incremental part."""

    count: int
    engine: Engine
    seconds: list[float] = field(default_factory=list)
    changes: int = 0

    def run(self, events: int, repeat: int) -> float:
        """Feed one repeat's updates in batches; return the seconds it took."""
        # Same persons and changes every repeat; only ids and instants move.
        records = _update_records(self.count, events, repeat, random.Random(5))
        started = time.perf_counter()
        for at in range(0, len(records), BATCH):
            outcomes = self.engine.handle_person_batch(records[at : at + BATCH])
            self.changes += sum(o.changes for o in outcomes)
        return time.perf_counter() - started

    def figures(self, events: int) -> dict[str, Any]:
        per_event_us = [1e6 * s / events for s in self.seconds]
        return {
            "persons": self.count,
            "events": events,
            "repeats": len(self.seconds),
            "per_event_us": per_event_us,
            "median_per_event_us": statistics.median(per_event_us),
            "membership_changes": self.changes,
        }


def incremental_part(
    pops: Populations, small: int, large: int, events: int, repeats: int
) -> dict[str, Any]:
    """Per-event cost of handle_person_batch at a small and a large population.

    The repeats alternate between the two databases, so that whatever else
    the server does meanwhile (a checkpoint after the large sweep, autovacuum)
    weighs on both alike.
    """
    sides = [
        _Incremental(count, _engine(pops.swept(count).url, pops.work))
        for count in (small, large)
    ]
    try:
        # Repeat 0 warms the rule-set caches and the connections; not counted.
        for repeat in range(repeats + 1):
            for side in sides:
                seconds = side.run(events, repeat)
                if repeat:
                    side.seconds.append(seconds)
    finally:
        for side in sides:
            side.engine.store.close()
    low, high = (side.figures(events) for side in sides)
    ratio = high["median_per_event_us"] / low["median_per_event_us"]
    for run in (low, high):
        pops.console.print(
            f"incremental {run['persons']:>9,} persons: median"
            f" {run['median_per_event_us']:.0f} µs/event over {events} events"
            f" ({', '.join(f'{v:.0f}' for v in run['per_event_us'])})"
        )
    pops.console.print(f"incremental ratio {large:,} / {small:,}: {ratio:.2f}")
    return {"batch": BATCH, "small": low, "large": high, "ratio": ratio}


# -- (e) memory --------------------------------------------------------------------


def _memory_at(
    pops: Populations, broker: ApacheKafkaBroker, count: int, events: int
) -> dict[str, Any]:
    loaded = pops.swept(count)
    _drop_unpublished(loaded.url)
    kafka = _kafka_settings(broker.bootstrap, f"memory-{count}")
    ensure_topics(kafka)
    settings = _settings(loaded.url, kafka, pops.work)
    settings = Settings(
        settings.postgres,
        settings.kafka,
        # No scheduled sweep during the measurement: it runs inside PostgreSQL
        # anyway, and this part measures the worker's own memory.
        settings.worker.model_copy(update={"sweep_interval_s": 86_400.0}),
    )
    with psycopg.connect(loaded.url, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM processed_events").fetchone()
    done_before = int(before[0]) if before else 0
    samples: list[float] = []
    log = pops.work / f"memory-{count}.log"
    with worker_process(settings, log) as worker:
        # Let the worker start, join its group and settle before any event.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and worker.poll() is None:
            samples.append(memory_mib(worker.pid)["VmRSS"])
            time.sleep(0.2)
        idle = samples[-1]
        producer = make_producer(kafka, linger_ms=20)
        chooser = random.Random(11)
        for record in _update_records(count, events, 50, chooser):
            key = record.key.decode() if record.key else None
            producer.send(kafka.person_topic, key=key, value=record.raw)
        producer.flush(timeout=60)
        producer.close()
        started = time.monotonic()
        with psycopg.connect(loaded.url, autocommit=True) as conn:
            while True:
                if worker.poll() is not None:
                    raise RuntimeError(log.read_text()[-3000:])
                samples.append(memory_mib(worker.pid)["VmRSS"])
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM processed_events),"
                    " (SELECT count(*) FROM outbox)"
                ).fetchone()
                assert row is not None
                if row[0] - done_before >= events and row[1] == 0:
                    break
                if time.monotonic() - started > 600:
                    raise TimeoutError("the worker did not process the events")
                time.sleep(0.2)
        seconds = time.monotonic() - started
        final = memory_mib(worker.pid)
        hwm = final["VmHWM"]
    result = {
        "persons": count,
        "events": events,
        "idle_rss_mib": idle,
        "final_rss_mib": final["VmRSS"],
        "max_sampled_rss_mib": max(samples),
        "vm_hwm_mib": hwm,
        "seconds_to_process": seconds,
    }
    pops.console.print(
        f"memory {count:>9,} persons: idle {idle:.0f} MiB, after {events} events"
        f" {final['VmRSS']:.0f} MiB, VmHWM {hwm:.0f} MiB ({seconds:.1f} s)"
    )
    return result


def memory_part(pops: Populations, sizes: list[int], events: int) -> dict[str, Any]:
    """RSS of a real worker process over a real Apache Kafka, at each size."""
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as kafka_dir:
        broker = ApacheKafkaBroker(Path(kafka_dir))
        with broker:
            runs = [_memory_at(pops, broker, count, events) for count in sizes]
    return {"runs": runs}
