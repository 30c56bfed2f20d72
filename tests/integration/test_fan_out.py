"""A config change touching 100,000 people, on a live worker: done in chunks.

The change has a remove rule, so the blast-radius guard looks at everybody
first. The re-evaluation commits one chunk of persons at a time, so membership
grows in steps while it runs, person events keep flowing meanwhile, and the
worker keeps its partitions (no member of the group is evicted).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from infra import bulk
from infra.settings import Settings
from infra.store import Store
from rules.person_state import PersonState, PersonStatus
from rules.search import search_document
from schemas.common import new_event_id
from schemas.config import CONFIG_KEY
from schemas.person import PersonUpdated
from schemas.segments import Program, Role, RuleAction, Segment
from workers.config_file import ConfigFile, RuleEntry
from workers.publishing import keyed_by_person, publish_events, wait_until_processed

PEOPLE = 100_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def segment(segment_id: str, attribute: str, value: str | int) -> Segment:
    condition = {"attribute": attribute, "operator": "eq", "value": value}
    return Segment.model_validate(
        {"segment_id": segment_id, "definition": {"all": [condition]}}
    )


# Everyone in sales but the fifth of them at level 4.
EVERYONE_IN_SALES = ConfigFile(
    programs=(Program(program_id="sales-circle"),),
    segments=(segment("sales", "department", "sales"), segment("level-4", "level", 4)),
    rules=(
        RuleEntry(
            rule_id="add-sales",
            action=RuleAction.ADD,
            program="sales-circle",
            role=Role.MENTEE,
            segment="sales",
        ),
        RuleEntry(
            rule_id="not-level-4",
            action=RuleAction.REMOVE,
            program="sales-circle",
            role=Role.MENTEE,
            segment="level-4",
        ),
    ),
)
MEMBERS = PEOPLE * 4 // 5


def load_people(store: Store) -> None:
    """Write the people straight to the store, as a bulk load would."""
    chunk = 10_000
    for start in range(0, PEOPLE, chunk):
        states = [
            PersonState(
                f"p{number:06d}",
                {"department": "sales", "level": number % 5},
                PersonStatus.ACTIVE,
                T0,
                f"load-{number}",
            )
            for number in range(start, start + chunk)
        ]
        with store.transaction() as tx:
            bulk.save_persons(
                tx.conn, states, [search_document(s.attributes) for s in states]
            )


def member_count(store: Store) -> int:
    with store.transaction() as tx:
        return tx.membership_counts().get(("sales-circle", Role.MENTEE), 0)


def test_a_change_touching_100000_people_runs_in_chunks_beside_live_events(
    settings: Settings, store: Store, producer, worker_factory, tmp_path: Path
):
    load_people(store)
    worker_factory()
    config_ids = publish_events(
        producer,
        settings.kafka.config_topic,
        [(CONFIG_KEY, EVERYONE_IN_SALES.to_event())],
    )

    # Watch the fan-out: membership must grow in steps, not all at once.
    counts_seen = set()
    live_event_delays = []
    deadline = time.monotonic() + 300
    while member_count(store) < MEMBERS and time.monotonic() < deadline:
        counts_seen.add(member_count(store))
        update = PersonUpdated(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            person_id="outsider",
            changes={"department": "eng", "seen_at": time.time()},
        )
        sent = time.monotonic()
        ids = publish_events(
            producer, settings.kafka.person_topic, keyed_by_person([update])
        )
        wait_until_processed(store, ids, timeout_s=60)
        live_event_delays.append(time.monotonic() - sent)
        time.sleep(0.5)

    wait_until_processed(store, config_ids, timeout_s=60)
    assert member_count(store) == MEMBERS
    assert len({n for n in counts_seen if 0 < n < MEMBERS}) >= 2, sorted(counts_seen)
    # Person events were served while the fan-out ran, not after it.
    assert len(live_event_delays) >= 3
    assert max(live_event_delays) < 15, live_event_delays
    log = (tmp_path / "worker.log").read_text()
    assert log.count("partitions assigned") == 1, "the group rebalanced"
    assert "partitions revoked" not in log.split("partitions assigned", 1)[1]
