"""Export the JSON Schema of every event, for the teams that publish and consume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.config import ConfigEvent
from schemas.membership import DeadLetter, MembershipEvent
from schemas.person import PersonEvent

SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "person-event": TypeAdapter(PersonEvent),
    "config-event": TypeAdapter(ConfigEvent),
    "membership-event": TypeAdapter(MembershipEvent),
    "dead-letter": TypeAdapter(DeadLetter),
}


def export_json_schemas(directory: Path) -> list[Path]:
    """Write one ``<name>.schema.json`` a schema into directory; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, adapter in SCHEMAS.items():
        schema = adapter.json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{name}.schema.json"
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
