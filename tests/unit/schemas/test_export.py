"""JSON Schema export of every event."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.export import export_json_schemas


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
