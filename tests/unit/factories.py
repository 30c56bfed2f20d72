"""Builders of the objects the unit tests need, with sensible defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from rules.ruleset import RuleSet
from schemas.person import PersonEvent
from schemas.segments import (
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    Role,
    Rule,
    RuleAction,
    RuleStatus,
    Segment,
    SegmentNode,
)

# The business date every evaluation in the unit tests runs on.
TODAY = date(2024, 6, 15)
# An instant before every event the tests build.
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

# What the person_event_factory fixture returns.
PersonEventFactory = Callable[..., PersonEvent]

PROGRAM = "p1"
ADD = RuleAction.ADD
REMOVE = RuleAction.REMOVE
MENTOR = Role.MENTOR
MENTEE = Role.MENTEE


def cond(attribute: str, operator: Operator | str, value: Any = None) -> Condition:
    """Return one condition."""
    return Condition(attribute=attribute, operator=Operator(operator), value=value)


def all_of(*children: SegmentNode) -> AllGroup:
    """Return an ``all`` group."""
    return AllGroup(all=list(children))


def any_of(*children: SegmentNode) -> AnyGroup:
    """Return an ``any`` group."""
    return AnyGroup(any=list(children))


def not_(child: SegmentNode) -> NotGroup:
    """Return a ``not`` group."""
    return NotGroup.model_validate({"not": child})


def segment(segment_id: str, definition: SegmentNode) -> Segment:
    """Return a saved segment."""
    return Segment(segment_id=segment_id, definition=definition)


def tag_segment(tag: str) -> Segment:
    """Return the segment ``tag:<tag>``: people whose ``tags`` list holds tag."""
    return segment(f"tag:{tag}", cond("tags", Operator.INCLUDES, tag))


def rule(
    rule_id: str,
    action: RuleAction,
    segment_id: str,
    position: int,
    *,
    program_id: str = PROGRAM,
    role: Role = MENTEE,
    status: RuleStatus = RuleStatus.PUBLISHED,
) -> Rule:
    """Return a rule, published unless told otherwise."""
    return Rule(
        rule_id=rule_id,
        action=action,
        program_id=program_id,
        role=role,
        segment_id=segment_id,
        position=position,
        status=status,
    )


def tag_rules(
    spec: Iterable[tuple[RuleAction, str]], *, role: Role = MENTEE
) -> list[Rule]:
    """Return rules ``r0``, ``r1``, ... at positions 0, 1, ... on tag segments."""
    return [
        rule(f"r{index}", action, f"tag:{tag}", index, role=role)
        for index, (action, tag) in enumerate(spec)
    ]


def tag_ruleset(rules: Iterable[Rule], tags: Iterable[str] = "abcd") -> RuleSet:
    """Return the rule set of rules over the tag segments of tags."""
    return RuleSet.build(rules, [tag_segment(tag) for tag in tags])


def person(*tags: str, **attributes: Any) -> dict[str, Any]:
    """Return person attributes holding the given tags."""
    return {"tags": list(tags), **attributes}
