"""Ordered rule evaluation: the last matching rule of a program role decides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.compiled import Predicate
from rules.evaluation import (
    Decision,
    SegmentCache,
    decide_departure,
    decide_person,
    evaluate_pair,
    evaluate_person,
)
from rules.ruleset import Pair, RuleSet
from rules.search import SearchDocument, search_document
from schemas.membership import DecidedBy, MembershipAction
from schemas.segments import Operator, Role, RuleAction, RuleStatus
from tests.unit.factories import (
    ADD,
    MENTEE,
    MENTOR,
    PROGRAM,
    REMOVE,
    TODAY,
    cond,
    person,
    rule,
    segment,
    tag_rules,
    tag_ruleset,
)

ADDED = MembershipAction.ADDED
REMOVED = MembershipAction.REMOVED
PAIR: Pair = (PROGRAM, MENTEE)


def decide(
    spec: list[tuple[RuleAction, str]], tags: str, was_member: bool
) -> list[Decision]:
    memberships = {PAIR} if was_member else set()
    ruleset = tag_ruleset(tag_rules(spec))
    return decide_person("p-1", ruleset, person(*tags), memberships, TODAY)


@pytest.mark.parametrize(
    ("spec", "tags", "was_member", "is_member", "deciding"),
    [
        # one rule
        ([(ADD, "a")], "a", False, True, "r0"),
        ([(ADD, "a")], "a", True, True, "r0"),
        ([(ADD, "a")], "", False, False, None),
        ([(ADD, "a")], "", True, True, None),
        ([(REMOVE, "a")], "a", True, False, "r0"),
        ([(REMOVE, "a")], "a", False, False, "r0"),
        ([(REMOVE, "a")], "", True, True, None),
        # overlapping add and remove: the later one on the dashboard decides
        ([(ADD, "a"), (REMOVE, "b")], "ab", False, False, "r1"),
        ([(ADD, "a"), (REMOVE, "b")], "ab", True, False, "r1"),
        ([(REMOVE, "b"), (ADD, "a")], "ab", False, True, "r1"),
        ([(REMOVE, "b"), (ADD, "a")], "ab", True, True, "r1"),
        ([(ADD, "a"), (REMOVE, "a")], "a", True, False, "r1"),
        ([(REMOVE, "a"), (ADD, "a")], "a", False, True, "r1"),
        # only matching rules count
        ([(ADD, "a"), (REMOVE, "b")], "a", False, True, "r0"),
        ([(ADD, "a"), (REMOVE, "b")], "b", True, False, "r1"),
        ([(ADD, "a"), (REMOVE, "b")], "c", True, True, None),
        ([(ADD, "a"), (REMOVE, "b")], "c", False, False, None),
        ([(REMOVE, "a"), (ADD, "b"), (REMOVE, "c")], "ab", False, True, "r1"),
        ([(ADD, "a"), (ADD, "b"), (REMOVE, "c"), (ADD, "d")], "acd", False, True, "r3"),
        ([(ADD, "a"), (ADD, "b"), (REMOVE, "c"), (ADD, "d")], "abc", True, False, "r2"),
    ],
)
def test_last_matching_rule_decides_else_state_is_kept(
    spec: list[tuple[RuleAction, str]],
    tags: str,
    was_member: bool,
    is_member: bool,
    deciding: str | None,
) -> None:
    ruleset = tag_ruleset(tag_rules(spec))
    memberships = {PAIR} if was_member else set()
    [outcome] = evaluate_person(ruleset, person(*tags), memberships, TODAY)
    assert outcome.pair == PAIR
    assert outcome.was_member is was_member
    assert outcome.is_member is is_member
    assert outcome.changed is (was_member != is_member)
    decider = outcome.deciding_rule
    assert (decider.rule_id if decider else None) == deciding
    expected_matched = [f"r{i}" for i, (_, tag) in enumerate(spec) if tag in tags]
    assert [found.rule_id for found in outcome.matched] == expected_matched


@pytest.mark.parametrize(
    ("spec", "tags", "was_member", "expected"),
    [
        ([(ADD, "a")], "a", False, [(ADDED, "r0")]),
        ([(REMOVE, "a")], "a", True, [(REMOVED, "r0")]),
        ([(ADD, "a"), (REMOVE, "b")], "ab", True, [(REMOVED, "r1")]),
        ([(REMOVE, "b"), (ADD, "a")], "ab", False, [(ADDED, "r1")]),
        ([(REMOVE, "a"), (ADD, "b"), (REMOVE, "c")], "abc", True, [(REMOVED, "r2")]),
        ([(ADD, "a"), (REMOVE, "b"), (ADD, "c")], "abc", False, [(ADDED, "r2")]),
        # flips in the middle are never emitted
        ([(ADD, "a"), (REMOVE, "b"), (ADD, "c")], "abc", True, []),
        ([(REMOVE, "a"), (ADD, "b"), (REMOVE, "c")], "abc", False, []),
    ],
)
def test_overlap_gives_exactly_one_net_decision_attributed_to_the_decider(
    spec: list[tuple[RuleAction, str]],
    tags: str,
    was_member: bool,
    expected: list[tuple[MembershipAction, str]],
) -> None:
    decisions = decide(spec, tags, was_member)
    assert [(d.action, d.decided_by) for d in decisions] == expected


def test_add_rule_adds_a_matching_person_who_is_out() -> None:
    assert decide([(ADD, "a")], "a", was_member=False) == [
        Decision(PROGRAM, MENTEE, "p-1", ADDED, "r0")
    ]


def test_add_rule_skips_a_person_already_in() -> None:
    assert decide([(ADD, "a")], "a", was_member=True) == []


def test_remove_rule_skips_a_person_not_in() -> None:
    assert decide([(REMOVE, "a")], "a", was_member=False) == []


def test_remove_rule_removes_a_manual_member() -> None:
    # In m0 although no rule ever added them: memberships are global facts.
    assert decide([(ADD, "b"), (REMOVE, "a")], "a", was_member=True) == [
        Decision(PROGRAM, MENTEE, "p-1", REMOVED, "r1")
    ]


@pytest.mark.parametrize("was_member", [True, False])
def test_person_matching_no_rule_keeps_their_membership(was_member: bool) -> None:
    assert decide([(ADD, "a"), (REMOVE, "b")], "cd", was_member) == []


def test_roles_are_independent() -> None:
    rules = [
        rule("mentors", ADD, "tag:a", 0, role=MENTOR),
        rule("no-mentees", REMOVE, "tag:a", 1, role=MENTEE),
    ]
    ruleset = tag_ruleset(rules)
    decisions = decide_person("p-1", ruleset, person("a"), {(PROGRAM, MENTEE)}, TODAY)
    assert sorted(decisions, key=lambda d: d.role) == [
        Decision(PROGRAM, MENTEE, "p-1", REMOVED, "no-mentees"),
        Decision(PROGRAM, MENTOR, "p-1", ADDED, "mentors"),
    ]


def test_a_remove_rule_of_one_role_leaves_the_other_role_alone() -> None:
    ruleset = tag_ruleset([rule("r0", REMOVE, "tag:a", 0, role=MENTOR)])
    decisions = decide_person("p-1", ruleset, person("a"), {PAIR}, TODAY)
    assert decisions == []


def test_programs_are_independent() -> None:
    rules = [
        rule("in-p1", ADD, "tag:a", 0, program_id="p1"),
        rule("out-p2", REMOVE, "tag:a", 1, program_id="p2"),
    ]
    decisions = decide_person(
        "p-1", tag_ruleset(rules), person("a"), {("p2", MENTEE)}, TODAY
    )
    assert decisions == [
        Decision("p1", MENTEE, "p-1", ADDED, "in-p1"),
        Decision("p2", MENTEE, "p-1", REMOVED, "out-p2"),
    ]


@pytest.mark.parametrize("status", [RuleStatus.PAUSED, RuleStatus.DRAFT])
def test_paused_and_draft_rules_do_not_run(status: RuleStatus) -> None:
    rules = [
        rule("add", ADD, "tag:a", 0),
        rule("remove", REMOVE, "tag:a", 1, status=status),
    ]
    decisions = decide_person("p-1", tag_ruleset(rules), person("a"), set(), TODAY)
    assert decisions == [Decision(PROGRAM, MENTEE, "p-1", ADDED, "add")]


def test_dashboard_position_not_input_order_decides() -> None:
    rules = [
        rule("late-remove", REMOVE, "tag:a", 9),
        rule("early-add", ADD, "tag:a", 2),
    ]
    decisions = decide_person("p-1", tag_ruleset(rules), person("a"), {PAIR}, TODAY)
    assert decisions == [Decision(PROGRAM, MENTEE, "p-1", REMOVED, "late-remove")]


def test_time_relative_segment_depends_on_today() -> None:
    hired = TODAY - timedelta(days=10)
    recent = segment("recent", cond("hire_date", Operator.WITHIN_LAST, 30))
    ruleset = RuleSet.build([rule("buddies", ADD, "recent", 0)], [recent])
    attributes = {"hire_date": hired.isoformat()}
    on_day_30 = hired + timedelta(days=30)
    assert decide_person("p-1", ruleset, attributes, set(), on_day_30)
    assert (
        decide_person("p-1", ruleset, attributes, set(), on_day_30 + timedelta(1)) == []
    )


def test_evaluate_person_reports_only_the_pairs_asked_for() -> None:
    ruleset = tag_ruleset([rule("r0", ADD, "tag:a", 0, role=MENTOR)])
    other: Pair = ("p9", MENTEE)
    outcomes = evaluate_person(
        ruleset, person("a"), {other}, TODAY, pairs=[other, (PROGRAM, MENTOR)]
    )
    assert [(o.pair, o.was_member, o.is_member) for o in outcomes] == [
        ((PROGRAM, MENTOR), False, True),
        (other, True, True),
    ]
    assert outcomes[1].deciding_rule is None


def test_evaluate_person_covers_every_pair_with_rules_sorted() -> None:
    rules = [
        rule("r0", ADD, "tag:a", 0, program_id="zeta", role=MENTOR),
        rule("r1", ADD, "tag:a", 1, program_id="alpha", role=MENTOR),
        rule("r2", ADD, "tag:a", 2, program_id="alpha", role=MENTEE),
    ]
    outcomes = evaluate_person(tag_ruleset(rules), person(), set(), TODAY)
    assert [o.pair for o in outcomes] == [
        ("alpha", MENTEE),
        ("alpha", MENTOR),
        ("zeta", MENTOR),
    ]


def test_segment_cache_evaluates_each_segment_once_per_person() -> None:
    calls: list[str] = []

    def counted(segment_id: str, department: str) -> Predicate:
        def in_segment(document: SearchDocument, today: int) -> bool:
            calls.append(segment_id)
            return bool(document["department"]["t"] == department)

        return in_segment

    predicates = {"sales": counted("sales", "sales"), "it": counted("it", "it")}
    document = search_document({"department": "Sales"})
    cache = SegmentCache(predicates, document, TODAY)
    assert [cache("sales"), cache("it"), cache("sales"), cache("it")] == [
        True,
        False,
        True,
        False,
    ]
    assert calls == ["sales", "it"]


def test_evaluate_pair_uses_the_given_membership_and_segment_test() -> None:
    rules = tag_ruleset(tag_rules([(ADD, "a"), (REMOVE, "b")])).by_pair[PAIR]
    outcome = evaluate_pair(PAIR, rules, lambda segment_id: segment_id == "tag:b", True)
    assert (outcome.was_member, outcome.is_member, outcome.changed) == (
        True,
        False,
        True,
    )
    assert outcome.deciding_rule is rules[1]
    assert outcome.matched == (rules[1],)


def test_decide_departure_removes_every_membership_with_the_reason() -> None:
    memberships = {("p2", MENTOR), ("p1", MENTEE), ("p1", MENTOR)}
    reason = DecidedBy.PERSON_TERMINATED.value
    assert decide_departure("p-1", memberships, reason) == [
        Decision("p1", MENTEE, "p-1", REMOVED, "person_terminated"),
        Decision("p1", MENTOR, "p-1", REMOVED, "person_terminated"),
        Decision("p2", MENTOR, "p-1", REMOVED, "person_terminated"),
    ]


def test_decide_departure_of_a_person_with_no_membership_decides_nothing() -> None:
    assert decide_departure("p-1", set(), DecidedBy.PERSON_DELETED.value) == []


# --- properties -----------------------------------------------------------

TAGS = "abcd"
rule_specs = st.lists(
    st.tuples(st.sampled_from([ADD, REMOVE]), st.sampled_from(TAGS)), max_size=8
)
tag_sets = st.sets(st.sampled_from(TAGS)).map(lambda tags: "".join(sorted(tags)))


def oracle(
    spec: list[tuple[RuleAction, str]], tags: str, was_member: bool
) -> tuple[bool, str | None]:
    """The contract, stated independently: last matching rule, else m0."""
    matching = [index for index, (_, tag) in enumerate(spec) if tag in tags]
    if not matching:
        return was_member, None
    last = matching[-1]
    return spec[last][0] == "add", f"r{last}"


@settings(max_examples=200, deadline=None)
@given(spec=rule_specs, tags=tag_sets, was_member=st.booleans())
def test_evaluate_pair_equals_the_last_matching_rule_else_m0(
    spec: list[tuple[RuleAction, str]], tags: str, was_member: bool
) -> None:
    rules = tag_ruleset(tag_rules(spec)).by_pair.get(PAIR, ())
    outcome = evaluate_pair(
        PAIR, rules, lambda segment_id: segment_id[-1] in tags, was_member
    )
    expected_member, expected_decider = oracle(spec, tags, was_member)
    assert outcome.is_member is expected_member
    decider = outcome.deciding_rule
    assert (decider.rule_id if decider else None) == expected_decider


@settings(max_examples=200, deadline=None)
@given(spec=rule_specs, tags=tag_sets, was_member=st.booleans())
def test_decide_person_emits_a_change_only_when_the_oracle_state_differs(
    spec: list[tuple[RuleAction, str]], tags: str, was_member: bool
) -> None:
    decisions = decide(spec, tags, was_member)
    expected_member, expected_decider = oracle(spec, tags, was_member)
    if expected_member == was_member:
        assert decisions == []
    else:
        action = ADDED if expected_member else REMOVED
        assert decisions == [
            Decision(PROGRAM, MENTEE, "p-1", action, str(expected_decider))
        ]


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2"]),
            st.sampled_from(list(Role)),
            st.sampled_from([ADD, REMOVE]),
            st.sampled_from(TAGS),
        ),
        max_size=10,
    ),
    tags=tag_sets,
    memberships=st.sets(
        st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(list(Role)))
    ),
)
def test_applying_the_decisions_then_deciding_again_changes_nothing(
    specs: list[tuple[str, Role, RuleAction, str]],
    tags: str,
    memberships: set[Pair],
) -> None:
    rules = [
        rule(f"r{i}", action, f"tag:{tag}", i, program_id=program, role=role)
        for i, (program, role, action, tag) in enumerate(specs)
    ]
    ruleset = tag_ruleset(rules)
    attributes = person(*tags)
    state = set(memberships)
    for decision in decide_person("p-1", ruleset, attributes, state, TODAY):
        pair = (decision.program_id, decision.role)
        if decision.action is ADDED:
            assert pair not in state
            state.add(pair)
        else:
            assert pair in state
            state.remove(pair)
    assert decide_person("p-1", ruleset, attributes, state, TODAY) == []


DEPARTMENTS = ["d0", "d1", "d2", "d3", "d4", "d5"]


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    actions=st.lists(st.sampled_from([ADD, REMOVE]), min_size=1, max_size=6),
    department=st.sampled_from([*DEPARTMENTS, "elsewhere"]),
    was_member=st.booleans(),
)
def test_reordering_rules_with_disjoint_segments_changes_no_outcome(
    data: st.DataObject,
    actions: list[RuleAction],
    department: str,
    was_member: bool,
) -> None:
    # Rule i uses "department eq d<i>": no person is in two of these segments.
    segments = [segment(d, cond("department", "eq", d)) for d in DEPARTMENTS]
    order = list(range(len(actions)))
    permuted = data.draw(st.permutations(order))

    def outcome(positions: list[int]) -> list[Decision]:
        rules = [
            rule(f"r{i}", action, DEPARTMENTS[i], positions[i])
            for i, action in enumerate(actions)
        ]
        ruleset = RuleSet.build(rules, segments)
        memberships = {PAIR} if was_member else set()
        attributes = {"department": department.upper()}
        return decide_person("p-1", ruleset, attributes, memberships, TODAY)

    assert outcome(permuted) == outcome(order)
