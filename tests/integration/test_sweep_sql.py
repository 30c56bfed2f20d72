"""The set-based sweep on PostgreSQL, held against the Python evaluation.

Property tests over generated people, segments and ordered rule lists: the SQL
of a segment gives the Python answer; a sweep after processed events changes
nothing; reordering rules with disjoint segments changes nothing; the SQL sweep
makes exactly the changes, outbox rows and audit rows of the Python sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from infra.settings import KafkaSettings
from infra.store import SourcePosition, Store, StoreTransaction
from infra.sweep import SweepCounts, sweep_memberships
from rules import sql as rules_sql
from rules.aliases import NO_ALIASES, SQL_FUNCTION, Aliases
from rules.evaluation import Decision, decide_departure, decide_person
from rules.person_state import PersonState, PersonStatus
from rules.ruleset import RuleSet
from rules.segments import matches
from rules.sql import compile_segments
from rules.values import as_date
from schemas.common import EVENT_ID_NAMESPACE, derive_event_id
from schemas.membership import MembershipAction, MembershipEvent
from schemas.segments import (
    DAY_COUNT_OPERATORS,
    AllGroup,
    Condition,
    Operator,
    Program,
    Role,
    Rule,
    RuleAction,
    RuleStatus,
    Segment,
    SegmentNode,
)
from tests.strategies import (
    ALIASES,
    ENGINE_NODES,
    HOSTILE,
    MEMBERSHIPS,
    NODES,
    PAIRS,
    PROGRAMS,
    TODAY,
    Memberships,
    alias_maps,
    attribute_maps,
    condition_values,
    event_attribute_maps,
    nodes,
    rule_lists,
    seen_values,
)
from workers.batch import PersonRecord
from workers.clock import BusinessClock
from workers.engine import Engine

T0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
CHANGED_AT = datetime(2024, 6, 15, 8, 30, 15, 123456, tzinfo=UTC)
CAUSE = "sweep-cause-1"
TOPIC = "mentorflow.membership-events"

PROPERTY = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- helpers --------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOutcome:
    """Everything a sweep changed, as stored."""

    changes: int
    memberships: set[tuple[str, str, str, str, str]]
    outbox: list[tuple[str, str | None, dict[str, Any]]]
    audit: list[tuple[str, str, str | None, dict[str, Any]]]


@contextmanager
def rolled_back(store: Store) -> Iterator[StoreTransaction]:
    """A transaction that is always rolled back, so examples need no clean-up."""
    with store.pool.connection() as conn, conn.transaction(force_rollback=True):
        yield StoreTransaction(conn)


def person_state(
    person_id: str,
    attributes: dict[str, Any],
    status: PersonStatus = PersonStatus.ACTIVE,
) -> PersonState:
    return PersonState(person_id, attributes, status, T0, f"v-{person_id}")


def add_memberships(tx: StoreTransaction, memberships: Memberships) -> None:
    for (pair, person), manual in memberships.items():
        source = "manual" if manual else "rule"
        tx.add_membership(pair, f"p{person}", source, source, "seed", T0)


def run_sweep(tx: StoreTransaction, ruleset: RuleSet) -> SweepOutcome:
    counts = sweep_memberships(
        tx.conn,
        ruleset,
        today=TODAY,
        cause_event_id=CAUSE,
        changed_at=CHANGED_AT,
        membership_topic=TOPIC,
    )
    return SweepOutcome(counts.changes, *stored_effects(tx.conn))


def stored_effects(
    conn: psycopg.Connection[Any],
) -> tuple[set[Any], list[Any], list[Any]]:
    memberships = set(
        conn.execute(
            "SELECT program_id, role, person_id, source, decided_by FROM memberships"
        ).fetchall()
    )
    outbox = conn.execute("SELECT topic, key, payload FROM outbox ORDER BY id")
    audit = conn.execute(
        "SELECT kind, subject, cause_event_id, detail FROM audit_log ORDER BY id"
    )
    return memberships, outbox.fetchall(), audit.fetchall()


def python_sweep(tx: StoreTransaction, ruleset: RuleSet) -> SweepOutcome:
    """What the chunked Python sweep made of the same data, recomputed."""
    persons = sorted(
        (person for chunk in tx.iter_persons() for person in chunk),
        key=lambda person: person.person_id,
    )
    held = tx.memberships_of(person.person_id for person in persons)
    decisions: list[Decision] = []
    for person in persons:
        memberships = held.get(person.person_id, set())
        reason = person.departure_reason
        if reason is not None:
            decisions += decide_departure(person.person_id, memberships, reason)
        else:
            decisions += decide_person(
                person.person_id, ruleset, person.attributes, memberships, TODAY
            )

    rows: set[tuple[str, str, str, str, str]] = stored_effects(tx.conn)[0]
    outbox: list[tuple[str, str | None, dict[str, Any]]] = []
    audit: list[tuple[str, str, str | None, dict[str, Any]]] = []
    for decision in decisions:
        key = (decision.program_id, decision.role.value, decision.person_id)
        if decision.action is MembershipAction.ADDED:
            rows.add((*key, "rule", decision.decided_by))
        else:
            rows = {row for row in rows if row[:3] != key}
        event = MembershipEvent.decided(
            decision.action,
            decision.program_id,
            decision.role,
            decision.person_id,
            decision.decided_by,
            CAUSE,
            CHANGED_AT,
        )
        outbox.append((TOPIC, decision.person_id, event.model_dump(mode="json")))
        detail = {
            "program_id": decision.program_id,
            "role": decision.role.value,
            "decided_by": decision.decided_by,
            "event_id": event.event_id,
        }
        audit.append((decision.action.value, decision.person_id, CAUSE, detail))
    return SweepOutcome(len(decisions), rows, outbox, audit)


def reset(store: Store) -> None:
    """Empty every table but the migrations, for tests that commit."""
    with store.transaction() as tx:
        names = [
            row[0]
            for row in tx.conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename NOT IN ('schema_migrations', 'config_version')"
            )
        ]
        tx.conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(map(sql.Identifier, names))
            )
        )
        tx.bump_config_version()


def configure(
    tx: StoreTransaction, segments: Sequence[Segment], rules: list[Rule]
) -> None:
    for program_id in PROGRAMS:
        tx.upsert_program(Program(program_id=program_id))
    for segment in segments:
        tx.upsert_segment(segment)
    for rule in rules:
        tx.upsert_rule(rule)
    tx.bump_config_version()


def segments_of(drawn: list[tuple[SegmentNode, dict[str, str]]]) -> list[Segment]:
    return [
        Segment(segment_id=f"s{index}", definition=node, aliases=aliases)
        for index, (node, aliases) in enumerate(drawn)
    ]


def event_attributes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attributes the events carry, for segments that use their values."""
    return [event.get("attributes") or event.get("changes") or {} for event in events]


