"""The business calendar: what "today" is for date conditions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BusinessClock:
    """Tells the current instant and today's date in the business time zone.

    Today is the date in the business zone, never in the process's own zone.
    ``as_of`` pins today to a fixed date, for demos and what-if runs.
    """

    def __init__(
        self,
        zone: ZoneInfo,
        as_of: date | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.zone = zone
        self.as_of = as_of
        self._now = now

    def now(self) -> datetime:
        """Return the current instant, time-zone aware."""
        return self._now()

    def today(self) -> date:
        """Return today's date in the business time zone."""
        if self.as_of is not None:
            return self.as_of
        return self._now().astimezone(self.zone).date()
