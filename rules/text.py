"""Normalisation of text before it is compared."""

from __future__ import annotations

import re
import unicodedata

# Zero-width characters that HR exports carry invisibly and that must never
# make two visibly equal strings differ.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_WHITESPACE_RUN = re.compile(r"\s+")


def normalize_text(value: str) -> str:
    """Return value as compared: NFKC, no zero-width, one space, case-folded."""
    value = unicodedata.normalize("NFKC", value).translate(_ZERO_WIDTH)
    return _WHITESPACE_RUN.sub(" ", value).strip().casefold()
