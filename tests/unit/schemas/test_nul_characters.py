"""No event carries a NUL character, which PostgreSQL cannot store in text or jsonb."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from schemas.common import STORABLE_TEXT, FrozenModel, holds_no_unstorable_value
from schemas.config import config_event_adapter
from schemas.membership import DeadLetter
from schemas.person import person_event_adapter
from schemas.segments import Condition, Operator, Program

ENVELOPE = {
    "schema_version": 1,
    "event_id": "e-1",
    "occurred_at": "2024-06-01T12:00:00Z",
}
PERSON = {**ENVELOPE, "person_id": "p-1"}
NUL = "\u0000"


def segment(definition: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        **ENVELOPE,
        "type": "segment.upserted",
        "segment": {"segment_id": "s1", "definition": definition, **fields},
    }


def condition(value: Any) -> dict[str, Any]:
    return {"attribute": "title", "operator": "eq", "value": value}


RULE = {
    "rule_id": "r1",
    "action": "add",
    "program_id": "p1",
    "role": "mentor",
    "segment_id": "s1",
    "position": 0,
}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            {**PERSON, "type": "person.hired", "attributes": {"title": f"a{NUL}b"}},
            "attributes.title",
        ),
        (
            {**PERSON, "type": "person.snapshot", "attributes": {f"ti{NUL}tle": "x"}},
            "attributes key 'ti\\x00tle'",
        ),
        (
            {**PERSON, "type": "person.updated", "changes": {"skills": ["go", NUL]}},
            "changes.skills.1",
        ),
        (
            {
                **PERSON,
                "type": "person.updated",
                "changes": {"custom": {"cost_center": [{"code": f"{NUL}7"}]}},
            },
            "changes.custom.cost_center.0.code",
        ),
        ({**PERSON, "type": "person.deleted", "person_id": f"p{NUL}"}, "person_id"),
        ({**PERSON, "type": "person.deleted", "event_id": f"e{NUL}"}, "event_id"),
    ],
    ids=[
        "attribute-value",
        "attribute-name",
        "list-item",
        "deeply-nested-value",
        "person-id",
        "event-id",
    ],
)
def test_a_person_event_with_a_nul_character_is_refused_naming_the_field(
    raw: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        person_event_adapter.validate_json(json.dumps(raw))

    [error] = caught.value.errors(include_url=False)
    assert error["type"] == "nul_character"
    assert error["msg"].startswith(f"{field} contains a NUL character (\\u0000)")
    # The message is logged and stored itself: it must not hold the NUL.
    assert NUL not in error["msg"]


@pytest.mark.parametrize(
    ("raw", "loc", "field"),
    [
        (
            {**ENVELOPE, "type": "program.upserted", "program": {"program_id": NUL}},
            ("program.upserted", "program"),
            "program_id",
        ),
        (
            {**ENVELOPE, "type": "rules.reordered", "rule_ids": ["r1", f"r{NUL}"]},
            ("rules.reordered",),
            "rule_ids.1",
        ),
        (
            {**ENVELOPE, "type": "rule.upserted", "rule": {**RULE, "name": NUL}},
            ("rule.upserted", "rule"),
            "name",
        ),
        (
            segment({"all": [condition(f"x{NUL}")]}),
            ("segment.upserted", "segment", "definition", "all", "all", 0, "condition"),
            "value",
        ),
        (
            segment(
                {"all": [{"attribute": "skills", "operator": "in", "value": [NUL]}]}
            ),
            ("segment.upserted", "segment", "definition", "all", "all", 0, "condition"),
            "value.0",
        ),
        (
            segment({"not": condition("x")}, aliases={"Sr.": f"Senior{NUL}"}),
            ("segment.upserted", "segment"),
            "aliases.Sr.",
        ),
        (
            {
                **ENVELOPE,
                "type": "config.applied",
                "programs": [{"program_id": "p1", "name": f"Guild{NUL}"}],
            },
            ("config.applied", "programs", 0),
            "name",
        ),
        (
            {
                **ENVELOPE,
                "type": "membership.manual_added",
                "program_id": "p1",
                "role": "mentee",
                "person_id": f"p{NUL}1",
            },
            ("membership.manual_added",),
            "person_id",
        ),
    ],
    ids=[
        "program-id",
        "reordered-rule-id",
        "rule-name",
        "condition-value",
        "condition-list-value",
        "alias",
        "applied-program-name",
        "manual-person-id",
    ],
)
def test_a_config_event_with_a_nul_character_is_refused_naming_the_field(
    raw: dict[str, Any], loc: tuple[str | int, ...], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        config_event_adapter.validate_json(json.dumps(raw))

    [error] = caught.value.errors(include_url=False)
    assert error["type"] == "nul_character"
    assert error["loc"] == loc
    assert error["msg"].startswith(f"{field} contains a NUL character")


class Aliased(FrozenModel):
    """A model whose field the JSON spells differently."""

    from_: list[str] = Field(alias="from")


def test_a_field_read_under_an_alias_is_named_by_its_alias() -> None:
    with pytest.raises(ValidationError, match=r"^.*\n  from\.1 contains a NUL"):
        Aliased.model_validate({"from": ["a", NUL]})


@pytest.mark.parametrize(
    "text", ["tab\there", "line\nbreak", "\u0001", "caf\u00e9", "\u200b", "\\u0000"]
)
def test_other_control_and_unicode_characters_are_kept(text: str) -> None:
    event = person_event_adapter.validate_python(
        {**PERSON, "type": "person.hired", "attributes": {text: text}}
    )
    assert event.attributes == {text: text}  # type: ignore[union-attr]


def test_models_built_in_python_refuse_a_nul_too() -> None:
    with pytest.raises(ValidationError, match="name contains a NUL character"):
        Program(program_id="p1", name=f"Guild{NUL}")
    with pytest.raises(ValidationError, match="value contains a NUL character"):
        Condition(attribute="title", operator=Operator.EQ, value=NUL)


def test_a_dead_letter_carries_a_payload_holding_a_nul_as_base64() -> None:
    raw = '{"type": "person.hired"}\u0000'

    letter = DeadLetter(
        event_id="d-1",
        occurred_at="2024-06-01T12:00:00Z",  # type: ignore[arg-type]
        error="invalid event: record: Invalid JSON: trailing characters",
        source_topic="hr.person-events",
        source_partition=0,
        source_offset=7,
        payload=raw,
    )

    assert letter.payload is None
    assert letter.payload_base64 is not None
    assert base64.b64decode(letter.payload_base64) == raw.encode()


def test_a_dead_letter_keeps_a_payload_without_a_nul_as_text() -> None:
    letter = DeadLetter(
        event_id="d-1",
        occurred_at="2024-06-01T12:00:00Z",  # type: ignore[arg-type]
        error="invalid event",
        source_topic="hr.person-events",
        source_partition=0,
        source_offset=7,
        payload='{"title": "\\u0000"}',
    )

    assert (letter.payload, letter.payload_base64) == ('{"title": "\\u0000"}', None)


# JSON values that may or may not be storable, as texts decoding them.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


def unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return any(map(unstorable, value))
    if isinstance(value, dict):
        return any(NUL in key or unstorable(item) for key, item in value.items())
    return False


@settings(max_examples=300)
@given(attributes=st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4))
def test_a_text_said_to_hold_no_unstorable_value_decodes_to_none(
    attributes: dict[str, Any],
) -> None:
    raw = json.dumps({**PERSON, "type": "person.hired", "attributes": attributes})

    if holds_no_unstorable_value(raw.encode()):
        assert not unstorable(json.loads(raw))
        checked = person_event_adapter.validate_json(raw)
        trusted = person_event_adapter.validate_json(raw, context={STORABLE_TEXT: True})
        assert trusted == checked
    elif unstorable(attributes):
        with pytest.raises(ValidationError):
            person_event_adapter.validate_json(raw)
