"""Text normalisation before comparison."""

from __future__ import annotations

import unicodedata
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.text import normalize_text

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
# Marks and embeddings that set text direction, and the Mongolian vowel
# separator: as invisible as the zero-width characters, and removed alike.
DIRECTION_MARKS = [
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u180e",
]
INVISIBLE = [*ZERO_WIDTH, *DIRECTION_MARKS]
WHITE_SPACE = [" ", "\t", "\n", "\u00a0", "\u2003", "\u3000"]
# Letters whose case folding or composition is not one character to one.
LETTERS = [*"aeijosAEIJOS", "ß", "İ", "ı", "ς", "Σ", "α", "Α", "ǰ", "ΐ", "ᾳ", "é"]
# Combining marks, with the Greek ypogegrammeni that case folding turns into a
# letter, and Hangul jamo that NFKC composes into syllables.
COMBINING = ["\u0301", "\u0308", "\u0327", "\u030c", "\u0323", "\u0302", "\u0345"]
JAMO = ["\u1100", "\u1161", "\u11a8"]
# Fullwidth forms, ligatures and other compatibility characters.
COMPATIBLE = ["Ａ", "ｅ", "ｊ", "１", "ﬁ", "ﬂ", "ﬀ", "ﬃ", "ﬅ", "Ⅻ", "\u2126", "\u212b"]

WORD_CHARACTERS = [*LETTERS, *COMBINING, *JAMO, *COMPATIBLE, *INVISIBLE]
# Not st.text(): its characters seldom combine, so the orders that matter
# would hardly ever be tried.
UNTIDY_TEXTS = st.text(st.sampled_from([*WORD_CHARACTERS, *WHITE_SPACE]), max_size=16)
WORDS = st.text(st.sampled_from(WORD_CHARACTERS), max_size=6)


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
        ("Cafe\u0301", "caf\u00e9"),
        ("Straße", "strasse"),
        ("Ⅻ", "xii"),
        ("", ""),
        (" \u200b ", ""),
    ],
)
def test_normalize_text(raw: str, normalised: str) -> None:
    assert normalize_text(raw) == normalised


@pytest.mark.parametrize("zero_width", INVISIBLE)
@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Cafe{}\u0301", "caf\u00e9"),
        ("CAFE{}\u0301", "caf\u00e9"),
        ("A{}\u030a", "\u00e5"),
        ("\u1100{}\u1161", "\uac00"),
        ("c{}\u0327a{}\u0301", "\u00e7\u00e1"),
    ],
)
def test_zero_width_before_a_combining_mark_does_not_stop_composition(
    zero_width: str, raw: str, normalised: str
) -> None:
    text = normalize_text(raw.format(zero_width, zero_width))

    assert text == normalised
    assert text == normalize_text(raw.format("", ""))


@pytest.mark.parametrize("raw", ["\u01f0", "J\u030c", "\u0390", "\u1e96", "\u1f50"])
def test_case_folding_that_decomposes_is_composed_again(raw: str) -> None:
    text = normalize_text(raw)

    assert unicodedata.is_normalized("NFKC", text)
    assert normalize_text(text) == text


def test_zero_width_between_spaces_leaves_one_space() -> None:
    assert normalize_text("a \u200b b") == "a b"


@pytest.mark.parametrize("mark", DIRECTION_MARKS)
def test_direction_marks_are_removed_like_zero_width_characters(mark: str) -> None:
    assert normalize_text(f"Sales{mark} Manager{mark}") == "sales manager"
    assert normalize_text(f"{mark}Sales {mark} Manager") == "sales manager"
    # Removed, not turned into a space: a mark inside a word joins its halves.
    assert normalize_text(f"Sa{mark}les") == normalize_text("Sa\u200bles") == "sales"
    assert normalize_text(f" {mark} ") == ""


@settings(max_examples=500, deadline=None)
@given(UNTIDY_TEXTS)
def test_normalize_text_is_idempotent(raw: str) -> None:
    once = normalize_text(raw)

    assert normalize_text(once) == once
    assert unicodedata.is_normalized("NFKC", once)
    # A normalised text is already folded: folding it again changes nothing.
    assert normalize_text(once.casefold()) == once


@settings(max_examples=500, deadline=None)
@given(UNTIDY_TEXTS, st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]))
def test_equivalent_forms_normalise_alike(
    raw: str, form: Literal["NFC", "NFD", "NFKC", "NFKD"]
) -> None:
    assert normalize_text(unicodedata.normalize(form, raw)) == normalize_text(raw)


@settings(max_examples=500, deadline=None)
@given(UNTIDY_TEXTS, st.data())
def test_invisible_characters_anywhere_change_nothing(
    raw: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(raw)))
    inserted = data.draw(st.text(st.sampled_from(INVISIBLE), min_size=1))

    assert normalize_text(raw[:at] + inserted + raw[at:]) == normalize_text(raw)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(WORDS, min_size=1, max_size=4),
    st.lists(st.text(st.sampled_from(WHITE_SPACE), min_size=1), min_size=5),
)
def test_any_run_of_white_space_counts_as_one_space(
    words: list[str], separators: list[str]
) -> None:
    untidy = separators[-1] + words[0]
    for word, separator in zip(words[1:], separators, strict=False):
        untidy += separator + word

    assert normalize_text(untidy) == normalize_text(" ".join(words))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=20), UNTIDY_TEXTS))
def test_normalised_text_has_no_edge_space_no_space_run_and_no_zero_width(
    raw: str,
) -> None:
    text = normalize_text(raw)

    assert text == text.strip()
    assert "  " not in text
    assert not set(text) & set(INVISIBLE)
