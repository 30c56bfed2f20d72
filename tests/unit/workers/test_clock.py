"""Today is the business zone's date, whatever the process's own zone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules.segments import matches
from tests.unit.factories import all_of, cond
from workers.clock import BusinessClock

# 07:30 UTC on 10 March 2024 is still 9 March in Los Angeles.
INSTANT = datetime(2024, 3, 10, 7, 30, tzinfo=UTC)


@pytest.fixture(params=["Pacific/Kiritimati", "America/Anchorage"])
def process_zone(request, monkeypatch) -> Iterator[str]:
    """Run the test with the process's local zone far from UTC."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_today_is_the_date_in_the_business_zone(process_zone):
    los_angeles = BusinessClock(ZoneInfo("America/Los_Angeles"), now=lambda: INSTANT)
    paris = BusinessClock(ZoneInfo("Europe/Paris"), now=lambda: INSTANT)

    assert los_angeles.today() == date(2024, 3, 9)
    assert paris.today() == date(2024, 3, 10)


def test_as_of_pins_today(process_zone):
    clock = BusinessClock(ZoneInfo("UTC"), as_of=date(2018, 6, 30), now=lambda: INSTANT)

    assert clock.today() == date(2018, 6, 30)
    assert clock.now() == INSTANT


@pytest.mark.parametrize(
    ("days_ago", "expected"), [(29, True), (30, True), (31, False)]
)
def test_within_last_bounds_hold_on_the_business_date(process_zone, days_ago, expected):
    clock = BusinessClock(ZoneInfo("America/Los_Angeles"), now=lambda: INSTANT)
    hired = clock.today() - timedelta(days=days_ago)
    segment = all_of(cond("hire_date", "within_last", 30))

    # The HR date is a plain date: no zone conversion may move it.
    assert matches(segment, {"hire_date": hired.isoformat()}, clock.today()) is expected
