"""Held events released together: their order and the instants they count from."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rules.person_state import apply_event
from schemas.person import PersonEvent, person_event_adapter
from workers.batch import as_released

PARIS = ZoneInfo("Europe/Paris")
DAY_1, DAY_2 = date(2026, 3, 6), date(2026, 3, 7)
MIDNIGHT_1 = datetime(2026, 3, 6, tzinfo=PARIS)
MIDNIGHT_2 = datetime(2026, 3, 7, tzinfo=PARIS)
MORNING = datetime(2026, 3, 1, 9, tzinfo=UTC)
EVENING = datetime(2026, 3, 1, 18, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def held(event_id: str, written_at: datetime, effective_on: date) -> PersonEvent:
    return person_event_adapter.validate_python(
        {
            "type": "person.updated",
            "event_id": event_id,
            "occurred_at": written_at,
            "person_id": "p-1",
            "effective_at": effective_on,
            "changes": {"title": event_id},
        }
    )


def termination(event_id: str, written_at: datetime, leaves_on: date) -> PersonEvent:
    return person_event_adapter.validate_python(
        {
            "type": "person.terminated",
            "event_id": event_id,
            "occurred_at": written_at,
            "person_id": "p-1",
            "termination_date": leaves_on,
        }
    )


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [held("e-2", MORNING, DAY_1), held("e-1", EVENING, DAY_1)],
            [("e-2", MIDNIGHT_1), ("e-1", MIDNIGHT_1 + TICK)],
            id="one-day-by-time-written-not-by-id",
        ),
        pytest.param(
            [held("e-2", MORNING, DAY_1), held("e-1", MORNING, DAY_1)],
            [("e-1", MIDNIGHT_1), ("e-2", MIDNIGHT_1 + TICK)],
            id="one-day-same-instant-by-id",
        ),
        pytest.param(
            [held("e-1", MORNING, DAY_2), held("e-2", EVENING, DAY_1)],
            [("e-2", MIDNIGHT_1), ("e-1", MIDNIGHT_2)],
            id="earlier-effective-day-first",
        ),
        pytest.param(
            [termination("e-1", EVENING, DAY_1), held("e-2", MORNING, DAY_1)],
            [("e-2", MIDNIGHT_1), ("e-1", MIDNIGHT_1 + TICK)],
            id="termination-on-its-date-with-an-update",
        ),
        pytest.param(
            [held("e-1", MIDNIGHT_1 + timedelta(hours=1), DAY_1)],
            [("e-1", MIDNIGHT_1 + timedelta(hours=1))],
            id="written-after-taking-effect-counts-when-written",
        ),
    ],
)
def test_held_events_apply_by_effective_day_then_time_written_then_id(
    events: list[PersonEvent], expected: list[tuple[str, datetime]]
) -> None:
    released = as_released(events, PARIS)

    assert [(event.event_id, event.occurred_at) for event in released] == expected


def test_no_held_event_released_together_is_stale_against_another() -> None:
    # Ids descending, so that a tie decided by event_id would drop the later ones.
    events = [held(f"e-{9 - n}", MORNING + n * TICK, DAY_1) for n in range(4)]
    state: Any = None

    for event in as_released(events, PARIS):
        transition = apply_event(state, event)
        assert transition.applied
        state = transition.state
