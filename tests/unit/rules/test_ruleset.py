"""Grouping published rules by program role in dashboard order."""

from __future__ import annotations

import pytest

from rules.errors import RuleOrderError, RulesError
from rules.ruleset import Pair, RuleSet, check_positions_unique
from schemas.segments import RuleStatus
from tests.unit.factories import (
    ADD,
    MENTEE,
    MENTOR,
    REMOVE,
    cond,
    rule,
    segment,
    tag_ruleset,
    tag_segment,
)

PAUSED = RuleStatus.PAUSED
DRAFT = RuleStatus.DRAFT


@pytest.mark.parametrize(
    ("positions", "expected_order"),
    [
        ([0, 1, 2], ["r0", "r1", "r2"]),
        ([2, 1, 0], ["r2", "r1", "r0"]),
        ([10, 3, 7], ["r1", "r2", "r0"]),
        ([5, 0, 99], ["r1", "r0", "r2"]),
    ],
)
def test_rules_of_a_pair_are_in_position_order(
    positions: list[int], expected_order: list[str]
) -> None:
    rules = [
        rule(f"r{i}", ADD, "tag:a", position) for i, position in enumerate(positions)
    ]
    ruleset = tag_ruleset(rules)
    assert [r.rule_id for r in ruleset.by_pair[("p1", MENTEE)]] == expected_order


def test_rules_are_grouped_by_program_and_role() -> None:
    ruleset = tag_ruleset(
        [
            rule("a", ADD, "tag:a", 0, program_id="p1", role=MENTOR),
            rule("b", ADD, "tag:a", 1, program_id="p1", role=MENTEE),
            rule("c", REMOVE, "tag:b", 2, program_id="p2", role=MENTOR),
            rule("d", REMOVE, "tag:b", 3, program_id="p1", role=MENTOR),
        ]
    )
    grouped = {
        pair: [r.rule_id for r in found] for pair, found in ruleset.by_pair.items()
    }
    assert grouped == {
        ("p1", MENTOR): ["a", "d"],
        ("p1", MENTEE): ["b"],
        ("p2", MENTOR): ["c"],
    }
    assert ruleset.pairs == [("p1", MENTEE), ("p1", MENTOR), ("p2", MENTOR)]


def test_active_rule_carries_its_segment_definition() -> None:
    sales = segment("sales", cond("department", "eq", "Sales"))
    ruleset = RuleSet.build([rule("r0", REMOVE, "sales", 4)], [sales])
    [active] = ruleset.by_pair[("p1", MENTEE)]
    assert (active.rule_id, active.action, active.position) == ("r0", REMOVE, 4)
    assert active.pair == ("p1", MENTEE)
    assert active.definition == sales.definition


@pytest.mark.parametrize("status", [PAUSED, DRAFT])
def test_paused_and_draft_rules_are_left_out(status: RuleStatus) -> None:
    ruleset = tag_ruleset(
        [rule("on", ADD, "tag:a", 0), rule("off", REMOVE, "tag:a", 1, status=status)]
    )
    assert [r.rule_id for r in ruleset.by_pair[("p1", MENTEE)]] == ["on"]


def test_a_pair_with_only_unpublished_rules_has_no_entry() -> None:
    ruleset = tag_ruleset([rule("off", ADD, "tag:a", 0, status=PAUSED)])
    assert ruleset.by_pair == {}
    assert ruleset.pairs == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("p1", MENTEE), ("p1", MENTEE)),
        (("p1", MENTEE), ("p1", MENTOR)),
        (("p1", MENTEE), ("p2", MENTEE)),
    ],
    ids=["same-pair", "other-role", "other-program"],
)
def test_two_published_rules_at_one_position_raise_rule_order_error(
    first: Pair, second: Pair
) -> None:
    rules = [
        rule("first", ADD, "tag:a", 3, program_id=first[0], role=first[1]),
        rule("second", REMOVE, "tag:b", 3, program_id=second[0], role=second[1]),
    ]
    expected = "'first' and 'second' share dashboard position 3"
    with pytest.raises(RuleOrderError, match=expected):
        tag_ruleset(rules)


@pytest.mark.parametrize("status", [PAUSED, DRAFT])
def test_an_unpublished_rule_may_share_a_position(status: RuleStatus) -> None:
    rules = [
        rule("on", ADD, "tag:a", 3),
        rule("off", REMOVE, "tag:b", 3, status=status),
    ]
    ruleset = tag_ruleset(rules)
    assert [r.rule_id for r in ruleset.by_pair[("p1", MENTEE)]] == ["on"]
    check_positions_unique(rules)


def test_rule_order_error_is_a_rules_error() -> None:
    assert issubclass(RuleOrderError, RulesError)


def test_published_rule_with_an_unknown_segment_raises_rules_error() -> None:
    with pytest.raises(RulesError, match="'r0' uses unknown segment 'nowhere'"):
        RuleSet.build([rule("r0", ADD, "nowhere", 0)], [tag_segment("a")])


def test_unpublished_rule_with_an_unknown_segment_is_ignored() -> None:
    ruleset = RuleSet.build([rule("r0", ADD, "nowhere", 0, status=DRAFT)], [])
    assert ruleset.by_pair == {}


def test_used_segments_are_those_of_published_rules() -> None:
    ruleset = tag_ruleset(
        [rule("on", ADD, "tag:a", 0), rule("off", ADD, "tag:b", 1, status=PAUSED)]
    )
    assert set(ruleset.segments) == {"tag:a", "tag:b", "tag:c", "tag:d"}
    assert ruleset.used_segments == {"tag:a": tag_segment("a").definition}
