"""Stopping a worker: what it took is finished and committed, within a bound."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from infra.settings import Settings
from tests.integration.polling import wait_for
from tests.integration.test_batches import hire, update
from tests.integration.test_engine_process import waiting_on_locks
from tests.integration.test_operability import lag_total
from tests.integration.workload import processed_count
from workers.demo import worker_process
from workers.engine_process import STOP_WAIT_S
from workers.publishing import keyed_by_person, publish_events, wait_until_processed

WAYS_TO_APPLY = {
    "in the child process": {},
    "in threads": {"engine_process": False},
    "one at a time": {"batch_size": 1},
}


@pytest.mark.parametrize("way", WAYS_TO_APPLY)
def test_a_stopping_worker_gives_up_what_waits_on_a_lock(
    way, settings, store, producer, database_url, tmp_path
):
    topic = settings.kafka.person_topic
    worker_settings = settings.worker.model_copy(update=WAYS_TO_APPLY[way])
    log = tmp_path / "worker.log"
    hired = publish_events(producer, topic, keyed_by_person([hire("p1")]))

    with (
        worker_process(
            Settings(settings.postgres, settings.kafka, worker_settings), log
        ) as worker,
        psycopg.connect(database_url) as locker,
    ):
        wait_until_processed(store, hired)
        locker.execute("SELECT 1 FROM persons WHERE person_id = 'p1' FOR UPDATE")
        promoted = publish_events(
            producer, topic, keyed_by_person([update("p1", {"title": "Lead"}, at=2)])
        )
        wait_for(lambda: waiting_on_locks(database_url) > 0, 60)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        stopped_in_s = time.monotonic() - started
        wait_for(lambda: waiting_on_locks(database_url) == 0, 10)
        locker.rollback()

    assert STOP_WAIT_S <= stopped_in_s < STOP_WAIT_S + 15
    assert "events still being handled" in log.read_text()
    with store.transaction() as tx:
        assert tx.count_processed(promoted) == 0

    # Its offset was not committed: the next worker applies it.
    with worker_process(settings, tmp_path / "next-worker.log"):
        wait_until_processed(store, promoted)


@pytest.mark.parametrize("way", WAYS_TO_APPLY)
def test_a_stopping_worker_finishes_and_commits_what_it_took(
    way, settings, store, producer, cli_factory, tmp_path
):
    worker_settings = settings.worker.model_copy(update=WAYS_TO_APPLY[way])
    hires = [hire(f"p{n}") for n in range(20_000)]
    ids = publish_events(producer, settings.kafka.person_topic, keyed_by_person(hires))

    with worker_process(
        Settings(settings.postgres, settings.kafka, worker_settings),
        tmp_path / "worker.log",
    ) as worker:
        wait_for(lambda: processed_count(store) >= 1_000, 120)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0

    handled = processed_count(store)
    assert handled < len(ids), "the worker finished before it was told to stop"
    # Every event it applied was acknowledged and committed, and nothing else.
    assert lag_total(cli_factory) == len(ids) - handled


def test_every_connection_has_the_server_watch_for_a_lost_client(store):
    with store.transaction() as tx:
        pooled = tx.conn.execute("SHOW client_connection_check_interval").fetchone()
    with store.connect() as conn:
        own = conn.execute("SHOW client_connection_check_interval").fetchone()

    assert pooled == own == ("1s",)
