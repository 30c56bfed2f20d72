"""Compiling a segment to a parameterised SQL condition over persons.

The condition reads the search copy of the attributes (rules.search) in
``<table>.search``: everything that needs parsing or normalising was done in
Python when the person was saved, so SQL only compares texts, floats and day
numbers and gives exactly the answer of rules.segments.matches. Attribute
names and values always travel as parameters (``%s``), never in the SQL text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rules import aliases as alias_module
from rules.aliases import Aliases
from rules.search import DAY, ITEMS, NUMBER, TEXT
from rules.segments import as_aliases, comparable_text, is_date_value
from rules.values import as_date, as_number
from schemas.segments import (
    AllGroup,
    AnyGroup,
    Condition,
    NotGroup,
    Operator,
    SegmentNode,
)

_TABLE_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")

# Day counts past the whole calendar (3.65 million days) give the same answer
# as this one; clamping keeps the SQL arithmetic inside integer range.
_MAX_DAY_COUNT = 4_000_000

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


@dataclass(frozen=True)
class SqlCondition:
    """A SQL boolean expression with ``%s`` placeholders and their values."""

    sql: str
    params: tuple[Any, ...]


def compile_segment(
    node: SegmentNode,
    today: date,
    aliases: Aliases | Mapping[str, str] | None = None,
    *,
    table: str = "p",
) -> SqlCondition:
    """Return the condition, over persons aliased ``table``, of being in node.

    The expression is never NULL. ``today`` is passed as a parameter, so the
    SQL text depends only on the segment. Raises ValueError when table is not
    a plain lower-case identifier.
    """
    if not _TABLE_ALIAS.match(table):
        raise ValueError(f"table alias must be a plain identifier, got {table!r}")
    compiler = _Compiler(table, today, as_aliases(aliases))
    sql = compiler.node(node)
    # Every value is a parameter, so the text holds exactly one % per value.
    if sql.count("%s") != len(compiler.params) or sql.count("%") != len(
        compiler.params
    ):
        raise AssertionError("compiled segment placeholders and values differ")
    return SqlCondition(sql, tuple(compiler.params))


class _Compiler:
    """Builds one expression, collecting its parameters in placeholder order."""

    def __init__(self, table: str, today: date, aliases: Aliases) -> None:
        self.table = table
        self.today = today.toordinal()
        self.aliases = aliases
        self.params: list[Any] = []

    def param(self, value: Any, sql_type: str) -> str:
        self.params.append(value)
        return f"%s::{sql_type}"

    def node(self, node: SegmentNode, negated: bool = False) -> str:
        """The expression of node; negated says an odd number of NOTs enclose it."""
        if isinstance(node, AllGroup):
            parts = [self.node(child, negated) for child in node.all]
            return "(" + " AND ".join(parts) + ")" if parts else "TRUE"
        if isinstance(node, AnyGroup):
            parts = [self.node(child, negated) for child in node.any]
            return "(" + " OR ".join(parts) + ")"
        if isinstance(node, NotGroup):
            return f"(NOT {self.node(node.not_, not negated)})"
        return self.condition(node, negated)

    def condition(self, condition: Condition, negated: bool) -> str:
        positive = _NEGATIVE.get(condition.operator, condition.operator)
        is_negative = positive is not condition.operator

        # Under an odd number of NOTs the hint becomes NOT of a containment test,
        # which the index cannot answer: it would only add a test on every row.
        # The hint is taken first, as its placeholders come first in the text.
        hint: str | None = None
        if is_negative == negated:
            hint = self.index_hint(positive, condition)
        held = f"COALESCE({self.positive(positive, condition)}, FALSE)"
        if hint is not None:
            held = f"({hint} AND {held})"

        return f"(NOT {held})" if is_negative else held

    def index_hint(self, operator: Operator, condition: Condition) -> str | None:
        """A containment test the GIN index on search answers, or None.

        Every person the condition holds for passes the test, so adding it
        changes no answer. It lets PostgreSQL fetch the few candidates through
        the index instead of evaluating the segment for every person. Aliased
        texts are computed in the query, not stored, so they get no hint.
        """
        if self.aliases:
            return None
        value: Any = condition.value
        if operator is Operator.EQ:
            options = [value]
            key = TEXT
        elif operator is Operator.IN:
            options = value
            key = TEXT
        elif operator is Operator.INCLUDES:
            options = [value]
            key = ITEMS
        else:
            return None
        texts = [comparable_text(option, self.aliases) for option in options]
        known = sorted({text for text in texts if text is not None})
        if not known:
            return None
        tests = []
        for text in known:
            stored = [text] if key == ITEMS else text
            document = json.dumps({condition.attribute: {key: stored}})
            tests.append(f"({self.table}.search @> {self.param(document, 'jsonb')})")
        return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"

    def positive(self, operator: Operator, condition: Condition) -> str:
        """The check of a positive operator: true, false or NULL if unknown."""
        # Any: the schema already checked that the value fits the operator.
        value: Any = condition.value
        if operator is Operator.EXISTS:
            return f"(jsonb_typeof({self.entry(condition)}) = 'object')"
        if operator is Operator.EQ:
            return self.text_equals(self.text(condition), value)
        if operator is Operator.IN:
            options = [comparable_text(option, self.aliases) for option in value]
            known = [option for option in options if option is not None]
            if not known:
                return "FALSE"
            return f"({self.text(condition)} = ANY({self.param(known, 'text[]')}))"
        if operator is Operator.CONTAINS:
            needle = comparable_text(value, self.aliases)
            if needle is None:
                return "FALSE"
            haystack = self.text(condition)
            return f"(strpos({haystack}, {self.param(needle, 'text')}) > 0)"
        if operator is Operator.STARTS_WITH:
            prefix = comparable_text(value, self.aliases)
            if prefix is None:
                return "FALSE"
            whole = self.text(condition)
            return f"starts_with({whole}, {self.param(prefix, 'text')})"
        if operator is Operator.INCLUDES:
            return self.includes(condition)
        if operator in _ORDERING_SQL:
            return self.ordering(_ORDERING_SQL[operator], condition)
        return self.relative(operator, condition)

    def entry(self, condition: Condition) -> str:
        """The attribute's search entry (SQL NULL when it is missing)."""
        return f"({self.table}.search -> {self.param(condition.attribute, 'text')})"

    def text(self, condition: Condition) -> str:
        return self.aliased(f"({self.entry(condition)} ->> '{TEXT}')")

    def aliased(self, text_sql: str) -> str:
        if not self.aliases:
            return text_sql
        variants = self.param(self.aliases.variants, "text[]")
        canonicals = self.param(self.aliases.canonicals, "text[]")
        return f"{alias_module.SQL_FUNCTION}({text_sql}, {variants}, {canonicals})"

    def text_equals(self, text_sql: str, value: Any) -> str:
        expected = comparable_text(value, self.aliases)
        if expected is None:
            return "FALSE"
        return f"({text_sql} = {self.param(expected, 'text')})"

    def includes(self, condition: Condition) -> str:
        # The guard keeps jsonb_array_elements_text from raising on a non-array.
        items = f"(CASE WHEN jsonb_typeof({self.field(condition, ITEMS)}) = 'array'"
        items += f" THEN {self.field(condition, ITEMS)} END)"
        item = self.aliased("item.value")
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({items})"
            f" AS item(value) WHERE {self.text_equals(item, condition.value)})"
        )

    def field(self, condition: Condition, key: str) -> str:
        return f"({self.entry(condition)} -> '{key}')"

    def number(self, condition: Condition, key: str, sql_type: str) -> str:
        """A number of the entry, NULL when absent or of another JSON type."""
        checked = f"jsonb_typeof({self.field(condition, key)}) = 'number'"
        return (
            f"(CASE WHEN {checked} THEN {self.field(condition, key)}::{sql_type} END)"
        )

    def ordering(self, sign: str, condition: Condition) -> str:
        if is_date_value(condition.value):
            expected_day = as_date(condition.value)
            if expected_day is None:
                return "FALSE"
            day = self.number(condition, DAY, "integer")
            return f"({day} {sign} {self.param(expected_day.toordinal(), 'integer')})"
        expected = as_number(condition.value)
        if expected is None:
            return "FALSE"
        actual = self.number(condition, NUMBER, "float8")
        return f"({actual} {sign} {self.param(expected, 'float8')})"

    def relative(self, operator: Operator, condition: Condition) -> str:
        """A window around today; placeholders are taken in the text's order."""
        day = self.number(condition, DAY, "integer")
        count: Any = condition.value
        days = min(int(count), _MAX_DAY_COUNT)
        if operator is Operator.WITHIN_LAST:
            low = f"{self.param(self.today, 'integer')} - {self.param(days, 'integer')}"
            return f"({day} BETWEEN {low} AND {self.param(self.today, 'integer')})"
        if operator is Operator.MORE_THAN_AGO:
            low = f"{self.param(self.today, 'integer')} - {self.param(days, 'integer')}"
            return f"({day} < {low})"
        if operator is Operator.WITHIN_NEXT:
            low = self.param(self.today, "integer")
            high = (
                f"{self.param(self.today, 'integer')} + {self.param(days, 'integer')}"
            )
            return f"({day} BETWEEN {low} AND {high})"
        if operator is Operator.MORE_THAN_AHEAD:
            high = (
                f"{self.param(self.today, 'integer')} + {self.param(days, 'integer')}"
            )
            return f"({day} > {high})"
        raise AssertionError(f"unhandled operator {operator}")
