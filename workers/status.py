"""What ``mentorflow status`` reports: rules, conflicts, sweep, outbox and lag."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date

from infra.lag import LagReader, PartitionLag
from infra.settings import KafkaSettings
from infra.status_queries import (
    OutboxSummary,
    SweepRow,
    decided_member_counts,
    last_finished_sweep,
    outbox_summary,
)
from infra.store import Store
from rules.conflicts import RulePair
from schemas.errors import MentorflowError
from schemas.segments import Rule
from workers.admin import find_conflicts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleLine:
    """One rule in dashboard order, with the members it and its pair hold."""

    rule: Rule
    # Current memberships this rule decided (the last one to change them).
    decided: int
    # Current members of the rule's program role, whoever decided them.
    pair_members: int


@dataclass(frozen=True)
class StatusReport:
    """Everything ``mentorflow status`` prints."""

    rules: list[RuleLine]
    conflicts: list[tuple[RulePair, int]]
    persons: dict[str, int]
    last_sweep: SweepRow | None
    outbox: OutboxSummary
    lags: list[PartitionLag] | None
    lag_error: str | None = None


def read_status(store: Store, kafka: KafkaSettings, today: date) -> StatusReport:
    """Read the status of the pipeline; an unreachable broker only blanks the lag."""
    with store.transaction() as tx:
        rules = tx.load_rules()
        decided = decided_member_counts(tx)
        pairs = tx.membership_counts()
        persons = tx.count_persons()
        sweep = last_finished_sweep(tx)
        outbox = outbox_summary(tx)
    lines = [
        RuleLine(
            rule,
            decided.get(rule.rule_id, 0),
            pairs.get((rule.program_id, rule.role), 0),
        )
        for rule in rules
    ]
    conflicts = sorted(conflict_counts(store, today).items())

    lags: list[PartitionLag] | None = None
    lag_error = None
    try:
        with LagReader.for_worker(kafka) as reader:
            lags = reader.read()
    except MentorflowError as error:
        lag_error = str(error)
    return StatusReport(lines, conflicts, persons, sweep, outbox, lags, lag_error)


def conflict_counts(store: Store, today: date) -> Counter[RulePair]:
    """Count, per add and remove rule pair, the active people both match.

    Computed in Python over every person, in chunks (rules.conflicts through
    workers.admin.find_conflicts): it reads the whole persons table, so on a
    large one ``status`` takes as long as a sweep's evaluation. Swap in a
    set-based count here once segments compile to SQL.
    """
    return find_conflicts(store, today)