def time_windows(
    seen: list[tuple[str, Any]], *, past_calendar: bool = False
) -> st.SearchStrategy[SegmentNode]:
    """Time-relative conditions on the dates seen, with bounds a few days away."""
    dated = [(name, value) for name, value in seen if as_date(value) is not None]
    if not dated:
        return nodes(past_calendar=past_calendar)
    picks = st.tuples(
        st.sampled_from(sorted(DAY_COUNT_OPERATORS)), st.sampled_from(dated)
    )
    return picks.flatmap(
        lambda pick: condition_values(
            pick[0], past_calendar=past_calendar, seen=[pick[1][1]]
        ).map(
            lambda count: Condition(attribute=pick[1][0], operator=pick[0], value=count)
        )
    )


# -- properties -----------------------------------------------------------------


@settings(PROPERTY, max_examples=200)
@given(
    people=st.lists(attribute_maps(), min_size=1, max_size=8),
    data=st.data(),
    columns=st.sampled_from([None, (1, 1), (2, 0)]),
)
def test_sql_of_segments_gives_the_python_answer_for_every_person(
    store: Store,
    people: list[dict[str, Any]],
    data: st.DataObject,
    columns: tuple[int, int] | None,
) -> None:
    seen = seen_values(people)
    # Time windows on the people's own dates, some on their very bounds.
    trees = st.one_of(nodes(seen=seen), time_windows(seen, past_calendar=True))
    segments = data.draw(
        st.lists(st.tuples(trees, alias_maps(seen)), min_size=1, max_size=4)
    )
    declared = {
        f"s{index}": (node, Aliases.build(aliases) if aliases else NO_ALIASES)
        for index, (node, aliases) in enumerate(segments)
    }
    # Small column limits send values and conditions down the path where they
    # are written out at each use instead.
    with limited_columns(columns):
        compiled = compile_segments(declared, TODAY, active_only=False)
    with rolled_back(store) as tx:
        for index, attributes in enumerate(people):
            tx.save_person(person_state(f"p{index}", attributes))
        listed = ", ".join(compiled.segments[key] for key in declared)
        rows = tx.conn.execute(
            f"SELECT p.person_id, {listed} FROM {compiled.source}".encode(),
            compiled.params,
        ).fetchall()

    in_sql = {row[0]: row[1:] for row in rows}
    for index, attributes in enumerate(people):
        for position, (node, aliases) in enumerate(segments):
            in_python = matches(node, attributes, TODAY, aliases)
            held = in_sql[f"p{index}"][position]
            assert held is in_python, (attributes, node, aliases)
    event(f"first segment holds {sum(row[0] for row in in_sql.values())}")


