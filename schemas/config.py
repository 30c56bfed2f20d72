"""Configuration events on ``mentorflow.config``, all under one fixed key."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import EventBase
from schemas.person import PersonId
from schemas.segments import Program, Role, Rule, Segment

# Every config event carries this key so that one worker applies them in order.
CONFIG_KEY = "config"

ObjectId = Annotated[str, Field(min_length=1, max_length=200)]


class ProgramUpserted(EventBase):
    """A program is created or renamed."""

    type: Literal["program.upserted"] = "program.upserted"
    program: Program


class ProgramDeleted(EventBase):
    """A program is deleted, and with it every membership in it."""

    type: Literal["program.deleted"] = "program.deleted"
    program_id: ObjectId


class SegmentUpserted(EventBase):
    """A segment is created or its definition edited."""

    type: Literal["segment.upserted"] = "segment.upserted"
    segment: Segment


class SegmentDeleted(EventBase):
    """A segment no rule uses any more is deleted."""

    type: Literal["segment.deleted"] = "segment.deleted"
    segment_id: ObjectId


class RuleUpserted(EventBase):
    """A rule is created or edited, with its status and dashboard position."""

    type: Literal["rule.upserted"] = "rule.upserted"
    rule: Rule


class RuleDeleted(EventBase):
    """A rule is deleted; the memberships it decided stay."""

    type: Literal["rule.deleted"] = "rule.deleted"
    rule_id: ObjectId


class RulesReordered(EventBase):
    """The dashboard order: the listed rules take positions 0, 1, 2, ..."""

    type: Literal["rules.reordered"] = "rules.reordered"
    rule_ids: list[ObjectId] = Field(min_length=1)


class RulePublished(EventBase):
    """A rule starts running."""

    type: Literal["rule.published"] = "rule.published"
    rule_id: ObjectId


class RulePaused(EventBase):
    """A rule stops running; the memberships it decided stay."""

    type: Literal["rule.paused"] = "rule.paused"
    rule_id: ObjectId


class ConfigApplied(EventBase):
    """Programs, segments and rules published together and applied as one.

    Everything in it is stored first, then every program role it touches is
    re-evaluated once, so overlapping rules published together never flap.
    """

    type: Literal["config.applied"] = "config.applied"
    programs: tuple[Program, ...] = ()
    segments: tuple[Segment, ...] = ()
    rules: tuple[Rule, ...] = ()


class ConfigConfirmed(EventBase):
    """An admin confirms a configuration change held for its blast radius."""

    type: Literal["config.confirmed"] = "config.confirmed"
    held_event_id: ObjectId


class ManualMembershipAdded(EventBase):
    """An admin adds a person to a program role by hand."""

    type: Literal["membership.manual_added"] = "membership.manual_added"
    program_id: ObjectId
    role: Role
    person_id: PersonId


class ManualMembershipRemoved(EventBase):
    """An admin removes a person from a program role by hand."""

    type: Literal["membership.manual_removed"] = "membership.manual_removed"
    program_id: ObjectId
    role: Role
    person_id: PersonId


ConfigEvent = Annotated[
    ProgramUpserted
    | ProgramDeleted
    | SegmentUpserted
    | SegmentDeleted
    | RuleUpserted
    | RuleDeleted
    | RulesReordered
    | RulePublished
    | RulePaused
    | ConfigApplied
    | ConfigConfirmed
    | ManualMembershipAdded
    | ManualMembershipRemoved,
    Field(discriminator="type"),
]

config_event_adapter: TypeAdapter[ConfigEvent] = TypeAdapter(ConfigEvent)
