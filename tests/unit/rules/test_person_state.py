"""A person's record and how each HR event changes it."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rules.person_state import (
    PersonState,
    PersonStatus,
    apply_event,
    is_stale,
    with_status,
)
from tests.unit.factories import T0, PersonEventFactory

HIRED = {"title": "Engineer", "department": "IT", "location": "Paris"}


@pytest.fixture
def hired_state(person_event_factory: PersonEventFactory) -> PersonState:
    return apply_event(
        None, person_event_factory("person.hired", attributes=HIRED)
    ).state


def test_first_event_creates_an_active_record(
    person_event_factory: PersonEventFactory,
) -> None:
    event = person_event_factory("person.hired", attributes=HIRED, event_id="e-1")
    transition = apply_event(None, event)
    assert transition.applied is True
    state = transition.state
    assert (state.person_id, dict(state.attributes)) == ("p-1", HIRED)
    assert state.status is PersonStatus.ACTIVE
    assert state.is_active is True
    assert state.departure_reason is None
    assert (state.version_at, state.version_event_id) == (event.occurred_at, "e-1")


def test_update_changes_only_the_keys_it_carries(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    event = person_event_factory("person.updated", changes={"title": "Lead"})
    state = apply_event(hired_state, event).state
    assert dict(state.attributes) == {**HIRED, "title": "Lead"}
    assert state.version_event_id == event.event_id


def test_update_with_an_explicit_null_clears_the_attribute(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    event = person_event_factory(
        "person.updated", changes={"location": None, "cost_center": "CC-1"}
    )
    state = apply_event(hired_state, event).state
    assert dict(state.attributes) == {
        "title": "Engineer",
        "department": "IT",
        "cost_center": "CC-1",
    }


def test_update_of_an_unknown_person_starts_an_active_record(
    person_event_factory: PersonEventFactory,
) -> None:
    event = person_event_factory("person.updated", changes={"title": "Lead", "x": None})
    state = apply_event(None, event).state
    assert dict(state.attributes) == {"title": "Lead"}
    assert state.status is PersonStatus.ACTIVE


def test_snapshot_replaces_the_record_and_clears_omitted_keys(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    event = person_event_factory(
        "person.snapshot",
        attributes={"title": "Manager", "department": None, "grade": 7},
    )
    state = apply_event(hired_state, event).state
    assert dict(state.attributes) == {"title": "Manager", "grade": 7}


def test_applying_an_event_does_not_mutate_the_previous_state(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    apply_event(hired_state, person_event_factory("person.updated", changes={"a": 1}))
    apply_event(hired_state, person_event_factory("person.deleted"))
    assert dict(hired_state.attributes) == HIRED


@pytest.mark.parametrize(
    ("occurred_offset", "event_id", "stale"),
    [
        (timedelta(seconds=-1), "zzz", True),
        (timedelta(0), "e-0000", True),
        (timedelta(0), "e-0001", True),  # the same event delivered again
        (timedelta(0), "e-0002", False),
        (timedelta(microseconds=1), "a", False),
    ],
)
def test_last_writer_wins_by_occurred_at_then_event_id(
    person_event_factory: PersonEventFactory,
    occurred_offset: timedelta,
    event_id: str,
    stale: bool,
) -> None:
    current = apply_event(
        None,
        person_event_factory(
            "person.hired", attributes=HIRED, at=T0, event_id="e-0001"
        ),
    ).state
    event = person_event_factory(
        "person.updated",
        changes={"title": "Lead"},
        at=T0 + occurred_offset,
        event_id=event_id,
    )
    assert is_stale(current, event) is stale
    transition = apply_event(current, event)
    assert transition.applied is (not stale)
    expected_title = "Engineer" if stale else "Lead"
    assert transition.state.attributes["title"] == expected_title


def test_stale_event_leaves_the_state_exactly_as_it_was(
    person_event_factory: PersonEventFactory,
) -> None:
    newer = person_event_factory("person.hired", attributes=HIRED, at=T0)
    current = apply_event(None, newer).state
    for older in [
        person_event_factory("person.deleted", at=T0 - timedelta(days=1)),
        person_event_factory(
            "person.terminated",
            at=T0 - timedelta(days=1),
            termination_date="2024-01-31",
        ),
        person_event_factory("person.snapshot", at=T0 - timedelta(1), attributes={}),
    ]:
        transition = apply_event(current, older)
        assert transition.applied is False
        assert transition.state is current


def test_nothing_is_stale_for_an_unknown_person(
    person_event_factory: PersonEventFactory,
) -> None:
    assert is_stale(None, person_event_factory("person.deleted")) is False


def test_timestamps_compare_as_instants_across_time_zones(
    person_event_factory: PersonEventFactory,
) -> None:
    current = apply_event(
        None, person_event_factory("person.hired", attributes=HIRED, at=T0)
    ).state
    # 13:30 in Paris summer time is 11:30 UTC: earlier than T0 (12:00 UTC).
    earlier = person_event_factory(
        "person.updated", changes={"title": "X"}, at="2024-06-01T13:30:00+02:00"
    )
    assert apply_event(current, earlier).applied is False


def test_termination_marks_the_person_terminated_with_the_date(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    event = person_event_factory("person.terminated", termination_date="2024-06-30")
    state = apply_event(hired_state, event).state
    assert state.status is PersonStatus.TERMINATED
    assert state.is_active is False
    assert state.departure_reason == "person_terminated"
    assert state.attributes["termination_date"] == "2024-06-30"
    assert state.attributes["title"] == "Engineer"


def test_deletion_erases_the_attributes(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    state = apply_event(hired_state, person_event_factory("person.deleted")).state
    assert state.status is PersonStatus.DELETED
    assert state.is_active is False
    assert state.departure_reason == "person_deleted"
    assert dict(state.attributes) == {}


def test_rehire_after_termination_is_active_and_evaluated_from_scratch(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    terminated = apply_event(
        hired_state,
        person_event_factory("person.terminated", termination_date="2024-06-30"),
    ).state
    rehired = apply_event(
        terminated,
        person_event_factory(
            "person.hired", attributes={"title": "Analyst", "hire_date": "2024-09-01"}
        ),
    ).state
    assert rehired.status is PersonStatus.ACTIVE
    assert rehired.departure_reason is None
    assert dict(rehired.attributes) == {"title": "Analyst", "hire_date": "2024-09-01"}


def test_update_or_snapshot_of_a_terminated_person_keeps_them_terminated(
    hired_state: PersonState, person_event_factory: PersonEventFactory
) -> None:
    state = apply_event(
        hired_state,
        person_event_factory("person.terminated", termination_date="2024-06-30"),
    ).state
    state = apply_event(
        state, person_event_factory("person.updated", changes={"title": "Lead"})
    ).state
    assert state.status is PersonStatus.TERMINATED
    state = apply_event(
        state, person_event_factory("person.snapshot", attributes={"title": "Lead"})
    ).state
    assert state.status is PersonStatus.TERMINATED


def test_termination_date_stays_the_hr_date_whatever_the_instant(
    person_event_factory: PersonEventFactory,
) -> None:
    event = person_event_factory(
        "person.terminated",
        termination_date="2024-06-30",
        at="2024-06-30T23:30:00-10:00",
    )
    assert event.termination_date == date(2024, 6, 30)  # type: ignore[union-attr]
    state = apply_event(None, event).state
    assert state.attributes["termination_date"] == "2024-06-30"


def test_with_status_changes_only_the_status(hired_state: PersonState) -> None:
    state = with_status(hired_state, PersonStatus.TERMINATED)
    assert state.status is PersonStatus.TERMINATED
    assert state.attributes == hired_state.attributes
    assert state.version_event_id == hired_state.version_event_id
    assert hired_state.status is PersonStatus.ACTIVE


def test_a_termination_delivered_after_a_newer_update_still_applies(
    person_event_factory: PersonEventFactory,
) -> None:
    hired = person_event_factory("person.hired", attributes=HIRED, at=T0)
    update = person_event_factory(
        "person.updated", changes={"title": "Lead"}, at=T0 + timedelta(days=2)
    )
    state = apply_event(apply_event(None, hired).state, update).state
    termination = person_event_factory(
        "person.terminated",
        termination_date="2024-06-30",
        at=T0 + timedelta(days=1),
    )

    transition = apply_event(state, termination)

    assert transition.applied is True
    terminated = transition.state
    assert terminated.status is PersonStatus.TERMINATED
    # The newer update's attributes stay, and so does the record's version.
    assert terminated.attributes["title"] == "Lead"
    assert terminated.attributes["termination_date"] == "2024-06-30"
    assert terminated.version_event_id == update.event_id
    assert terminated.lifecycle_event_id == termination.event_id
    # Delivered again, it changes nothing; an update older than it neither.
    assert is_stale(terminated, termination) is True
    older = person_event_factory(
        "person.updated", changes={"title": "X"}, at=T0 + timedelta(hours=1)
    )
    assert apply_event(terminated, older).applied is False


@pytest.mark.parametrize(
    ("lifecycle", "applies"),
    [
        ("hired", True),  # the termination is newer than the hire
        ("rehired", False),  # a rehire after it wins
        (None, True),  # known from snapshots only: no lifecycle event yet
    ],
)
def test_a_late_lifecycle_event_is_stale_only_against_a_newer_one(
    person_event_factory: PersonEventFactory, lifecycle: str | None, applies: bool
) -> None:
    first = {
        "hired": person_event_factory("person.hired", attributes=HIRED, at=T0),
        "rehired": person_event_factory(
            "person.hired", attributes=HIRED, at=T0 + timedelta(days=2)
        ),
        None: person_event_factory("person.snapshot", attributes=HIRED, at=T0),
    }[lifecycle]
    update = person_event_factory(
        "person.updated", changes={"title": "Lead"}, at=T0 + timedelta(days=3)
    )
    state = apply_event(apply_event(None, first).state, update).state

    for late in (
        person_event_factory(
            "person.terminated",
            termination_date="2024-06-30",
            at=T0 + timedelta(days=1),
        ),
        person_event_factory("person.deleted", at=T0 + timedelta(days=1)),
    ):
        transition = apply_event(state, late)
        assert transition.applied is applies
        assert transition.state.is_active is not applies
