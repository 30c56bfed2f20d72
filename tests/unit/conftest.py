"""Fixtures of the unit tests: factories of events, no services."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from schemas.person import PersonEvent, person_event_adapter
from tests.unit.factories import T0, PersonEventFactory


@pytest.fixture
def person_event_factory() -> PersonEventFactory:
    """Build person events, each one minute after the previous by default.

    ``person_event_factory("person.updated", changes={...})`` gives an update of
    person ``p-1``; ``at=`` and ``event_id=`` pin the version of the event.
    """
    counter = itertools.count(1)

    def build(
        event_type: str,
        *,
        person_id: str = "p-1",
        at: datetime | None = None,
        event_id: str | None = None,
        **fields: Any,
    ) -> PersonEvent:
        rank = next(counter)
        return person_event_adapter.validate_python(
            {
                "type": event_type,
                "event_id": event_id or f"e-{rank:04d}",
                "occurred_at": at or T0 + timedelta(minutes=rank),
                "person_id": person_id,
                **fields,
            }
        )

    return build
