"""JSON Schema export of every event."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator, ValidationError
from pydantic import BaseModel

from schemas.common import EventBase
from schemas.config import (
    ConfigApplied,
    ManualMembershipAdded,
    RulePublished,
    RulesReordered,
)
from schemas.export import export_json_schemas
from schemas.membership import (
    DeadLetter,
    DecidedBy,
    MembershipAction,
    MembershipEvent,
)
from schemas.person import (
    PersonDeleted,
    PersonHired,
    PersonSnapshot,
    PersonTerminated,
    PersonUpdated,
)
from schemas.segments import (
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    Program,
    Role,
    Rule,
    RuleAction,
    RuleStatus,
    Segment,
)

AT = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {"event_id": "e-1", "occurred_at": AT}


def test_export_writes_four_valid_json_schema_files(tmp_path: Path) -> None:
    directory = tmp_path / "out" / "schemas"
    written = export_json_schemas(directory)
    assert sorted(path.name for path in written) == [
        "config-event.schema.json",
        "dead-letter.schema.json",
        "membership-event.schema.json",
        "person-event.schema.json",
    ]
    assert sorted(directory.iterdir()) == sorted(written)
    for path in written:
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == path.name


def test_exported_unions_name_every_event_type(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    person = json.loads((tmp_path / "person-event.schema.json").read_text())
    assert set(person["discriminator"]["mapping"]) == {
        "person.hired",
        "person.snapshot",
        "person.updated",
        "person.terminated",
        "person.deleted",
    }
    config = json.loads((tmp_path / "config-event.schema.json").read_text())
    assert set(config["discriminator"]["mapping"]) == {
        "program.upserted",
        "program.deleted",
        "segment.upserted",
        "segment.deleted",
        "rule.upserted",
        "rule.deleted",
        "rules.reordered",
        "rule.published",
        "rule.paused",
        "config.applied",
        "config.confirmed",
        "membership.manual_added",
        "membership.manual_removed",
    }


def test_exported_segment_schema_uses_the_not_alias(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    config = json.loads((tmp_path / "config-event.schema.json").read_text())
    not_group = config["$defs"]["NotGroup"]
    assert not_group["required"] == ["not"]


def test_export_is_deterministic(tmp_path: Path) -> None:
    first = [path.read_text() for path in export_json_schemas(tmp_path / "a")]
    second = [path.read_text() for path in export_json_schemas(tmp_path / "b")]
    assert first == second


def exported(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Export the schemas and read them back, by file name without suffix."""
    return {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text())
        for path in export_json_schemas(tmp_path)
    }


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    # Formats (date, date-time) are only annotations unless a checker is given.
    return Draft202012Validator(
        schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def test_each_exported_file_is_valid_against_its_declared_meta_schema(
    tmp_path: Path,
) -> None:
    for name, schema in exported(tmp_path).items():
        assert jsonschema.validators.validator_for(schema) is Draft202012Validator
        Draft202012Validator.check_schema(schema)
        assert validator(schema).is_valid({}) is False, name


def a_segment() -> Segment:
    return Segment(
        segment_id="senior-sales",
        name="Senior sales",
        definition=AllGroup(
            all=[
                Condition(attribute="department", operator=Operator.EQ, value="Sales"),
                AnyGroup(
                    any=[
                        Condition(
                            attribute="hire_date",
                            operator=Operator.MORE_THAN_AGO,
                            value=1825,
                        ),
                        Condition(
                            attribute="grade",
                            operator=Operator.IN,
                            value=["senior", "principal"],
                        ),
                    ]
                ),
                NotGroup.model_validate(
                    {"not": Condition(attribute="skills", operator=Operator.EXISTS)}
                ),
            ]
        ),
        aliases={"Sr.": "Senior"},
    )


TERMINATION = PersonTerminated(
    **ENVELOPE, person_id="p-1", termination_date=date(2024, 6, 30)
)
MEMBERSHIP = MembershipEvent.decided(
    MembershipAction.ADDED, "guild", Role.MENTOR, "p-1", "add-senior-sales", "e-1", AT
)
LETTER = DeadLetter(
    **ENVELOPE,
    error="invalid JSON",
    source_topic="hr.person-events",
    source_partition=2,
    source_offset=41,
    key="p-1",
    payload="{not json",
)
# One event of each shape a producer or a consumer meets, by exported schema.
SAMPLES: list[tuple[str, EventBase]] = [
    (
        "person-event",
        PersonHired(
            **ENVELOPE,
            person_id="p-1",
            attributes={
                "title": "Engineer",
                "hire_date": "2024-06-03",
                "salary": 9000,
                "commission_pct": 0.2,
                "skills": ["go", "sql"],
                "cost_center": {"code": "CC-1"},
                "remote": True,
                "manager_id": None,
            },
        ),
    ),
    ("person-event", PersonSnapshot(**ENVELOPE, person_id="p-1", attributes={})),
    (
        "person-event",
        PersonUpdated(
            **ENVELOPE,
            person_id="p-1",
            effective_at=date(2024, 7, 1),
            changes={"title": "Lead", "manager_id": None},
        ),
    ),
    ("person-event", TERMINATION),
    ("person-event", PersonDeleted(**ENVELOPE, person_id="p-1")),
    (
        "config-event",
        ConfigApplied(
            **ENVELOPE,
            programs=(Program(program_id="guild", name="Guild"),),
            segments=(a_segment(),),
            rules=(
                Rule(
                    rule_id="add-senior-sales",
                    action=RuleAction.ADD,
                    program_id="guild",
                    role=Role.MENTOR,
                    segment_id="senior-sales",
                    position=0,
                    status=RuleStatus.PUBLISHED,
                ),
            ),
        ),
    ),
    ("config-event", RulesReordered(**ENVELOPE, rule_ids=["b", "a"])),
    ("config-event", RulePublished(**ENVELOPE, rule_id="add-senior-sales")),
    (
        "config-event",
        ManualMembershipAdded(
            **ENVELOPE, program_id="guild", role=Role.MENTEE, person_id="p-1"
        ),
    ),
    ("membership-event", MEMBERSHIP),
    (
        "membership-event",
        MembershipEvent.decided(
            MembershipAction.REMOVED,
            "guild",
            Role.MENTEE,
            "p-1",
            DecidedBy.PROGRAM_DELETED.value,
            "e-2",
            AT,
        ),
    ),
    ("dead-letter", LETTER),
    (
        "dead-letter",
        DeadLetter(
            **ENVELOPE,
            error="not UTF-8",
            source_topic="hr.person-events",
            source_partition=0,
            source_offset=0,
            payload_base64="/w==",
        ),
    ),
]


@pytest.mark.parametrize(
    ("schema_name", "event"),
    SAMPLES,
    ids=[f"{type(event).__name__}-{rank}" for rank, (_, event) in enumerate(SAMPLES)],
)
def test_real_events_validate_against_the_exported_schemas(
    tmp_path: Path, schema_name: str, event: BaseModel
) -> None:
    schema = exported(tmp_path)[schema_name]
    # Dumped as workers.publishing puts it on the wire (by alias: a not-group is
    # "not", never the field name "not_"), through JSON as a consumer reads it.
    instance = json.loads(json.dumps(event.model_dump(mode="json", by_alias=True)))

    errors = [error.message for error in validator(schema).iter_errors(instance)]

    assert errors == []


def broken(event: BaseModel, **changes: Any) -> dict[str, Any]:
    """Return an event's JSON with fields replaced, or removed when None."""
    instance: dict[str, Any] = event.model_dump(mode="json", by_alias=True)
    for name, value in changes.items():
        if value is None:
            del instance[name]
        else:
            instance[name] = value
    return instance


SNAPSHOT = PersonSnapshot(**ENVELOPE, person_id="p-1", attributes={"title": "x"})


def reasons(errors: Iterable[ValidationError]) -> Iterator[str]:
    """Yield the messages of the innermost errors: a union reports its branches'."""
    for error in errors:
        if error.context:
            yield from reasons(error.context)
        else:
            yield error.message


@pytest.mark.parametrize(
    ("schema_name", "instance", "reason"),
    [
        pytest.param(
            "person-event",
            broken(SNAPSHOT, event_id=None),
            "'event_id' is a required property",
            id="no-event-id",
        ),
        pytest.param(
            "person-event",
            broken(SNAPSHOT, person_id=42),
            "42 is not of type 'string'",
            id="person-id-a-number",
        ),
        pytest.param(
            "person-event",
            broken(SNAPSHOT, type="person.fired"),
            "'person.snapshot' was expected",
            id="unknown-person-event-type",
        ),
        pytest.param(
            "person-event",
            broken(SNAPSHOT, occurred_at=1717245000),
            "1717245000 is not of type 'string'",
            id="occurred-at-a-number",
        ),
        pytest.param(
            "person-event",
            broken(TERMINATION, termination_date="30 June 2024"),
            "'30 June 2024' is not a 'date'",
            id="termination-date-not-a-date",
        ),
        pytest.param(
            "person-event",
            broken(SNAPSHOT, attributes=["title"]),
            "['title'] is not of type 'object'",
            id="attributes-a-list",
        ),
        pytest.param(
            "person-event",
            broken(SNAPSHOT, unknown_field=1),
            "Additional properties are not allowed ('unknown_field' was unexpected)",
            id="unknown-field",
        ),
        pytest.param(
            "membership-event",
            broken(MEMBERSHIP, event_id=None),
            "'event_id' is a required property",
            id="membership-without-event-id",
        ),
        pytest.param(
            "membership-event",
            broken(MEMBERSHIP, role="sponsor"),
            "'sponsor' is not one of ['mentor', 'mentee']",
            id="unknown-role",
        ),
        pytest.param(
            "dead-letter",
            broken(LETTER, source_offset="41"),
            "'41' is not of type 'integer'",
            id="offset-a-string",
        ),
        pytest.param(
            "dead-letter",
            broken(LETTER, source_partition=-1),
            "-1 is less than the minimum of 0",
            id="negative-partition",
        ),
    ],
)
def test_invalid_events_fail_the_exported_schemas(
    tmp_path: Path, schema_name: str, instance: dict[str, Any], reason: str
) -> None:
    schema = exported(tmp_path)[schema_name]

    errors = list(validator(schema).iter_errors(instance))

    assert errors
    assert reason in set(reasons(errors))
