"""Every input that cannot be processed is dead-lettered verbatim; nothing stops."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings
from infra.store import Store
from schemas.common import new_event_id
from schemas.config import CONFIG_KEY
from schemas.person import PersonHired
from schemas.segments import Program, Role, RuleAction, Segment
from tests.integration.corpus.dead_letters import CASES, MAX_EVENT_BYTES
from workers.config_file import ConfigFile, RuleEntry
from workers.publishing import (
    keyed_by_person,
    publish_events,
    read_topic,
    wait_until_outbox_empty,
    wait_until_processed,
)

KNOWN = ConfigFile(
    programs=(Program(program_id="known"),),
    segments=(
        Segment.model_validate(
            {
                "segment_id": "known",
                "definition": {"all": [{"attribute": "title", "operator": "exists"}]},
            }
        ),
    ),
    rules=(
        RuleEntry(
            rule_id="r-first",
            action=RuleAction.ADD,
            program="known",
            role=Role.MENTOR,
            segment="known",
        ),
    ),
)


@pytest.fixture
def settings(settings: Settings, free_port: int) -> Settings:
    worker = settings.worker.model_copy(
        update={"max_event_bytes": MAX_EVENT_BYTES, "web_port": free_port}
    )
    return Settings(settings.postgres, settings.kafka, worker)


def wait_for_zero_lag(cli_factory: Callable[..., Any]) -> None:
    # faust commits offsets every few seconds, not per event.
    deadline = time.monotonic() + 60
    while cli_factory("lag", "--max-lag", "0").returncode != 0:
        assert time.monotonic() < deadline, cli_factory("lag").stdout
        time.sleep(1)


def dead_letters_counted(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "mentorflow_dead_letters_total"
    }


def hire_of_c1() -> PersonHired:
    return PersonHired(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        person_id="c-1",
        attributes={"title": "Engineer"},
    )


def test_the_corpus_is_dead_lettered_verbatim_and_the_worker_carries_on(
    settings, store: Store, producer, worker_factory, cli_factory
):
    worker_factory()
    kafka = settings.kafka
    ids = publish_events(producer, kafka.config_topic, [(CONFIG_KEY, KNOWN.to_event())])
    ids += publish_events(producer, kafka.person_topic, keyed_by_person([hire_of_c1()]))
    wait_until_processed(store, ids)
    # Both partitions the corpus goes to hold a commit first: faust's first
    # commit of a partition skips the records left unacknowledged before it.
    wait_for_zero_lag(cli_factory)

    sources = {}
    for case in CASES:
        topic = kafka.person_topic if case.stream == "person" else kafka.config_topic
        key = "c-1" if case.stream == "person" else CONFIG_KEY
        metadata = producer.send(topic, key=key, value=case.raw).get(timeout=30)
        sources[(topic, metadata.partition, metadata.offset)] = case

    # Valid events behind the bad ones, on both topics, prove nothing stalled.
    hire = hire_of_c1()
    after = KNOWN.model_copy(update={"programs": (Program(program_id="later"),)})
    ids = publish_events(producer, kafka.person_topic, keyed_by_person([hire]))
    ids += publish_events(
        producer, kafka.config_topic, [(CONFIG_KEY, after.to_event())]
    )
    wait_until_processed(store, ids)
    wait_until_outbox_empty(store)

    letters = read_topic(kafka, kafka.dead_letter_topic, idle_timeout_s=2)
    by_source = {
        (
            letter["source_topic"],
            letter["source_partition"],
            letter["source_offset"],
        ): letter
        for letter in letters
    }
    assert len(letters) == len(CASES)
    assert set(by_source) == set(sources)
    for source, case in sources.items():
        letter = by_source[source]
        if letter["payload"] is not None:
            assert letter["payload"].encode() == case.raw, case.name
        else:
            assert base64.b64decode(letter["payload_base64"]) == case.raw, case.name
        assert case.error in letter["error"], (case.name, letter["error"])

    with store.transaction() as tx:
        assert tx.outcome_counts()["dead_letter"] == len(CASES)
        assert [row.person_id for row in tx.members("known")] == ["c-1"]
        assert tx.program_exists("later")

    on_person = sum(case.stream == "person" for case in CASES)
    assert dead_letters_counted(settings.worker.web_port) == {
        "person": on_person,
        "config": len(CASES) - on_person,
    }

    # Dead-lettered records are acknowledged like any other: the group's
    # committed offsets reach the end of both topics.
    wait_for_zero_lag(cli_factory)


def test_a_dead_letter_too_long_for_one_record_keeps_the_beginning_and_nothing_stalls(
    settings, store: Store, producer, worker_factory
):
    worker_factory()
    kafka = settings.kafka
    ids = publish_events(producer, kafka.config_topic, [(CONFIG_KEY, KNOWN.to_event())])
    wait_until_processed(store, ids)

    # Over the worker's size limit, under the broker's, and twice as long once
    # escaped as a JSON string in its dead letter: too long for one record.
    raw = json.dumps(
        {
            "schema_version": 2,
            "event_id": "too-new",
            "occurred_at": "2026-05-01T09:00:00+00:00",
            "type": "person.hired",
            "person_id": "c-1",
            "attributes": {"notes": '"' * 480_000},
        }
    ).encode()
    metadata = producer.send(kafka.person_topic, key="c-1", value=raw).get(timeout=30)
    hire = PersonHired(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        person_id="c-2",
        attributes={"title": "Engineer"},
    )
    ids = publish_events(producer, kafka.person_topic, keyed_by_person([hire]))
    wait_until_processed(store, ids)
    wait_until_outbox_empty(store)

    [letter] = read_topic(kafka, kafka.dead_letter_topic, idle_timeout_s=2)
    assert letter["source_offset"] == metadata.offset
    assert letter["payload_truncated_from"] == len(raw)
    assert raw.startswith(letter["payload"].encode())
    assert f"exceeds the limit of {MAX_EVENT_BYTES} bytes" in letter["error"]
    [added] = read_topic(kafka, kafka.membership_topic, idle_timeout_s=2)
    assert added["person_id"] == "c-2"