@contextmanager
def limited_columns(columns: tuple[int, int] | None) -> Iterator[None]:
    """Compile with at most these many value and condition columns."""
    if columns is None:
        yield
        return
    saved = rules_sql.MAX_VALUE_COLUMNS, rules_sql.MAX_CONDITION_COLUMNS
    rules_sql.MAX_VALUE_COLUMNS, rules_sql.MAX_CONDITION_COLUMNS = columns
    try:
        yield
    finally:
        rules_sql.MAX_VALUE_COLUMNS, rules_sql.MAX_CONDITION_COLUMNS = saved


@st.composite
def person_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A sequence of HR events about a few persons, in time order."""
    events = []
    for index in range(draw(st.integers(1, 10))):
        kind = draw(
            st.sampled_from(
                ["person.hired"] * 3
                + ["person.updated"] * 3
                + ["person.snapshot", "person.terminated", "person.deleted"]
            )
        )
        event: dict[str, Any] = {
            "type": kind,
            "event_id": f"e{index:03d}",
            "occurred_at": (T0 + timedelta(minutes=index)).isoformat(),
            "person_id": f"p{draw(st.integers(0, 3))}",
        }
        if kind in ("person.hired", "person.snapshot"):
            event["attributes"] = draw(event_attribute_maps())
        elif kind == "person.updated":
            event["changes"] = draw(event_attribute_maps(nulls=True, min_size=1))
        elif kind == "person.terminated":
            offset = draw(st.integers(-30, 5))
            event["termination_date"] = (TODAY + timedelta(days=offset)).isoformat()
        events.append(event)
    return events


@settings(PROPERTY, max_examples=100)
@given(data=st.data(), events=person_events())
def test_a_sweep_after_processed_events_changes_nothing(
    store: Store, data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    seen = seen_values(event_attributes(events))
    segments = data.draw(
        st.lists(
            st.tuples(
                st.one_of(
                    ENGINE_NODES,
                    nodes(past_calendar=False, seen=seen),
                    time_windows(seen),
                ),
                st.one_of(ALIASES, alias_maps(seen)),
            ),
            min_size=1,
            max_size=3,
        )
    )
    rules = data.draw(rule_lists(len(segments)))
    # One record at a time or in batches, as the worker's two paths take them.
    batch_size = data.draw(st.one_of(st.none(), st.integers(1, 10)))
    # Then the calendar moves on, in steps: held events and time flips fall due.
    steps = data.draw(
        st.lists(st.one_of(st.integers(1, 3), st.integers(1, 40)), max_size=3)
    )
    reset(store)
    with store.transaction() as tx:
        configure(tx, segments_of(segments), rules)
    engine = Engine(store, KafkaSettings(), BusinessClock(ZoneInfo("UTC"), TODAY))

    records = [
        PersonRecord(
            json.dumps(record).encode(),
            record["person_id"].encode(),
            SourcePosition("hr.person-events", 0, offset),
        )
        for offset, record in enumerate(events)
    ]
    if batch_size is None:
        outcomes = [engine.handle_person_record(*record) for record in records]
    else:
        outcomes = [
            outcome
            for start in range(0, len(records), batch_size)
            for outcome in engine.handle_person_batch(
                records[start : start + batch_size]
            )
        ]
    assert {outcome.kind for outcome in outcomes} <= {"applied", "held"}, outcomes
    event(f"{'batched' if batch_size else 'one at a time'}, {len(steps)} steps")

    today = TODAY
    for step in [0, *steps]:
        today += timedelta(days=step)
        engine = Engine(store, KafkaSettings(), BusinessClock(ZoneInfo("UTC"), today))
        engine.release_due_events()
        if engine.apply_due_flips():
            event("a time flip changed a membership")
        with store.transaction() as tx:
            before = stored_effects(tx.conn)[0]

        result = engine.sweep()

        assert result is not None
        assert result.changes == 0, today
        with store.transaction() as tx:
            assert stored_effects(tx.conn)[0] == before


@st.composite
def disjoint_segments(draw: st.DrawFn) -> list[Segment]:
    """Segments that no person can be in together: each needs its own bucket."""
    count = draw(st.integers(2, 5))
    return [
        Segment(
            segment_id=f"s{index}",
            definition=AllGroup(
                all=[
                    Condition(attribute="bucket", operator=Operator.EQ, value=index),
                    node,
                ]
            ),
            aliases=draw(ALIASES),
        )
        for index, node in enumerate(
            draw(st.lists(NODES, min_size=count, max_size=count))
        )
    ]


@settings(PROPERTY, max_examples=100)
@given(
    segments=disjoint_segments(),
    people=st.lists(
        st.tuples(attribute_maps(), st.integers(0, 5)), min_size=1, max_size=6
    ),
    memberships=MEMBERSHIPS,
    data=st.data(),
)
def test_reordering_rules_whose_segments_are_disjoint_changes_nothing(
    store: Store,
    segments: list[Segment],
    people: list[tuple[dict[str, Any], int]],
    memberships: Memberships,
    data: st.DataObject,
) -> None:
    rules = [
        Rule(
            rule_id=f"r{index}",
            action=data.draw(st.sampled_from(list(RuleAction))),
            program_id=pair[0],
            role=pair[1],
            segment_id=segment.segment_id,
            position=index,
            status=RuleStatus.PUBLISHED,
        )
        for index, (segment, pair) in enumerate(
            zip(
                segments,
                data.draw(st.lists(st.sampled_from(PAIRS[:2]), min_size=5)),
                strict=False,
            )
        )
    ]
    order = data.draw(st.permutations(range(len(rules))))
    reordered = [
        rule.model_copy(update={"position": order[index]})
        for index, rule in enumerate(rules)
    ]

    outcomes = []
    for ordered in (rules, reordered):
        with rolled_back(store) as tx:
            for index, (attributes, bucket) in enumerate(people):
                # Bucket 5 has no segment: those people are in none.
                tx.save_person(
                    person_state(f"p{index}", {**attributes, "bucket": bucket})
                )
            add_memberships(tx, memberships)
            outcomes.append(run_sweep(tx, RuleSet.build(ordered, segments)))

    event(f"changes: {min(outcomes[0].changes, 3)}+")
    assert outcomes[0] == outcomes[1]


STATUSES = st.sampled_from(
    [PersonStatus.ACTIVE] * 4 + [PersonStatus.TERMINATED, PersonStatus.DELETED]
)


@settings(PROPERTY, max_examples=80)
@given(
    people=st.lists(
        st.tuples(attribute_maps(exact_json=True), STATUSES), min_size=1, max_size=6
    ),
    memberships=MEMBERSHIPS,
    data=st.data(),
)
def test_sql_sweep_makes_exactly_the_changes_and_events_of_the_python_sweep(
    store: Store,
    people: list[tuple[dict[str, Any], PersonStatus]],
    memberships: Memberships,
    data: st.DataObject,
) -> None:
    seen = seen_values([attributes for attributes, _ in people])
    segments = data.draw(
        st.lists(st.tuples(nodes(seen=seen), alias_maps(seen)), min_size=1, max_size=3)
    )
    ruleset = RuleSet.build(data.draw(rule_lists(len(segments))), segments_of(segments))
    with rolled_back(store) as tx:
        for index, (attributes, status) in enumerate(people):
            tx.save_person(person_state(f"p{index}", attributes, status))
        add_memberships(tx, memberships)

        expected = python_sweep(tx, ruleset)
        actual = run_sweep(tx, ruleset)

    event(f"changes: {min(actual.changes, 3)}+")
    assert actual == expected


ALIAS_WORDS = st.sampled_from(["sr.", "senior", "eng", "it", "x", "a", "b"])


@settings(PROPERTY, max_examples=100)
@given(
    texts=st.lists(st.lists(ALIAS_WORDS, max_size=6).map(" ".join), max_size=5),
    declared=st.dictionaries(
        st.lists(ALIAS_WORDS, min_size=1, max_size=3).map(" ".join),
        st.lists(ALIAS_WORDS, max_size=2).map(lambda words: " ".join(words) or "y"),
        max_size=4,
    ),
)
def test_sql_alias_function_rewrites_exactly_like_python(
    store: Store, texts: list[str], declared: dict[str, str]
) -> None:
    table = Aliases.build(declared)
    with rolled_back(store) as tx:
        rows = tx.conn.execute(
            f"SELECT {SQL_FUNCTION}(source, %s, %s)"
            " FROM unnest(%s::text[]) WITH ORDINALITY AS t (source, n) ORDER BY n",
            (table.variants, table.canonicals, texts),
        ).fetchall()
    assert [row[0] for row in rows] == [table.apply(text) for text in texts]


# -- examples -------------------------------------------------------------------


def test_hostile_names_and_values_are_parameters(store: Store) -> None:
    attributes = {HOSTILE: HOSTILE, "it's": "a;b", 'x"y': ["'; --", "$1"], "%s": "%"}
    segment = Segment(
        segment_id=HOSTILE,
        definition=AllGroup(
            all=[
                Condition(attribute=HOSTILE, operator=Operator.EQ, value=HOSTILE),
                Condition(attribute="it's", operator=Operator.CONTAINS, value=";"),
                Condition(attribute='x"y', operator=Operator.INCLUDES, value="'; --"),
                Condition(attribute="%s", operator=Operator.STARTS_WITH, value="%"),
                Condition(attribute="'", operator=Operator.MISSING),
            ]
        ),
        aliases={HOSTILE: "'; SELECT 1; --", "%s": "%%"},
    )
    rule = Rule(
        rule_id=HOSTILE,
        action=RuleAction.ADD,
        program_id=HOSTILE,
        role=Role.MENTOR,
        segment_id=HOSTILE,
        position=0,
        status=RuleStatus.PUBLISHED,
    )
    assert matches(segment.definition, attributes, TODAY, segment.aliases)

    with rolled_back(store) as tx:
        tx.save_person(person_state(HOSTILE, attributes))
        outcome = run_sweep(tx, RuleSet.build([rule], [segment]))
        persons = tx.conn.execute("SELECT count(*) FROM persons").fetchone()

    assert persons == (1,)
    assert outcome.memberships == {(HOSTILE, "mentor", HOSTILE, "rule", HOSTILE)}
    [(_, key, payload)] = outcome.outbox
    assert key == HOSTILE
    assert payload["program_id"] == payload["decided_by"] == HOSTILE


# The bounds of each time-relative window of 30 days, at N-1, N and N+1 days.
BOUNDS = {
    Operator.WITHIN_LAST: {-31: False, -30: True, -29: True, 0: True, 1: False},
    Operator.MORE_THAN_AGO: {-31: True, -30: False, -29: False, 0: False},
    Operator.WITHIN_NEXT: {-1: False, 0: True, 29: True, 30: True, 31: False},
    Operator.MORE_THAN_AHEAD: {0: False, 29: False, 30: False, 31: True},
}


def test_sql_time_relative_bounds_at_n_minus_one_n_and_n_plus_one_days(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the process nor the session runs in UTC, and the dates written
    # with a time are already the next day in UTC: no zone may move an HR date.
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    people = {
        f"{offset}{suffix}": (TODAY + timedelta(days=offset)).isoformat() + suffix
        for offset in sorted({offset for days in BOUNDS.values() for offset in days})
        for suffix in ("", "T23:30:00-08:00")
    }
    try:
        with rolled_back(store) as tx:
            tx.conn.execute("SET LOCAL TimeZone = 'America/Anchorage'")
            for person_id, hired in people.items():
                tx.save_person(person_state(person_id, {"hire_date": hired}))
            for operator, expected in BOUNDS.items():
                node = Condition(attribute="hire_date", operator=operator, value=30)
                compiled = compile_segments(
                    {"s": (node, NO_ALIASES)}, TODAY, active_only=False
                )
                query = f"SELECT p.person_id, {compiled.segments['s']}"
                rows = tx.conn.execute(
                    f"{query} FROM {compiled.source}".encode(), compiled.params
                ).fetchall()
                in_sql = dict(rows)
                for person_id, hired in people.items():
                    offset = int(person_id.partition("T")[0])
                    if offset not in expected:
                        continue
                    in_python = matches(node, {"hire_date": hired}, TODAY)
                    answers = (in_python, in_sql[person_id])
                    assert answers == (expected[offset],) * 2, (operator, hired)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_sql_event_id_equals_the_python_one(store: Store) -> None:
    parts = [
        ("cause", "eng", "mentor", "p-1", "membership.added"),
        (HOSTILE, "prögram", "mentee", "ｐ\u200b1", "membership.removed"),
        ("", "", "", "", ""),
    ]
    with rolled_back(store) as tx:
        for part in parts:
            row = tx.conn.execute(
                "SELECT mentorflow_event_id(%s, %s)",
                (EVENT_ID_NAMESPACE.bytes, "|".join(part)),
            ).fetchone()
            assert row == (derive_event_id(*part),)
    assert derive_event_id(*parts[0]).split("-")[2].startswith("8")


def test_sweep_fills_a_missing_search_copy_before_it_reads_persons(
    store: Store,
) -> None:
    segment = Segment(
        segment_id="engineers",
        definition=Condition(attribute="title", operator=Operator.EQ, value="Engineer"),
    )
    rule = Rule(
        rule_id="r",
        action=RuleAction.ADD,
        program_id="eng",
        role=Role.MENTEE,
        segment_id="engineers",
        position=0,
        status=RuleStatus.PUBLISHED,
    )
    with rolled_back(store) as tx:
        tx.conn.execute(
            "INSERT INTO persons (person_id, attributes, status, version_at,"
            " version_event_id) VALUES ('p', '{\"title\": \" ENGINEER\"}', 'active',"
            " now(), 'v')"
        )
        outcome = run_sweep(tx, RuleSet.build([rule], [segment]))

    assert outcome.memberships == {("eng", "mentee", "p", "rule", "r")}


def test_engine_sweep_runs_in_sql_and_records_the_sweep(store: Store) -> None:
    segment = Segment(
        segment_id="seniors",
        definition=Condition(
            attribute="title", operator=Operator.STARTS_WITH, value="senior"
        ),
        aliases={"Sr.": "Senior"},
    )
    rules = [
        Rule(
            rule_id=f"r-{program_id}-{role.value}",
            action=RuleAction.ADD,
            program_id=program_id,
            role=role,
            segment_id="seniors",
            position=position,
            status=RuleStatus.PUBLISHED,
        )
        for position, (program_id, role) in enumerate(reversed(PAIRS[:2]))
    ]
    reset(store)
    with store.transaction() as tx:
        configure(tx, [segment], rules)
        tx.save_person(person_state("p1", {"title": "Sr. Engineer"}))
        tx.save_person(person_state("p2", {"title": "Engineer"}))
    engine = Engine(store, KafkaSettings(), BusinessClock(ZoneInfo("UTC"), TODAY))

    result = engine.sweep()

    assert result is not None
    assert (result.persons, result.changes) == (2, 2)
    with store.transaction() as tx:
        _, outbox, audit = stored_effects(tx.conn)
        sweep = tx.conn.execute("SELECT persons, changes FROM sweeps").fetchall()
    # One person's events are written in (program, role) order.
    assert [(row[2]["program_id"], row[2]["role"]) for row in outbox] == [
        ("eng", "mentee"),
        ("eng", "mentor"),
    ]
    assert [row[0] for row in audit] == ["membership.added"] * 2
    assert sweep == [(2, 2)]
    assert engine.sweep() == type(result)(result.sweep_id + 1, 2, 0)


def test_sweep_counts_are_returned(store: Store) -> None:
    with rolled_back(store) as tx:
        counts = sweep_memberships(
            tx.conn,
            RuleSet.build([], []),
            today=TODAY,
            cause_event_id=CAUSE,
            changed_at=CHANGED_AT,
            membership_topic=TOPIC,
        )
    assert counts == SweepCounts(persons=0, changes=0)


def test_a_sweep_over_several_connections_decides_as_one_over_one(
    store: Store,
) -> None:
    segments = [
        Segment(
            segment_id="leads",
            definition=Condition(
                attribute="title", operator=Operator.CONTAINS, value="lead"
            ),
        ),
        Segment(
            segment_id="juniors",
            definition=Condition(attribute="level", operator=Operator.LTE, value=2),
        ),
    ]
    rules = [
        Rule(
            rule_id=f"r{position}",
            action=action,
            program_id=PAIRS[0][0],
            role=PAIRS[0][1],
            segment_id=segment_id,
            position=position,
            status=RuleStatus.PUBLISHED,
        )
        for position, (action, segment_id) in enumerate(
            [(RuleAction.ADD, "leads"), (RuleAction.REMOVE, "juniors")]
        )
    ]
    # Long notes spread the persons over many pages, so that each connection
    # reads a share of its own.
    people = {
        f"p{index:03d}": {
            "title": ["team lead", "engineer"][index % 2],
            "level": index % 5,
            "notes": "x" * 600,
        }
        for index in range(150)
    }
    reset(store)
    with store.transaction() as tx:
        configure(tx, segments, rules)
        for person_id, attributes in people.items():
            tx.save_person(person_state(person_id, attributes))
        pages = tx.conn.execute(
            "SELECT pg_relation_size('persons') / current_setting('block_size')::int"
        ).fetchone()
        for person_id in ("p001", "p003"):
            tx.add_membership(PAIRS[0], person_id, "manual", "manual", "seed", T0)
    assert pages is not None and pages[0] >= 6
    with rolled_back(store) as tx:
        expected = python_sweep(tx, RuleSet.build(rules, segments))
    engine = Engine(
        store,
        KafkaSettings(),
        BusinessClock(ZoneInfo("UTC"), TODAY),
        sweep_connections=3,
        sweep_work_mem_mb=64,
    )

    result = engine.sweep()

    assert result is not None
    assert result.changes == expected.changes > 0
    with store.transaction() as tx:
        assert stored_effects(tx.conn)[0] == expected.memberships
