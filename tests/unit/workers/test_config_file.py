"""Reading a YAML configuration file into one config event."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import workers
from rules.evaluation import Decision, decide_person
from rules.ruleset import RuleSet
from schemas.config import ConfigApplied, config_event_adapter
from schemas.membership import MembershipAction
from schemas.segments import Role, RuleAction, RuleStatus
from tests.unit.factories import TODAY
from workers.config_file import ConfigFile, load_config_file
from workers.errors import WorkerError

DEMO_CONFIG = Path(workers.__file__).parent / "data" / "demo-config.yaml"

MINIMAL = """
programs:
  - {program_id: p1}
segments:
  - segment_id: it
    definition: {attribute: department, operator: eq, value: IT}
  - segment_id: sales
    definition: {attribute: department, operator: eq, value: Sales}
rules:
  - {rule_id: first, action: add, program: p1, role: mentor, segment: it}
  - {rule_id: second, action: remove, program: p1, role: mentor, segment: sales,
     status: paused}
"""


ConfigPathFactory = Callable[..., Path]


@pytest.fixture
def config_path_factory(tmp_path: Path) -> ConfigPathFactory:
    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def test_demo_config_loads_with_rules_in_dashboard_order() -> None:
    config = load_config_file(DEMO_CONFIG)
    assert [p.program_id for p in config.programs] == [
        "sales-leadership",
        "new-hire-buddies",
        "finance-it-guild",
    ]
    assert len(config.segments) == 7
    rules = config.to_rules()
    assert [(r.rule_id, r.position) for r in rules] == [
        ("sales-mentors", 0),
        ("sales-mentees", 1),
        ("buddies-recent-hires", 2),
        ("buddies-not-shipping", 3),
        ("buddies-mentors", 4),
        ("guild-mentors", 5),
        ("guild-mentees", 6),
        ("guild-graduates", 7),
    ]
    assert {r.status for r in rules} == {RuleStatus.PUBLISHED}


def test_demo_config_builds_a_rule_set_where_the_later_remove_rule_decides() -> None:
    config = load_config_file(DEMO_CONFIG)
    ruleset = RuleSet.build(config.to_rules(), config.segments)
    recent_shipping_hire = {"department": "Shipping", "hire_date": TODAY.isoformat()}
    buddies = ("new-hire-buddies", Role.MENTEE)
    assert decide_person("p-1", ruleset, recent_shipping_hire, set(), TODAY) == []
    assert decide_person("p-1", ruleset, recent_shipping_hire, {buddies}, TODAY) == [
        Decision(
            "new-hire-buddies",
            Role.MENTEE,
            "p-1",
            MembershipAction.REMOVED,
            "buddies-not-shipping",
        )
    ]


def test_file_order_gives_positions_from_the_first_position(
    config_path_factory: ConfigPathFactory,
) -> None:
    config = load_config_file(config_path_factory(MINIMAL))
    rules = config.to_rules(first_position=10)
    assert [(r.rule_id, r.position, r.status) for r in rules] == [
        ("first", 10, RuleStatus.PUBLISHED),
        ("second", 11, RuleStatus.PAUSED),
    ]
    assert (rules[0].program_id, rules[0].role, rules[0].segment_id) == (
        "p1",
        Role.MENTOR,
        "it",
    )
    assert rules[1].action is RuleAction.REMOVE


def test_to_event_publishes_the_whole_file_as_one_valid_event(
    config_path_factory: ConfigPathFactory,
) -> None:
    config = load_config_file(config_path_factory(MINIMAL))
    event = config.to_event()
    assert isinstance(event, ConfigApplied)
    assert event.programs == config.programs
    assert event.segments == config.segments
    assert list(event.rules) == config.to_rules()
    assert event.occurred_at.tzinfo is not None
    parsed = config_event_adapter.validate_json(event.model_dump_json(by_alias=True))
    assert parsed == event
    assert config.to_event().event_id != event.event_id


def test_empty_file_is_an_empty_config(
    config_path_factory: ConfigPathFactory,
) -> None:
    assert load_config_file(config_path_factory("")) == ConfigFile()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("programs: [", "cannot read config file"),
        ("- just\n- a list\n", "is invalid"),
        ("programs:\n  - {name: no id}\n", "is invalid: programs.0.program_id"),
        ("surprise: 1\n", "is invalid: surprise"),
        (
            "segments:\n  - segment_id: s\n"
            "    definition: {attribute: x, operator: in, value: []}\n",
            "is invalid: segments.0.definition",
        ),
        (
            "segments:\n  - segment_id: s\n    definition: [x]\n",
            "is invalid: segments.0.definition",
        ),
        (
            MINIMAL + "  - {rule_id: first, action: add, program: p1, role: mentee,"
            " segment: it}\n",
            "rule 'first' listed twice",
        ),
        (
            MINIMAL + "  - {rule_id: third, action: add, program: p9, role: mentee,"
            " segment: it}\n",
            "rule 'third' names program 'p9', which the file does not define",
        ),
        (
            MINIMAL + "  - {rule_id: third, action: add, program: p1, role: mentee,"
            " segment: nowhere}\n",
            "rule 'third' names segment 'nowhere', which the file does not define",
        ),
        (
            MINIMAL + "  - {rule_id: third, action: flip, program: p1, role: mentee,"
            " segment: it}\n",
            "is invalid: rules.2.action",
        ),
        (
            MINIMAL.replace(
                "- {program_id: p1}", "- {program_id: p1}\n  - {program_id: p1}"
            ),
            "program 'p1' listed twice",
        ),
        (
            MINIMAL + "segments:\n  - segment_id: it\n"
            "    definition: {attribute: department, operator: eq, value: HR}\n",
            "key 'segments' appears twice",
        ),
        (
            MINIMAL.replace("segment_id: sales", "segment_id: it"),
            "segment 'it' listed twice",
        ),
        (
            "segments:\n  - segment_id: s\n"
            "    definition: {attribute: salary, operator: gte, value: .nan}\n",
            "is NaN or infinite",
        ),
    ],
    ids=[
        "bad-yaml",
        "not-a-mapping",
        "program-without-id",
        "unknown-key",
        "invalid-condition",
        "definition-is-a-list",
        "duplicate-rule",
        "unknown-program",
        "unknown-segment",
        "unknown-action",
        "duplicate-program",
        "duplicate-key",
        "duplicate-segment",
        "nan-value",
    ],
)
def test_invalid_file_raises_worker_error_naming_the_file(
    config_path_factory: ConfigPathFactory, text: str, message: str
) -> None:
    path = config_path_factory(text, name="broken.yaml")
    with pytest.raises(WorkerError, match=re.escape(message)) as raised:
        load_config_file(path)
    assert str(path) in str(raised.value)


def test_a_file_that_is_not_utf8_raises_worker_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("programs: [{program_id: caf\u00e9}]\n".encode("latin-1"))
    with pytest.raises(WorkerError, match=r"cannot read config file .*latin1\.yaml"):
        load_config_file(path)


def test_an_unquoted_date_is_a_date_condition_value(
    config_path_factory: ConfigPathFactory,
) -> None:
    # YAML reads 2018-01-01 as a date; conditions take dates as yyyy-mm-dd text.
    config = load_config_file(
        config_path_factory(
            """
            segments:
              - segment_id: s
                definition: {attribute: hire_date, operator: gte, value: 2018-01-01}
            """
        )
    )
    [segment] = config.segments
    assert segment.definition.value == "2018-01-01"  # type: ignore[union-attr]


def test_missing_file_raises_worker_error(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match=r"cannot read config file .*absent\.yaml"):
        load_config_file(tmp_path / "absent.yaml")


def test_a_rule_may_give_its_position_and_two_published_rules_may_not_share_one(
    tmp_path,
):
    text = """
