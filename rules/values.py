"""Reading attribute values as the types a condition compares."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

from rules.text import normalize_text


def as_text(value: Any) -> str | None:
    """Return the comparable text of a scalar, or None for a non-scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def as_number(value: Any) -> float | None:
    """Return value as a finite number, or None when it is not one.

    Text is read as float() reads it, except digits grouped by underscores
    ("1_000"): JSON and SQL have no such numbers, so nor does a condition.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and "_" in value:
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    # An integer past the float range is no comparable number either.
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def as_date(value: Any) -> date | None:
    """Return value as a calendar date, or None when it is not one.

    An HR date is a date: ``2024-03-01`` stays the first of March. A full
    timestamp keeps the date it names; it is never moved to another time zone.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None
