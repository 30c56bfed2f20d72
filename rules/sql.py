"""Compiling segments and rule sets to parameterised SQL over persons.

The SQL reads the search copy of the attributes (rules.search) in
``persons.search``: everything that needs parsing or normalising was done in
Python when the person was saved, so SQL only compares texts, floats and day
numbers and gives exactly the answer of rules.segments.matches. Attribute
names and values always travel as parameters, never in the SQL text.

Persons are read in one pass, in three layers, so that each piece of work is
done once a person however many segments need it:

1. every value the conditions read (an attribute's text, number, day, items or
   presence, aliases applied) is taken out of the search copy once;
2. every distinct condition is evaluated once, to a boolean that is never NULL;
3. segments combine those booleans, and a rule set's decision for a (program,
   role) is the number of its last matching rule.

PostgreSQL would merge the layers into one expression and take each value out
again wherever it is used, so each layer is fenced with ``OFFSET 0``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rules import aliases as alias_module
from rules.aliases import NO_ALIASES, Aliases
from rules.ruleset import ActiveRule, RuleSet
from rules.search import DAY, ITEMS, NUMBER, TEXT
from rules.segments import comparable_text, is_date_value
from rules.values import as_date, as_number
from schemas.segments import (
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    SegmentNode,
)

# Day counts past the whole calendar (3.65 million days) give the same answer
# as this one; clamping keeps the SQL arithmetic inside integer range.
_MAX_DAY_COUNT = 4_000_000

# PostgreSQL allows 1,664 columns in a select list. Past these counts, values
# and conditions are written out where they are used instead of as columns:
# slower, since they are then worked out again at each use, but still right.
MAX_VALUE_COLUMNS = 600
MAX_CONDITION_COLUMNS = 1000

_ORDERING_SQL = {
    Operator.GT: ">",
    Operator.GTE: ">=",
    Operator.LT: "<",
    Operator.LTE: "<=",
}

# Each negative operator is compiled as NOT of its positive form.
_NEGATIVE = {
    Operator.NE: Operator.EQ,
    Operator.NOT_IN: Operator.IN,
    Operator.NOT_CONTAINS: Operator.CONTAINS,
    Operator.MISSING: Operator.EXISTS,
    Operator.EXCLUDES: Operator.INCLUDES,
}

# What a condition reads of an attribute, besides the entries of rules.search.
_PRESENT = "present"


@dataclass(frozen=True)
class CompiledSegments:
    """Segments as boolean SQL expressions over one pass of persons.

    ``source`` is a subquery, aliased ``c``, yielding ``person_id`` and the
    columns the expressions read; ``segments`` holds one expression a segment
    key, never NULL. Values are named placeholders (``%(v0)s``) in ``params``.
    """

    source: str
    segments: Mapping[str, str]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class CompiledDecisions:
    """For each active person, the numbers of the rules that decide for them.

    ``sql`` selects ``person_id`` and ``rule_no`` once for every (program, role)
    where some published rule holds the person: ``rule_no`` is the 1-based
    index into ``rules`` of the last such rule in dashboard order.
    """

    sql: str
    params: Mapping[str, Any]
    rules: tuple[ActiveRule, ...]


def compile_segments(
    segments: Mapping[str, tuple[SegmentNode, Aliases]],
    today: date,
    *,
    active_only: bool = True,
    where: str = "",
) -> CompiledSegments:
    """Compile segments, by key, to expressions over one pass of persons.

    With ``active_only``, the pass reads active persons only; ``where`` is a
    further condition on ``persons AS p``, whose own placeholders the caller
    fills. ``today`` is a parameter value, so the SQL text depends only on the
    segments.
    """
    compiler = _Compiler(today)
    expressions = {
        key: compiler.node(node, aliases) for key, (node, aliases) in segments.items()
    }
    conditions = [
        *(["p.status = 'active'"] if active_only else []),
        *([where] if where else []),
    ]
    return CompiledSegments(
        compiler.source(conditions), expressions, compiler.params.values
    )


def compile_decisions(
    ruleset: RuleSet, today: date, *, where: str = ""
) -> CompiledDecisions:
    """Compile the published rules to each active person's deciding rules.

    For every (program, role), the rules are tried from the last in dashboard
    order back, so the first whose segment holds the person is the one that
    decides, as rules.evaluation.decide_person does. ``where`` is as for
    compile_segments.
    """
    by_pair = [ruleset.by_pair[pair] for pair in ruleset.pairs]
    rules = tuple(rule for found in by_pair for rule in found)
    if not rules:
        empty = "SELECT NULL::text AS person_id, NULL::integer AS rule_no WHERE FALSE"
        return CompiledDecisions(empty, {}, ())

    # A segment that several rules use is compiled once.
    used = {rule.segment_id: (rule.definition, rule.aliases) for rule in rules}
    compiled = compile_segments(used, today, where=where)
    cases = []
    first = 1
    for found in by_pair:
        numbered = zip(range(first, first + len(found)), found, strict=True)
        whens = [
            f"WHEN {compiled.segments[rule.segment_id]} THEN {number}"
            for number, rule in reversed(list(numbered))
        ]
        cases.append(f"CASE {' '.join(whens)} END")
        first += len(found)

    # One entry a pair; where no rule holds the person it is NULL, and dropped.
    decided = "array_remove(ARRAY[" + ", ".join(cases) + "]::integer[], NULL)"
    sql = (
        f"SELECT p.person_id, d.rule_no FROM {compiled.source}"
        f" CROSS JOIN LATERAL unnest({decided}) AS d (rule_no)"
    )
    return CompiledDecisions(sql, compiled.params, rules)


class _Params:
    """Named parameters, one for each distinct value of each SQL type."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._names: dict[tuple[str, str], str] = {}

    def __call__(self, value: Any, sql_type: str) -> str:
        key = (sql_type, json.dumps(value, sort_keys=True))
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"v{len(self._names)}"
            self.values[name] = value
        return f"%({name})s::{sql_type}"


