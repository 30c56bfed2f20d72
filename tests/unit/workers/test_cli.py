"""The command line's operability commands: parsing and exit statuses."""

from __future__ import annotations

import pytest

from infra.lag import PartitionLag
from workers.cli import LAG_EXCEEDED_STATUS, _lag_json, _parser


@pytest.mark.parametrize("command", ["lag", "status", "relay", "worker"])
def test_the_operability_commands_exist_with_help(command):
    args = _parser().parse_args([command])

    assert args.command == command
    assert args.run.__doc__


def test_max_lag_is_a_whole_number_of_records():
    assert _parser().parse_args(["lag", "--max-lag", "0"]).max_lag == 0
    assert _parser().parse_args(["lag"]).max_lag is None


@pytest.mark.parametrize("text", ["-1", "ten", "1.5"])
def test_a_max_lag_that_is_not_a_whole_number_is_refused(text, capsys):
    with pytest.raises(SystemExit) as refused:
        _parser().parse_args(["lag", "--max-lag", text])

    assert refused.value.code == 2
    assert "expected a whole number of records" in capsys.readouterr().err


def test_lag_json_lists_each_partition_and_the_total():
    lags = [
        PartitionLag("hr.person-events", 0, 3, 5, 2),
        PartitionLag("mentorflow.config", 0, None, 1, 1),
    ]

    assert _lag_json("mentorflow", lags) == {
        "group": "mentorflow",
        "total_lag": 3,
        "partitions": [
            {
                "topic": "hr.person-events",
                "partition": 0,
                "committed": 3,
                "end": 5,
                "lag": 2,
            },
            {
                "topic": "mentorflow.config",
                "partition": 0,
                "committed": None,
                "end": 1,
                "lag": 1,
            },
        ],
    }


def test_exceeding_the_lag_is_told_apart_from_failing_to_ask():
    assert LAG_EXCEEDED_STATUS not in (0, 1, 2)
