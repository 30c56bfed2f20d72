"""A large population for the scale benches: 200 rules, bulk-loaded persons.

The rules are 20 programs times both roles times five rules (three adds, two
removes), each over its own segment, so a sweep evaluates 200 segments. The
same condition trees also produce the peer's hand-written SQL (peer_sql), so
both sides evaluate exactly the same rules.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql

from rules.search import search_document
from schemas.segments import Program, Role, RuleAction, Segment
from workers.config_file import ConfigFile, RuleEntry

PROGRAMS = 20
RULES_PER_PAIR = 5
DEPARTMENTS = tuple(f"dept-{n:02d}" for n in range(20))
LOCATIONS = tuple(f"site-{n}" for n in range(10))
TITLES = (
    "engineer",
    "senior engineer",
    "team lead",
    "manager",
    "analyst",
    "designer",
    "director",
    "staff engineer",
    "intern",
    "consultant",
)
SKILLS = tuple(f"skill-{n:02d}" for n in range(12))
COST_CENTERS = tuple(f"cc-{n:03d}" for n in range(100))
FIRST_HIRE = date(2016, 1, 1)
HIRE_DAYS = 3800

Cond = dict[str, Any]


def _cond(attribute: str, operator: str, value: Any) -> Cond:
    return {"attribute": attribute, "operator": operator, "value": value}


def pair_plan(j: int) -> list[tuple[RuleAction, dict[str, Any]]]:
    """The five rules of the j-th (program, role) pair, in dashboard order."""
    # Each add segment holds about 2% of the persons and each remove about 1-2%,
    # so a program role has a few percent of the population, as real ones do.
    return [
        (
            RuleAction.ADD,
            {
                "all": [
                    _cond("department", "eq", DEPARTMENTS[j % 20]),
                    _cond("level", "gte", 7),
                ]
            },
        ),
        (
            RuleAction.ADD,
            {
                "all": [
                    _cond(
                        "cost_center",
                        "in",
                        [COST_CENTERS[(3 * j) % 100], COST_CENTERS[(3 * j + 1) % 100]],
                    )
                ]
            },
        ),
        (
            RuleAction.REMOVE,
            {
                "all": [
                    _cond("location", "eq", LOCATIONS[j % 10]),
                    _cond("level", "lte", 2),
                ]
            },
        ),
        (
            RuleAction.ADD,
            {
                "all": [
                    _cond("title", "contains", "lead"),
                    _cond("skills", "includes", SKILLS[j % 12]),
                ]
            },
        ),
        (
            RuleAction.REMOVE,
            {"all": [_cond("hire_date", "within_last", 30 + j)]},
        ),
    ]


def pairs() -> Iterator[tuple[int, str, Role]]:
    """Every (index, program, role) pair the rules manage."""
    for program in range(PROGRAMS):
        for r, role in enumerate((Role.MENTOR, Role.MENTEE)):
            yield 2 * program + r, f"program-{program:02d}", role


def scale_config() -> ConfigFile:
    """Twenty programs, 200 published rules, one segment each."""
    segments: list[Segment] = []
    rules: list[RuleEntry] = []
    for j, program, role in pairs():
        for k, (action, definition) in enumerate(pair_plan(j)):
            segment_id = f"seg-{j:02d}-{k}"
            segments.append(
                Segment.model_validate(
                    {"segment_id": segment_id, "definition": definition}
                )
            )
            rules.append(
                RuleEntry(
                    rule_id=f"rule-{j:02d}-{k}",
                    action=action,
                    program=program,
                    role=role,
                    segment=segment_id,
                )
            )
    programs = tuple(Program(program_id=f"program-{n:02d}") for n in range(PROGRAMS))
    return ConfigFile(programs=programs, segments=tuple(segments), rules=tuple(rules))


def person_id(n: int) -> str:
    """The id of the n-th generated person."""
    return f"p-{n:08d}"


def attributes(chooser: random.Random) -> dict[str, Any]:
    """Random HR attributes of one person."""
    hired = FIRST_HIRE + timedelta(days=chooser.randrange(HIRE_DAYS))
    return {
        "department": chooser.choice(DEPARTMENTS),
        "location": chooser.choice(LOCATIONS),
        "level": chooser.randint(1, 9),
        "title": chooser.choice(TITLES),
        "cost_center": chooser.choice(COST_CENTERS),
        "skills": chooser.sample(SKILLS, 2),
        "hire_date": hired.isoformat(),
        "manager_id": person_id(chooser.randrange(1000)),
        "employment_status": "active",
    }


def copy_persons(conn: psycopg.Connection[Any], count: int, version_at: Any) -> None:
    """COPY count active persons with their search copies into persons."""
    chooser = random.Random(20260601)
    with (
        conn.cursor() as cursor,
        cursor.copy(
            "COPY persons (person_id, attributes, search, status, version_at,"
            " version_event_id) FROM STDIN"
        ) as copy,
    ):
        for n in range(count):
            attrs = attributes(chooser)
            copy.write_row(
                (
                    person_id(n),
                    json.dumps(attrs),
                    json.dumps(search_document(attrs)),
                    "active",
                    version_at,
                    "bench-load",
                )
            )


# -- the peer -------------------------------------------------------------------


def _raw_condition(cond: Cond, today: date) -> sql.Composable:
    """One condition over the raw JSON attributes, as written by hand."""
    name = sql.Literal(cond["attribute"])
    text = sql.SQL("lower(p.attributes->>{})").format(name)
    operator, value = cond["operator"], cond["value"]
    if operator == "eq":
        return sql.SQL("{} = {}").format(text, sql.Literal(value.lower()))
    if operator == "in":
        values = sql.SQL(", ").join(sql.Literal(v.lower()) for v in value)
        return sql.SQL("{} IN ({})").format(text, values)
    if operator in ("gte", "lte"):
        sign = sql.SQL(">=" if operator == "gte" else "<=")
        return sql.SQL("(p.attributes->>{})::numeric {} {}").format(
            name, sign, sql.Literal(value)
        )
    if operator == "contains":
        return sql.SQL("p.attributes->>{} ILIKE {}").format(
            name, sql.Literal(f"%{value}%")
        )
    if operator == "includes":
        return sql.SQL("p.attributes->{} ? {}").format(name, sql.Literal(value))
    if operator == "within_last":
        return sql.SQL("(p.attributes->>{})::date BETWEEN {} AND {}").format(
            name, sql.Literal(today - timedelta(days=value)), sql.Literal(today)
        )
    raise ValueError(f"the peer does not write {operator}")


def _raw_segment(definition: dict[str, Any], today: date) -> sql.Composable:
    conditions = [_raw_condition(c, today) for c in definition["all"]]
    return sql.SQL("({})").format(sql.SQL(" AND ").join(conditions))


def peer_sql(today: date) -> sql.Composed:
    """One plain statement counting the changes a sweep would make.

    Per person and (program, role), a CASE over the rules in reverse dashboard
    order yields the last matching rule's action; rows whose action disagrees
    with the current membership are the changes, plus every membership of a
    person who is no longer active.
    """
    rows: list[sql.Composable] = []
    for j, program, role in pairs():
        whens = [
            sql.SQL("WHEN {} THEN {}").format(
                _raw_segment(definition, today), sql.Literal(action.value)
            )
            for action, definition in reversed(pair_plan(j))
        ]
        rows.append(
            sql.SQL("({}, {}, CASE {} END)").format(
                sql.Literal(program), sql.Literal(role.value), sql.SQL(" ").join(whens)
            )
        )
    return sql.SQL(
        "SELECT (SELECT count(*)"
        " FROM persons AS p CROSS JOIN LATERAL (VALUES {}) AS d (program_id, role,"
        " action)"
        " LEFT JOIN memberships AS m ON m.program_id = d.program_id"
        " AND m.role = d.role AND m.person_id = p.person_id"
        " WHERE p.status = 'active' AND d.action IS NOT NULL"
        " AND (d.action = 'add') = (m.person_id IS NULL))"
        " + (SELECT count(*) FROM memberships AS m JOIN persons AS p"
        " ON p.person_id = m.person_id WHERE p.status <> 'active')"
    ).format(sql.SQL(", ").join(rows))