class _Columns:
    """Expressions computed once a person, as columns of a fenced subquery."""

    def __init__(self, prefix: str, limit: int) -> None:
        self.prefix = prefix
        self.limit = limit
        self.expressions: dict[str, str] = {}

    def column(self, expression: str) -> str:
        """Return a reference to expression's column, or expression when full.

        Every layer names its input ``p`` and passes on all its input's
        columns, so an expression past the limit, used as it is in a later
        layer, still reads what it names.
        """
        name = self.expressions.get(expression)
        if name is None:
            if len(self.expressions) >= self.limit:
                return expression
            name = self.expressions[expression] = (
                f"{self.prefix}{len(self.expressions)}"
            )
        return f"p.{name}"

    def select_list(self) -> str:
        return "".join(
            f", {expression} AS {name}" for expression, name in self.expressions.items()
        )


class _Compiler:
    """Builds the layers and the segment expressions that read them."""

    def __init__(self, today: date) -> None:
        self.today = today.toordinal()
        self.params = _Params()
        self.values = _Columns("a", MAX_VALUE_COLUMNS)
        self.conditions = _Columns("k", MAX_CONDITION_COLUMNS)

    def source(self, filters: list[str]) -> str:
        """The fenced subquery, aliased p, that segment expressions read."""
        filtered = " WHERE " + " AND ".join(filters) if filters else ""
        values = (
            f"SELECT p.person_id, p.search{self.values.select_list()}"
            f" FROM persons AS p{filtered} OFFSET 0"
        )
        conditions = f"SELECT p.*{self.conditions.select_list()} FROM ({values}) AS p"
        return f"({conditions} OFFSET 0) AS p"

    # -- segment trees, over condition columns -------------------------------------

    def node(self, node: SegmentNode, aliases: Aliases) -> str:
        """The expression, over the conditions layer, of being in node; never NULL."""
        if isinstance(node, AllGroup):
            parts = [self.node(child, aliases) for child in node.all]
            return "(" + " AND ".join(parts) + ")" if parts else "TRUE"
        if isinstance(node, AnyGroup):
            parts = [self.node(child, aliases) for child in node.any]
            return "(" + " OR ".join(parts) + ")"
        if isinstance(node, NotGroup):
            return f"(NOT {self.node(node.not_, aliases)})"
        return self.condition(node, aliases)

    def condition(self, condition: Condition, aliases: Aliases) -> str:
        positive = _NEGATIVE.get(condition.operator, condition.operator)
        held = f"COALESCE({self.positive(positive, condition, aliases)}, FALSE)"
        column = self.conditions.column(held)
        return f"(NOT {column})" if positive is not condition.operator else column

    # -- conditions, over value columns --------------------------------------------

    def positive(
        self, operator: Operator, condition: Condition, aliases: Aliases
    ) -> str:
        """The check of a positive operator: true, false or NULL if unknown."""
        # Any: the schema already checked that the value fits the operator.
        value: Any = condition.value
        name = condition.attribute
        if operator is Operator.EXISTS:
            return self.value(name, _PRESENT, aliases)
        if operator is Operator.EQ:
            return self.text_equals(self.value(name, TEXT, aliases), value, aliases)
        if operator is Operator.IN:
            options = [comparable_text(option, aliases) for option in value]
            known = sorted({option for option in options if option is not None})
            if not known:
                return "FALSE"
            text = self.value(name, TEXT, aliases)
            return f"({text} = ANY({self.params(known, 'text[]')}))"
        if operator is Operator.CONTAINS:
            needle = comparable_text(value, aliases)
            if needle is None:
                return "FALSE"
            text = self.value(name, TEXT, aliases)
            return f"(strpos({text}, {self.params(needle, 'text')}) > 0)"
        if operator is Operator.STARTS_WITH:
            prefix = comparable_text(value, aliases)
            if prefix is None:
                return "FALSE"
            text = self.value(name, TEXT, aliases)
            return f"starts_with({text}, {self.params(prefix, 'text')})"
        if operator is Operator.INCLUDES:
            return self.includes(condition, aliases)
        if operator in _ORDERING_SQL:
            return self.ordering(_ORDERING_SQL[operator], condition)
        return self.relative(operator, condition)

    def text_equals(self, text_sql: str, value: Any, aliases: Aliases) -> str:
        expected = comparable_text(value, aliases)
        if expected is None:
            return "FALSE"
        return f"({text_sql} = {self.params(expected, 'text')})"

    def includes(self, condition: Condition, aliases: Aliases) -> str:
        wanted = comparable_text(condition.value, aliases)
        if wanted is None:
            return "FALSE"
        items = self.value(condition.attribute, ITEMS, NO_ALIASES)
        if not aliases:
            return f"({items} @> {self.params(json.dumps([wanted]), 'jsonb')})"
        item = self.aliased("item.value", aliases)
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({items})"
            f" AS item (value) WHERE {item} = {self.params(wanted, 'text')})"
        )

    def ordering(self, sign: str, condition: Condition) -> str:
        if is_date_value(condition.value):
            expected_day = as_date(condition.value)
            if expected_day is None:
                return "FALSE"
            day = self.value(condition.attribute, DAY, NO_ALIASES)
            return f"({day} {sign} {self.params(expected_day.toordinal(), 'integer')})"
        expected = as_number(condition.value)
        if expected is None:
            return "FALSE"
        number = self.value(condition.attribute, NUMBER, NO_ALIASES)
        return f"({number} {sign} {self.params(expected, 'float8')})"

    def relative(self, operator: Operator, condition: Condition) -> str:
        """A window of day numbers around today, bounds included as the Python's."""
        day = self.value(condition.attribute, DAY, NO_ALIASES)
        count: Any = condition.value
        days = min(int(count), _MAX_DAY_COUNT)
        if operator is Operator.WITHIN_LAST:
            low, high = self.today - days, self.today
        elif operator is Operator.MORE_THAN_AGO:
            return f"({day} < {self.params(self.today - days, 'integer')})"
        elif operator is Operator.WITHIN_NEXT:
            low, high = self.today, self.today + days
        elif operator is Operator.MORE_THAN_AHEAD:
            return f"({day} > {self.params(self.today + days, 'integer')})"
        else:
            raise AssertionError(f"unhandled operator {operator}")
        return (
            f"({day} BETWEEN {self.params(low, 'integer')}"
            f" AND {self.params(high, 'integer')})"
        )

    # -- values, read once from the search copy ------------------------------------

    def value(self, attribute: str, kind: str, aliases: Aliases) -> str:
        """A column of the values layer holding what a condition reads.

        Texts are read with the aliases of the segment applied; items are
        aliased where they are compared, item by item.
        """
        if kind == _PRESENT:
            expression = f"(p.search ? {self.params(attribute, 'text')})"
        else:
            path = self.params([attribute, kind], "text[]")
            if kind == NUMBER:
                expression = f"(p.search #> {path})::float8"
            elif kind == DAY:
                expression = f"(p.search #> {path})::integer"
            elif kind == ITEMS:
                expression = f"(p.search #> {path})"
            else:
                expression = self.aliased(f"(p.search #>> {path})", aliases)
        return self.values.column(expression)

    def aliased(self, text_sql: str, aliases: Aliases) -> str:
        if not aliases:
            return text_sql
        variants = self.params(aliases.variants, "text[]")
        canonicals = self.params(aliases.canonicals, "text[]")
        return f"{alias_module.SQL_FUNCTION}({text_sql}, {variants}, {canonicals})"
