"""Read-only queries behind ``mentorflow status``, beside the store's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from infra.store import StoreTransaction


@dataclass(frozen=True)
class SweepRow:
    """One sweep as recorded; finished_at is None while it runs (or if it died)."""

    sweep_id: int
    started_at: datetime
    finished_at: datetime | None
    persons: int
    changes: int


@dataclass(frozen=True)
class OutboxSummary:
    """How many events wait in the outbox, and since when the oldest waits."""

    backlog: int
    oldest_at: datetime | None


def decided_member_counts(tx: StoreTransaction) -> dict[str, int]:
    """Return how many current memberships each rule (or reason) decided."""
    rows = tx.conn.execute(
        "SELECT decided_by, count(*) FROM memberships GROUP BY decided_by"
    ).fetchall()
    return {decided_by: int(count) for decided_by, count in rows}


def last_finished_sweep(tx: StoreTransaction) -> SweepRow | None:
    """Return the most recently finished sweep, or None before the first."""
    row = tx.conn.execute(
        "SELECT id, started_at, finished_at, persons, changes FROM sweeps"
        " WHERE finished_at IS NOT NULL ORDER BY finished_at DESC, id DESC LIMIT 1"
    ).fetchone()
    return SweepRow(*row) if row else None


def outbox_summary(tx: StoreTransaction) -> OutboxSummary:
    """Return the outbox backlog and the creation time of its oldest event."""
    row = tx.conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    if row is None:
        return OutboxSummary(0, None)
    return OutboxSummary(int(row[0]), row[1])
