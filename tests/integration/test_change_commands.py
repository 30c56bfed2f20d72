"""The one-change commands, end to end: `member add` / `remove` and `rule ...`.

Each command runs as `python -m workers.cli` in a child process against the
test's own PostgreSQL database and Kafka topics, beside a real worker, and must
come back with the worker's verdict. The worker runs without its relay, so the
membership events it decides stay in the outbox to be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import Settings
from infra.store import Store
from schemas.common import new_event_id, utc_now
from schemas.person import PersonSnapshot
from tests.integration.polling import wait_for
from workers.publishing import keyed_by_person, publish_events, wait_until_processed

Cli = Callable[..., Any]

# p1 is in ops, so add-ops makes them a mentee of guild; add-eng is a draft on
# add-ops's dashboard position, so it cannot be published beside it.
CONFIG = {
    "programs": [{"program_id": "guild"}],
    "segments": [
        {
            "segment_id": segment_id,
            "definition": {
                "all": [
                    {"attribute": "department", "operator": "eq", "value": segment_id}
                ]
            },
        }
        for segment_id in ("ops", "eng")
    ],
    "rules": [
        {
            "rule_id": "add-ops",
            "action": "add",
            "program": "guild",
            "role": "mentee",
            "segment": "ops",
            "position": 0,
        },
        {
            "rule_id": "add-eng",
            "action": "add",
            "program": "guild",
            "role": "mentee",
            "segment": "eng",
            "position": 0,
            "status": "draft",
        },
    ],
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    worker = settings.worker.model_copy(update={"relay_in_worker": False})
    return Settings(settings.postgres, settings.kafka, worker)


@pytest.fixture
def configured(
    settings: Settings,
    store: Store,
    producer: Any,
    worker_factory: Callable[..., Any],
    cli_factory: Cli,
    tmp_path: Path,
) -> Store:
    """A worker that holds p1 (ops) and p2 (eng) and has applied CONFIG."""
    worker_factory()
    people = [
        PersonSnapshot(
            event_id=new_event_id(),
            occurred_at=utc_now(),
            person_id=person_id,
            attributes={"department": department},
        )
        for person_id, department in (("p1", "ops"), ("p2", "eng"))
    ]
    ids = publish_events(producer, settings.kafka.person_topic, keyed_by_person(people))
    wait_until_processed(store, ids)

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    applied = cli_factory("apply", str(config_file))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    wait_for(lambda: memberships(store) == [("mentee", "p1", "rule", "add-ops")])
    return store


def memberships(store: Store) -> list[tuple[str, str, str, str]]:
    """Every membership of guild: role, person, source and decided by."""
    with store.transaction() as tx:
        rows = tx.conn.execute(
            "SELECT role, person_id, source, decided_by FROM memberships"
            " WHERE program_id = 'guild' ORDER BY role, person_id"
        ).fetchall()
    return [tuple(row) for row in rows]


def outbox(store: Store, topic: str) -> list[dict[str, Any]]:
    """The payloads waiting in the outbox for a topic, oldest first."""
    with store.transaction() as tx:
        rows = tx.conn.execute(
            "SELECT payload FROM outbox WHERE topic = %s ORDER BY id", (topic,)
        ).fetchall()
    return [row[0] for row in rows]


def rule_statuses(store: Store) -> dict[str, str]:
    with store.transaction() as tx:
        return {rule.rule_id: rule.status.value for rule in tx.load_rules()}


MANUAL_FIELDS = ("type", "program_id", "role", "person_id", "decided_by")


def test_member_add_and_remove_record_manual_changes_and_their_events(
    settings, configured, cli_factory
):
    store = configured
    topic = settings.kafka.membership_topic

    added = cli_factory("member", "add", "guild", "p2", "--role", "mentor")

    assert added.returncode == 0, added.stdout + added.stderr
    assert "applied the manual addition of p2 to guild as mentor" in added.stdout
    assert memberships(store) == [
        ("mentee", "p1", "rule", "add-ops"),
        ("mentor", "p2", "manual", "manual"),
    ]
    manual = [e for e in outbox(store, topic) if e["decided_by"] == "manual"]
    assert [tuple(e[name] for name in MANUAL_FIELDS) for e in manual] == [
        ("membership.added", "guild", "mentor", "p2", "manual")
    ]

    removed = cli_factory("member", "remove", "guild", "p2", "--role", "mentor")

    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "applied the manual removal of p2 from guild as mentor" in removed.stdout
    assert memberships(store) == [("mentee", "p1", "rule", "add-ops")]
    manual = [e for e in outbox(store, topic) if e["decided_by"] == "manual"]
    assert [e["type"] for e in manual] == ["membership.added", "membership.removed"]


def test_a_manual_change_the_worker_rejects_exits_1_with_its_reason(
    settings, configured, cli_factory
):
    store = configured

    started = time.monotonic()
    rejected = cli_factory(
        "member", "add", "ghost", "p2", "--role", "mentor", "--wait-s", "60"
    )

    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    # The worker's verdict, not the end of the wait.
    assert time.monotonic() - started < 60
    assert (
        "the worker rejected the manual addition of p2 to ghost as mentor:"
        " manual change names unknown program 'ghost'"
    ) in rejected.stdout.replace("\n", " ")
    assert memberships(store) == [("mentee", "p1", "rule", "add-ops")]
    (letter,) = outbox(store, settings.kafka.dead_letter_topic)
    assert letter["error"] == "manual change names unknown program 'ghost'"

    # Only active persons can be added; the worker says who it does not know.
    unknown = cli_factory("member", "add", "guild", "nobody", "--role", "mentee")
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "the person is unknown" in unknown.stdout


def test_rule_commands_pause_publish_and_delete_a_rule(configured, cli_factory):
    store = configured

    # add-eng's position is add-ops's, and add-ops is published.
    taken = cli_factory("rule", "publish", "add-eng")
    assert taken.returncode == 1, taken.stdout + taken.stderr
    assert "published rule 'add-ops' holds" in taken.stdout.replace("\n", " ")
    assert rule_statuses(store) == {"add-ops": "published", "add-eng": "draft"}

    paused = cli_factory("rule", "pause", "add-ops")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert "applied the pause of rule add-ops" in paused.stdout
    assert rule_statuses(store) == {"add-ops": "paused", "add-eng": "draft"}
    # Rules never undo themselves: p1 stays a member.
    assert memberships(store) == [("mentee", "p1", "rule", "add-ops")]

    published = cli_factory("rule", "publish", "add-eng")
    assert published.returncode == 0, published.stdout + published.stderr
    assert rule_statuses(store) == {"add-ops": "paused", "add-eng": "published"}
    wait_for(
        lambda: (
            memberships(store)
            == [
                ("mentee", "p1", "rule", "add-ops"),
                ("mentee", "p2", "rule", "add-eng"),
            ]
        )
    )

    deleted = cli_factory("rule", "delete", "add-eng")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert rule_statuses(store) == {"add-ops": "paused"}
    assert len(memberships(store)) == 2

    again = cli_factory("rule", "delete", "add-eng")
    assert again.returncode == 1
    assert "no rule 'add-eng' to delete; rules now: add-ops" in again.stderr
    unknown = cli_factory("rule", "pause", "ghost")
    assert unknown.returncode == 1
    assert "the worker rejected the pause of rule ghost: unknown rule 'ghost'" in (
        unknown.stdout.replace("\n", " ")
    )


def test_a_change_no_worker_answers_exits_5(store, cli_factory):
    pending = cli_factory(
        "member", "add", "guild", "p1", "--role", "mentor", "--wait-s", "1"
    )

    assert pending.returncode == 5, pending.stdout + pending.stderr
    assert "but no worker processed it yet" in pending.stdout.replace("\n", " ")
