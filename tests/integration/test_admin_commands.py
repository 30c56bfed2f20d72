"""The admin commands, end to end: preview, conflicts, held and confirm."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.settings import Settings
from infra.store import Store
from schemas.common import new_event_id, utc_now
from schemas.person import PersonSnapshot
from tests.integration.polling import wait_for
from workers.publishing import keyed_by_person, publish_events, wait_until_processed

ADD_STAFF = {
    "rule_id": "add-staff",
    "action": "add",
    "program": "guild",
    "role": "mentee",
    "segment": "staff",
}
REMOVE_OPS_RULE = {
    "rule_id": "remove-ops",
    "action": "remove",
    "program": "guild",
    "role": "mentee",
    "segment": "ops",
}
SEGMENTS = [
    {
        "segment_id": "staff",
        "definition": {"all": [{"attribute": "department", "operator": "exists"}]},
    },
    {
        "segment_id": "ops",
        "definition": {
            "all": [{"attribute": "department", "operator": "eq", "value": "ops"}]
        },
    },
]
PROGRAMS = [{"program_id": "guild"}]
ADD_ALL = {"programs": PROGRAMS, "segments": SEGMENTS, "rules": [ADD_STAFF]}
REMOVE_OPS = {
    "programs": PROGRAMS,
    "segments": SEGMENTS,
    "rules": [ADD_STAFF, REMOVE_OPS_RULE],
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    worker = settings.worker.model_copy(
        update={"blast_radius_share": 0.5, "blast_radius_min_removals": 3}
    )
    return Settings(settings.postgres, settings.kafka, worker)


def write_config(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def members(store: Store) -> list[str]:
    with store.transaction() as tx:
        return [row.person_id for row in tx.members("guild")]


def held_configs(store: Store) -> list[tuple[str, dict[str, object], object]]:
    with store.transaction() as tx:
        return list(tx.held_configs())


def test_preview_conflicts_and_a_held_change_confirmed(
    settings, store, producer, worker_factory, cli_factory, tmp_path
):
    worker_factory()
    people = [
        PersonSnapshot(
            event_id=new_event_id(),
            occurred_at=utc_now(),
            person_id=f"p{number}",
            attributes={"department": "ops" if number < 6 else "eng"},
        )
        for number in range(8)
    ]
    ids = publish_events(producer, settings.kafka.person_topic, keyed_by_person(people))
    wait_until_processed(store, ids)
    add_all = write_config(tmp_path / "add.yaml", ADD_ALL)
    remove_ops = write_config(tmp_path / "remove.yaml", REMOVE_OPS)

    preview = cli_factory("preview", str(add_all))
    assert preview.returncode == 0, preview.stderr
    assert "guild" in preview.stdout and "p0, p1, p2" in preview.stdout
    assert members(store) == []

    applied = cli_factory("apply", str(add_all))
    assert applied.returncode == 0, applied.stderr
    assert "applied 1 program, 2 segments and 1 rule" in applied.stdout
    wait_for(lambda: len(members(store)) == 8)

    preview = cli_factory("preview", str(remove_ops))
    assert "p0, p1, p2, p3, p4, p5" in preview.stdout
    assert "would be held for confirmation" in preview.stdout

    # Six of eight would go: over half, so the change is held, and apply says so.
    held_apply = cli_factory("apply", str(remove_ops))
    assert held_apply.returncode == 4, held_apply.stdout
    ((event_id, _, _),) = held_configs(store)
    assert f"mentorflow confirm {event_id}" in held_apply.stdout.replace("\n", "")
    held = cli_factory("held")
    assert "6 of 8 in guild" in held.stdout, held.stdout
    assert event_id in held.stdout.replace("\n", "").replace("│", "").replace(" ", "")
    assert len(members(store)) == 8

    wrong = cli_factory("confirm", "no-such-event")
    assert wrong.returncode == 1
    assert "no held config change 'no-such-event'" in wrong.stderr
    confirmed = cli_factory("confirm", event_id)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert members(store) == ["p6", "p7"]
    assert "no config change is held" in cli_factory("held").stdout

    near = cli_factory("near-misses", "ops")
    assert "no value narrowly misses segment ops" in near.stdout, near.stderr
    assert cli_factory("near-misses", "ghost").returncode == 1

    conflicts = cli_factory("conflicts")
    assert conflicts.returncode == 0
    assert "add-staff" in conflicts.stdout and "remove-ops" in conflicts.stdout
    row = next(line for line in conflicts.stdout.splitlines() if "add-staff" in line)
    assert " 6 " in row and "remove-ops" in row.split("│")[-2]
