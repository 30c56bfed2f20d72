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


# 10:30 UTC on 10 March 2024 is 11 March in Kiritimati (UTC+14), still 9 March
# in Pago Pago (UTC-11), and 10 March in Los Angeles, half an hour into summer
# time: the process's zone, UTC and the business zone name different dates.
SPREAD_INSTANT = datetime(2024, 3, 10, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("operator", "offset", "expected"),
    [
        ("within_last", -29, True),
        ("within_last", -30, True),
        ("within_last", -31, False),
        ("more_than_ago", -29, False),
        ("more_than_ago", -30, False),
        ("more_than_ago", -31, True),
        ("within_next", 29, True),
        ("within_next", 30, True),
        ("within_next", 31, False),
        ("more_than_ahead", 29, False),
        ("more_than_ahead", 30, False),
        ("more_than_ahead", 31, True),
    ],
)
@pytest.mark.parametrize(
    ("process_zone", "business_zone", "business_today"),
    [
        ("Pacific/Kiritimati", "Pacific/Pago_Pago", date(2024, 3, 9)),
        ("Pacific/Pago_Pago", "Pacific/Kiritimati", date(2024, 3, 11)),
        ("America/Los_Angeles", "Pacific/Kiritimati", date(2024, 3, 11)),
        ("Pacific/Kiritimati", "America/Los_Angeles", date(2024, 3, 10)),
    ],
    indirect=["process_zone"],
)
def test_time_relative_bounds_hold_on_the_business_date_in_another_process_zone(
    process_zone, business_zone, business_today, operator, offset, expected
):
    clock = BusinessClock(ZoneInfo(business_zone), now=lambda: SPREAD_INSTANT)
    local = datetime.fromtimestamp(SPREAD_INSTANT.timestamp())
    process_wall_clock = SPREAD_INSTANT.astimezone(ZoneInfo(process_zone))

    # The process really runs in its zone, on another date than the business.
    assert local == process_wall_clock.replace(tzinfo=None)
    assert local.date() != business_today
    assert clock.today() == business_today

    # The day is counted from the expected business date, not from the clock, so
    # a clock that read the process's zone would move every bound by a day.
    day = business_today + timedelta(days=offset)
    segment = all_of(cond("hire_date", operator, 30))
    assert matches(segment, {"hire_date": day.isoformat()}, clock.today()) is expected
