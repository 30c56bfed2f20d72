"""The demo: the whole pipeline on the Oracle HR sample roster."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from infra.kafka import ensure_topics, make_producer
from infra.settings import Settings
from infra.store import Store
from schemas.config import CONFIG_KEY
from workers.config_file import load_config_file
from workers.errors import WorkerError
from workers.hr_files import (
    history_events,
    natural_key,
    read_roster,
    snapshot_events,
)
from workers.publishing import (
    keyed_by_person,
    publish_events,
    read_topic,
    wait_until_outbox_empty,
    wait_until_processed,
)
from workers.runtime import embedded_stack, open_store, settings_environment

logger = logging.getLogger(__name__)

# The sample roster's hires run from 2011 to 2018: the demo looks at it from
# mid-2018, so that "hired within the last 365 days" means something.
DEFAULT_AS_OF = date(2018, 6, 30)
FIRST_MEMBERS = 5


@dataclass(frozen=True)
class DemoInputs:
    """The files the demo reads."""

    roster: Path
    history: Path
    config: Path

    @classmethod
    def bundled(cls) -> DemoInputs:
        """The Oracle HR sample and the example config shipped with mentorflow."""
        folder = resources.files("workers") / "data"
        return cls(
            roster=Path(str(folder / "employees.csv")),
            history=Path(str(folder / "job_history.csv")),
            config=Path(str(folder / "demo-config.yaml")),
        )


@dataclass(frozen=True)
class PairSummary:
    """The members of one program role."""

    program_id: str
    role: str
    members: int
    first_members: list[str]


@dataclass(frozen=True)
class DemoSummary:
    """What the demo prints."""

    as_of: str
    persons: int
    pairs: list[PairSummary]
    membership_events: int
    stale_events: int
    rejected_history_rows: int
    dead_letters: int = 0
    rejected: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the summary as plain JSON values."""
        return asdict(self)


def run_demo(
    settings: Settings, inputs: DemoInputs, as_of: date, data_dir: Path
) -> DemoSummary:
    """Start the embedded stack and a worker, feed the inputs, summarise."""
    data_dir.mkdir(parents=True, exist_ok=True)
    base = settings.worker.model_copy(update={"as_of": as_of, "web_port": 0})
    settings = Settings(settings.postgres, settings.kafka, base)
    with embedded_stack(settings, data_dir) as live:
        _reset_database(live)
        store = open_store(live)
        try:
            ensure_topics(live.kafka)
            with worker_process(live, data_dir / "worker.log") as worker:
                summary = _feed(live, store, inputs, worker)
            summary_events = read_topic(live.kafka, live.kafka.membership_topic)
        finally:
            store.close()
    event_ids = {event["event_id"] for event in summary_events}
    return replace(summary, membership_events=len(event_ids))


@contextmanager
def worker_process(
    settings: Settings, log_path: Path, command: str = "worker"
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mentorflow worker`` (or another long-running command) for the block."""
    environment = {**_inherited_environment(), **settings_environment(settings)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", command],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _feed(
    settings: Settings,
    store: Store,
    inputs: DemoInputs,
    worker: subprocess.Popen[bytes],
) -> DemoSummary:
    kafka = settings.kafka
    producer = make_producer(kafka, max_in_flight_requests_per_connection=1)

    def alive() -> bool:
        return worker.poll() is None

    try:
        roster = read_roster(inputs.roster)
        snapshots = snapshot_events(roster)
        ids = publish_events(
            producer, kafka.person_topic, keyed_by_person(snapshots), "roster"
        )
        wait_until_processed(store, ids, is_worker_alive=alive)

        config_event = load_config_file(inputs.config).to_event()
        keyed = [(CONFIG_KEY, config_event)]
        ids = publish_events(producer, kafka.config_topic, keyed, "config")
        wait_until_processed(store, ids, is_worker_alive=alive)

        changes, rejected = history_events(inputs.history, roster)
        ids = publish_events(
            producer, kafka.person_topic, keyed_by_person(changes), "job history"
        )
        wait_until_processed(store, ids, is_worker_alive=alive)
        wait_until_outbox_empty(store, is_worker_alive=alive)
    finally:
        producer.close()
    return summarize(
        store,
        settings.worker.as_of or DEFAULT_AS_OF,
        [f"{row.person_id} {row.start_date}: {row.reason}" for row in rejected],
    )


def summarize(store: Store, as_of: date, rejected: list[str]) -> DemoSummary:
    """Read the memberships and counters the demo prints."""
    with store.transaction() as tx:
        persons = sum(tx.count_persons().values())
        outcomes = tx.outcome_counts()
        pairs = []
        for program in tx.load_programs():
            for role in ("mentor", "mentee"):
                members = [
                    row.person_id
                    for row in tx.members(program.program_id)
                    if row.role.value == role
                ]
                members.sort(key=natural_key)
                pairs.append(
                    PairSummary(
                        program.program_id, role, len(members), members[:FIRST_MEMBERS]
                    )
                )
    return DemoSummary(
        as_of=as_of.isoformat(),
        persons=persons,
        pairs=pairs,
        membership_events=0,
        stale_events=outcomes.get("stale", 0),
        rejected_history_rows=len(rejected),
        dead_letters=outcomes.get("dead_letter", 0),
        rejected=rejected,
    )


def _reset_database(settings: Settings) -> None:
    """Start the demo from an empty database, so that every run is the same."""
    url = settings.postgres.url
    if url is None:
        raise WorkerError("the demo needs a database URL")
    with psycopg.connect(url.get_secret_value(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def _inherited_environment() -> dict[str, str]:
    # The worker inherits PATH and the like, but no mentorflow setting that
    # would contradict the demo's own.
    return {k: v for k, v in os.environ.items() if not k.startswith("MENTORFLOW_")}