programs: [{program_id: p}]
segments: [{segment_id: s, definition: {all: []}}]
rules:
  - {rule_id: a, action: add, program: p, role: mentor, segment: s, position: 10}
  - {rule_id: b, action: add, program: p, role: mentee, segment: s}
"""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert [r.position for r in load_config_file(path).to_rules()] == [10, 1]

    path.write_text(text.replace("position: 10", "position: 1"))
    with pytest.raises(WorkerError, match="both take dashboard position 1"):
        load_config_file(path)


def test_a_syntax_error_is_placed_in_the_file_by_its_name(
    config_path_factory: ConfigPathFactory,
) -> None:
    path = config_path_factory("programs: [\n", name="unclosed.yaml")

    with pytest.raises(WorkerError) as raised:
        load_config_file(path)

    assert f'in "{path}", line' in str(raised.value)
    assert "<byte string>" not in str(raised.value)


@pytest.mark.parametrize("text", ["- programs: []\n", "just words\n"])
def test_a_file_that_is_not_a_mapping_says_what_its_top_level_is(
    config_path_factory: ConfigPathFactory, text: str
) -> None:
    path = config_path_factory(text, name="listed.yaml")

    with pytest.raises(WorkerError, match="must be a mapping of programs") as raised:
        load_config_file(path)

    assert "ConfigFile" not in str(raised.value)
