"""The next day on which a person's time-relative outcomes can change."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.flips import next_flip
from rules.segments import matches
from tests.unit.factories import TODAY, all_of, any_of, cond, not_

DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("operator", "attribute_day", "days", "expected"),
    [
        # within_last 30 holds from the day itself to 30 days after it.
        ("within_last", TODAY - 30 * DAY, 30, TODAY + DAY),
        ("within_last", TODAY - 10 * DAY, 30, TODAY + 21 * DAY),
        ("within_last", TODAY + 5 * DAY, 30, TODAY + 5 * DAY),
        ("within_last", TODAY - 31 * DAY, 30, None),
        # more_than_ago 30 starts holding 31 days after the day.
        ("more_than_ago", TODAY - 30 * DAY, 30, TODAY + DAY),
        ("more_than_ago", TODAY - 31 * DAY, 30, None),
        ("more_than_ago", TODAY, 30, TODAY + 31 * DAY),
        # within_next 7 holds from 7 days before the day to the day itself.
        ("within_next", TODAY + 8 * DAY, 7, TODAY + DAY),
        ("within_next", TODAY + 3 * DAY, 7, TODAY + 4 * DAY),
        ("within_next", TODAY, 7, TODAY + DAY),
        ("within_next", TODAY - DAY, 7, None),
        # more_than_ahead 7 stops holding 7 days before the day.
        ("more_than_ahead", TODAY + 9 * DAY, 7, TODAY + 2 * DAY),
        ("more_than_ahead", TODAY + 7 * DAY, 7, None),
    ],
)
def test_next_flip_is_the_first_day_the_window_opens_or_closes(
    operator, attribute_day, days, expected
):
    segment = all_of(cond("hire_date", operator, days))
    attributes = {"hire_date": attribute_day.isoformat()}

    assert next_flip([segment], attributes, TODAY) == expected


def test_next_flip_takes_the_earliest_day_across_segments_and_nested_groups():
    tenure = any_of(not_(cond("hire_date", "more_than_ago", 90)))
    anniversary = all_of(cond("review_date", "within_next", 3))
    attributes = {"hire_date": "2024-06-01", "review_date": "2024-07-01"}

    # hire: more_than_ago 90 flips on 2024-08-31; review: within_next 3 opens
    # on 2024-06-28.
    assert next_flip([tenure, anniversary], attributes, TODAY) == date(2024, 6, 28)


def test_a_missing_or_unreadable_date_and_other_operators_set_no_timer():
    segments = [
        all_of(cond("hire_date", "within_last", 30)),
        all_of(cond("hire_date", "gte", "2024-01-01")),
    ]

    assert next_flip(segments, {}, TODAY) is None
    assert next_flip(segments, {"hire_date": "soon"}, TODAY) is None
    assert next_flip(segments, {"hire_date": "2024-05-01"}, TODAY) is None


OPERATORS = st.sampled_from(
    ["within_last", "more_than_ago", "within_next", "more_than_ahead"]
)


@settings(max_examples=300, deadline=None)
@given(
    operator=OPERATORS,
    days=st.integers(min_value=0, max_value=60),
    offset=st.integers(min_value=-120, max_value=120),
    horizon=st.integers(min_value=1, max_value=150),
)
def test_no_outcome_changes_before_the_next_flip(operator, days, offset, horizon):
    segment = all_of(cond("hire_date", operator, days))
    attributes = {"hire_date": (TODAY + offset * DAY).isoformat()}
    flip = next_flip([segment], attributes, TODAY)
    today_answer = matches(segment, attributes, TODAY)

    later = TODAY + horizon * DAY
    if flip is None or later < flip:
        assert matches(segment, attributes, later) == today_answer
    if flip is not None:
        assert flip > TODAY
        assert matches(segment, attributes, flip) != matches(
            segment, attributes, flip - DAY
        )


def test_flips_beyond_the_calendar_never_come_and_never_raise():
    huge = 10**9
    segments = [
        all_of(cond("start", "within_last", huge)),
        all_of(cond("end", "more_than_ahead", huge)),
    ]
    attributes = {"start": "9999-12-30", "end": "0001-01-02"}

    # The window opens on the day itself; it would close past year 9999.
    assert next_flip(segments, attributes, TODAY) == date(9999, 12, 30)
    assert next_flip(segments[1:], attributes, TODAY) is None
