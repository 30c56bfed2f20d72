"""Near misses: values that match only through an alias, or nearly match."""

from __future__ import annotations

import pytest

from rules.near_misses import NearMiss, edit_distance, find_near_misses
from schemas.segments import Segment
from tests.unit.factories import all_of, any_of, cond, not_


def segment(definition, aliases=None) -> Segment:
    return Segment(segment_id="s", definition=definition, aliases=aliases or {})


@pytest.mark.parametrize(
    ("first", "second", "distance"),
    [
        ("", "", 0),
        ("abc", "abc", 0),
        ("abc", "abd", 1),
        ("abc", "ab", 1),
        ("kitten", "sitting", 3),
        ("", "abc", 3),
    ],
)
def test_edit_distance(first, second, distance):
    assert edit_distance(first, second) == distance
    assert edit_distance(second, first) == distance


def test_values_matching_only_through_an_alias_are_reported_with_counts():
    rule = segment(all_of(cond("title", "starts_with", "Senior")), {"Sr.": "Senior"})
    people = [{"title": "Sr. Engineer"}] * 3 + [{"title": "Senior Engineer"}]

    assert find_near_misses(rule, people) == {
        NearMiss("title", "starts_with", "Senior", "Sr. Engineer", "alias", 0): 3
    }


def test_values_a_small_edit_away_are_reported_and_far_ones_are_not():
    rule = segment(any_of(cond("department", "in", ["Engineering", "Sales"])))
    people = [
        {"department": "Enginering"},
        {"department": "Enginering"},
        {"department": "engineering "},
        {"department": "Marketing"},
        {"department": "Sale"},
        {"department": "IS"},
    ]

    assert find_near_misses(rule, people) == {
        NearMiss("department", "in", "Engineering", "Enginering", "edit", 1): 2,
        NearMiss("department", "in", "Sales", "Sale", "edit", 1): 1,
    }


def test_short_words_allow_no_edit():
    rule = segment(all_of(cond("department", "eq", "IT")))

    assert find_near_misses(rule, [{"department": "IS"}]) == {}


def test_negated_and_nested_conditions_are_inspected_too():
    rule = segment(all_of(not_(cond("status", "eq", "contractor"))))

    found = find_near_misses(rule, [{"status": "contracter"}, {"status": 3}, {}])

    assert list(found) == [
        NearMiss("status", "eq", "contractor", "contracter", "edit", 1)
    ]
