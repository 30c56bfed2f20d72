"""Text normalisation before comparison."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.text import normalize_text


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Sales Manager", "sales manager"),
        ("SALES MANAGER", "sales manager"),
        ("  sales \t\n manager  ", "sales manager"),
        ("sales\u00a0manager", "sales manager"),
        ("sales\u2003manager", "sales manager"),
        ("sales\u3000manager", "sales manager"),
        ("sa\u200bles\u200c man\u200dager\u2060\ufeff", "sales manager"),
        ("co\u00adordinator", "coordinator"),
        ("Ｓａｌｅｓ", "sales"),
        ("\ufb01nance", "finance"),
        ("Cafe\u0301", "café"),
        ("Straße", "strasse"),
        ("Ⅻ", "xii"),
        ("", ""),
        (" \u200b ", ""),
    ],
)
def test_normalize_text(raw: str, normalised: str) -> None:
    assert normalize_text(raw) == normalised


def test_zero_width_between_spaces_leaves_one_space() -> None:
    assert normalize_text("a \u200b b") == "a b"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_normalize_text_is_idempotent(raw: str) -> None:
    once = normalize_text(raw)
    assert normalize_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_normalised_text_has_no_edge_space_no_space_run_and_no_zero_width(
    raw: str,
) -> None:
    text = normalize_text(raw)
    assert text == text.strip()
    assert "  " not in text
    assert not set(text) & set("\u200b\u200c\u200d\u2060\ufeff\u00ad")
