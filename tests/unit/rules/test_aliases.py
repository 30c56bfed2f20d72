"""Declared aliases of a segment, and the search copy of attributes."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from rules.aliases import Aliases
from rules.evaluation import evaluate_person
from rules.ruleset import RuleSet
from rules.search import search_document
from rules.segments import matches
from schemas.segments import Segment
from tests.unit.factories import ADD, MENTEE, PROGRAM, TODAY, all_of, cond, rule

SENIOR = {"Sr.": "Senior", "VP Eng": "Vice President Engineering"}


@pytest.mark.parametrize(
    ("aliases", "text", "expected"),
    [
        (SENIOR, "sr. engineer", "senior engineer"),
        (SENIOR, "engineer sr.", "engineer senior"),
        (SENIOR, "sr.engineer", "sr.engineer"),  # not a whole word
        (SENIOR, "mr. sr.", "mr. senior"),
        (SENIOR, "vp eng", "vice president engineering"),
        (SENIOR, "vp engineering", "vp engineering"),
        # the longest variant wins, and a canonical is not replaced again
        ({"a": "b", "a b": "c", "b": "d"}, "a b a", "c b"),
        ({"x": "x y", "y": "z"}, "x", "x y"),
        ({"Sr.": "Senior"}, "", ""),
        ({}, "sr. engineer", "sr. engineer"),
    ],
)
def test_whole_word_variants_become_their_canonical(
    aliases: dict[str, str], text: str, expected: str
) -> None:
    assert Aliases.build(aliases).apply(text) == expected


def test_variants_and_canonicals_are_normalised_like_compared_text() -> None:
    table = Aliases.build({"  SR.\u200b ": "SENIOR", "\u200b": "ignored"})
    assert table.variants == ["sr."]
    assert table.canonicals == ["senior"]


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("eq", "Senior Engineer", "Sr. Engineer", True),
        ("eq", "Sr. Engineer", "SENIOR engineer", True),
        ("ne", "Senior Engineer", "Sr. Engineer", False),
        ("in", ["Senior Engineer", "Staff"], "sr.  engineer", True),
        ("starts_with", "senior", "Sr. Engineer", True),
        ("contains", "sr. eng", "Senior Engineer", True),
        ("includes", "Senior", ["Junior", "Sr."], True),
        ("excludes", "Senior", ["Junior", "Sr."], False),
        # only declared aliases: "Snr" is never guessed to mean Senior
        ("eq", "Senior Engineer", "Snr Engineer", False),
    ],
)
def test_aliases_apply_to_both_sides_of_text_conditions(
    operator: str, value: Any, actual: Any, expected: bool
) -> None:
    segment = cond("title", operator, value)
    assert matches(segment, {"title": actual}, TODAY, SENIOR) is expected


def test_without_aliases_a_variant_is_just_other_text() -> None:
    assert not matches(cond("title", "eq", "Senior"), {"title": "Sr."}, TODAY)


def test_rule_set_carries_the_aliases_of_each_segment() -> None:
    seniors = Segment(
        segment_id="seniors",
        definition=all_of(cond("title", "eq", "Senior")),
        aliases={"Sr.": "Senior"},
    )
    ruleset = RuleSet.build([rule("r0", ADD, "seniors", 0)], [seniors])
    assert ruleset.aliases_of("seniors").variants == ["sr."]
    assert ruleset.aliases_of("unknown").entries == ()
    [active] = ruleset.by_pair[(PROGRAM, MENTEE)]
    assert active.aliases == ruleset.aliases_of("seniors")
    [outcome] = evaluate_person(ruleset, {"title": "sr."}, set(), TODAY)
    assert outcome.is_member


@pytest.mark.parametrize("aliases", [{"": "Senior"}, {"Sr.": " "}, {" ": "x"}])
def test_segment_rejects_blank_alias_variants_and_canonicals(
    aliases: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match="alias"):
        Segment(segment_id="s", definition=all_of(), aliases=aliases)


def test_search_document_holds_what_each_operator_reads() -> None:
    document = search_document(
        {
            "title": " Senior\u00a0ENGINEER ",
            "salary": "9000.0",
            "level": 3,
            "remote": True,
            "hire_date": "2024-05-01T10:00:00Z",
            "skills": ["Go", 7, None, ["nested"]],
            "extra": {"a": 1},
            "cleared": None,
        }
    )
    assert document == {
        "title": {"t": "senior engineer", "i": ["senior engineer"]},
        "salary": {"t": "9000.0", "n": 9000.0, "i": ["9000.0"]},
        "level": {"t": "3", "n": 3.0, "i": ["3"]},
        "remote": {"t": "true", "i": ["true"]},
        "hire_date": {
            "t": "2024-05-01t10:00:00z",
            "d": date(2024, 5, 1).toordinal(),
            "i": ["2024-05-01t10:00:00z"],
        },
        "skills": {"i": ["go", "7"]},
        "extra": {"i": []},
    }


def test_search_document_never_raises_on_numbers_past_the_float_range() -> None:
    assert search_document({"huge": 10**400})["huge"] == {
        "t": str(10**400),
        "i": [str(10**400)],
    }
