"""Reading a configuration file into config events, in dashboard order."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from schemas.common import FrozenModel, new_event_id, utc_now
from schemas.config import ConfigApplied
from schemas.segments import Program, Role, Rule, RuleAction, RuleStatus, Segment
from workers.errors import WorkerError

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class RuleEntry(FrozenModel):
    """A rule as written in the file, placed on the dashboard by its order."""

    rule_id: str = Field(min_length=1)
    action: RuleAction
    program: str
    role: Role
    segment: str
    status: RuleStatus = RuleStatus.PUBLISHED
    name: str = ""
    # Overrides the place in the list, to add rules without listing them all.
    position: int | None = Field(default=None, ge=0)


class ConfigFile(FrozenModel):
    """Programs, segments and rules, with the rules in dashboard order."""

    programs: tuple[Program, ...] = ()
    segments: tuple[Segment, ...] = ()
    rules: tuple[RuleEntry, ...] = ()

    def to_rules(self, first_position: int = 0) -> list[Rule]:
        """Return the rules with positions following their order in the file."""
        return [
            Rule(
                rule_id=entry.rule_id,
                action=entry.action,
                program_id=entry.program,
                role=entry.role,
                segment_id=entry.segment,
                position=(
                    first_position + index if entry.position is None else entry.position
                ),
                status=entry.status,
                name=entry.name,
            )
            for index, entry in enumerate(self.rules)
        ]

    def to_event(self) -> ConfigApplied:
        """Return the one config event that publishes this whole file."""
        return ConfigApplied(
            event_id=new_event_id(),
            occurred_at=utc_now(),
            programs=self.programs,
            segments=self.segments,
            rules=tuple(self.to_rules()),
        )


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but a date stays text and a key may not repeat.

    Conditions compare dates written as yyyy-mm-dd text; the safe loader would
    turn an unquoted ``value: 2018-01-01`` into a date that no condition takes.
    It would also keep only the last of two ``rules:`` sections, dropping the
    rules of the first without a word.
    """

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
                continue
            if key.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key.value!r} appears twice", key.start_mark
                )
            seen.add(key.value)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_config_file(path: Path) -> ConfigFile:
    """Read and validate a YAML configuration file.

    Raises WorkerError naming the file and the first problems found.
    """
    try:
        # From bytes, the reader detects the encoding and reports bad UTF-8.
        raw: Any = yaml.load(path.read_bytes(), Loader=_Loader)
    except OSError as error:
        raise WorkerError(f"cannot read config file {path}: {error}") from None
    except yaml.YAMLError as error:
        # Read from bytes, YAML's marks would name "<byte string>", not the file.
        for mark in (
            getattr(error, "context_mark", None),
            getattr(error, "problem_mark", None),
        ):
            if mark is not None:
                mark.name = str(path)
        raise WorkerError(f"cannot read config file {path}: {error}") from None
    if raw is not None and not isinstance(raw, dict):
        raise WorkerError(
            f"config file {path} is invalid: its top level is a"
            f" {type(raw).__name__}; it must be a mapping of programs, segments"
            " and rules"
        )
    try:
        config = ConfigFile.model_validate(raw or {})
    except ValidationError as error:
        problems = "; ".join(
            ".".join(str(part) for part in detail["loc"]) + ": " + detail["msg"]
            for detail in error.errors(include_url=False)[:5]
        )
        raise WorkerError(f"config file {path} is invalid: {problems}") from None
    _check_references(path, config)
    _check_positions(path, config)
    return config


def _check_positions(path: Path, config: ConfigFile) -> None:
    holders: dict[int, str] = {}
    for rule in config.to_rules():
        if rule.status is not RuleStatus.PUBLISHED:
            continue
        other = holders.setdefault(rule.position, rule.rule_id)
        if other != rule.rule_id:
            raise WorkerError(
                f"config file {path}: rules {other!r} and {rule.rule_id!r} both take"
                f" dashboard position {rule.position}; give each its own"
            )


def _check_references(path: Path, config: ConfigFile) -> None:
    # A second definition would silently replace the first.
    for kind, ids in (
        ("program", [program.program_id for program in config.programs]),
        ("segment", [segment.segment_id for segment in config.segments]),
    ):
        twice = sorted({item for item in ids if ids.count(item) > 1})
        if twice:
            raise WorkerError(f"config file {path}: {kind} {twice[0]!r} listed twice")
    programs = {program.program_id for program in config.programs}
    segments = {segment.segment_id for segment in config.segments}
    seen: set[str] = set()
    for entry in config.rules:
        if entry.rule_id in seen:
            raise WorkerError(
                f"config file {path}: rule {entry.rule_id!r} listed twice"
            )
        seen.add(entry.rule_id)
        if entry.program not in programs:
            raise WorkerError(
                f"config file {path}: rule {entry.rule_id!r} names program"
                f" {entry.program!r}, which the file does not define"
            )
        if entry.segment not in segments:
            raise WorkerError(
                f"config file {path}: rule {entry.rule_id!r} names segment"
                f" {entry.segment!r}, which the file does not define"
            )
