"""Lag per partition from committed, beginning and end offsets."""

from __future__ import annotations

import pytest

from infra.lag import PartitionLag, partition_lags, total_lag

P0 = ("hr.person-events", 0)
P1 = ("hr.person-events", 1)
C0 = ("mentorflow.config", 0)


@pytest.mark.parametrize(
    ("committed", "beginning", "end", "expected_committed", "expected_lag"),
    [
        ({P0: 7}, {P0: 0}, {P0: 10}, 7, 3),
        ({P0: 10}, {P0: 0}, {P0: 10}, 10, 0),
        # No commit yet: lag counts from the beginning, where the group starts.
        ({}, {P0: 4}, {P0: 10}, None, 6),
        ({P0: -1}, {P0: 0}, {P0: 5}, None, 5),
        # A stale end offset never makes the lag negative.
        ({P0: 12}, {P0: 0}, {P0: 10}, 12, 0),
        ({}, {}, {}, None, 0),
    ],
)
def test_partition_lag_counts_from_the_commit_or_else_the_beginning(
    committed, beginning, end, expected_committed, expected_lag
):
    (lag,) = partition_lags([P0], committed, beginning, end)

    assert lag == PartitionLag(
        P0[0], P0[1], expected_committed, end.get(P0, 0), expected_lag
    )


def test_partitions_come_sorted_once_each_and_the_total_adds_them_up():
    lags = partition_lags(
        [C0, P1, P0, P1],
        {P0: 1, P1: 2, C0: 0},
        {P0: 0, P1: 0, C0: 0},
        {P0: 4, P1: 2, C0: 1},
    )

    assert [(lag.topic, lag.partition, lag.lag) for lag in lags] == [
        ("hr.person-events", 0, 3),
        ("hr.person-events", 1, 0),
        ("mentorflow.config", 0, 1),
    ]
    assert total_lag(lags) == 4
    assert total_lag([]) == 0
