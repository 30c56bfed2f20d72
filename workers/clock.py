"""The business calendar: what "today" is for date conditions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


class BusinessClock:
    """Tells the current instant and today's date in the business time zone.

    ``as_of`` pins today to a fixed date, for demos and what-if runs.
    """

    def __init__(self, zone: ZoneInfo, as_of: date | None = None) -> None:
        self.zone = zone
        self.as_of = as_of

    def now(self) -> datetime:
        """Return the current instant."""
        return datetime.now(UTC)

    def today(self) -> date:
        """Return today's date in the business time zone."""
        if self.as_of is not None:
            return self.as_of
        return datetime.now(self.zone).date()
