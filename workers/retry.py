"""The backoff between retries of work that failed for a passing reason."""

from __future__ import annotations

MAX_BACKOFF_S = 30.0


def backoff_s(failures: int) -> float:
    """Return the wait before the next attempt: doubling from 0.4 s, capped."""
    return float(min(MAX_BACKOFF_S, 0.2 * 2 ** min(failures, 10)))
