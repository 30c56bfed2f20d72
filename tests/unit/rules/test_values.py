"""Reading attribute values as the numbers, dates and texts conditions compare."""

from __future__ import annotations

from typing import Any

import pytest

from rules.search import NUMBER, search_entry
from rules.values import as_number


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (9000, 9000.0),
        (1.5, 1.5),
        ("9000", 9000.0),
        (" 12.5 ", 12.5),
        ("1e3", 1000.0),
        ("-3", -3.0),
        ("1_000", None),
        ("1_000.5", None),
        ("1e1_0", None),
        (" 1_0 ", None),
        ("_1", None),
        ("nan", None),
        ("inf", None),
        (10**400, None),
        (True, None),
        ("", None),
        ("a_b", None),
    ],
)
def test_as_number_reads_what_json_and_sql_read(
    value: Any, number: float | None
) -> None:
    assert as_number(value) == number


def test_text_with_underscores_has_no_number_in_the_search_copy() -> None:
    assert NUMBER not in search_entry("1_000")
    assert search_entry("1000")[NUMBER] == 1000.0
