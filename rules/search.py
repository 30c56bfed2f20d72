"""The search copy of a person's attributes, which compiled segments read in SQL.

Every attribute that is present and not null gets one entry holding what the
Python evaluation would read from it, computed by the same functions:

- ``t``: the comparable text of a scalar (rules.values.as_text);
- ``n``: the value as a finite number (rules.values.as_number);
- ``d``: the value as a calendar date, as its proleptic ordinal day number
  (rules.values.as_date), so SQL compares integers and never parses a date;
- ``i``: the comparable texts of the items of a list, or of the scalar itself
  (``includes`` treats a scalar as a one-element list).

A key is absent where the Python reading is None, so SQL and Python agree by
construction on text normalisation, number syntax and date syntax.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from rules.values import as_date, as_number, as_text

TEXT = "t"
NUMBER = "n"
DAY = "d"
ITEMS = "i"

# A person's search copy: an entry for each attribute that is present and not
# null. Entries may be shared between documents: nothing changes one.
SearchDocument = dict[str, dict[str, Any]]


def search_document(attributes: Mapping[str, Any]) -> SearchDocument:
    """Return the search copy of a person's attributes."""
    return {
        name: _scalar_entry(value) if _is_scalar(value) else search_entry(value)
        for name, value in attributes.items()
        if value is not None
    }


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float)


# HR values repeat a great deal (titles, departments, levels, dates), so the
# entry of each distinct scalar is worked out once. typed: True and 1 differ.
@functools.lru_cache(maxsize=65536, typed=True)
def _scalar_entry(value: str | int | float) -> dict[str, Any]:
    return search_entry(value)


def search_entry(value: Any) -> dict[str, Any]:
    """Return what the segment operators read from one attribute value."""
    entry: dict[str, Any] = {}
    text = as_text(value)
    if text is not None:
        entry[TEXT] = text
    number = as_number(value)
    if number is not None:
        entry[NUMBER] = number
    day = as_date(value)
    if day is not None:
        entry[DAY] = day.toordinal()
    items = value if isinstance(value, list) else [value]
    entry[ITEMS] = [text for text in map(as_text, items) if text is not None]
    return entry
