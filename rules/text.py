"""Normalisation of text before it is compared."""

from __future__ import annotations

import functools
import re
import unicodedata

# Zero-width characters that HR exports carry invisibly and that must never
# make two visibly equal strings differ. The soft hyphen is one of them: it is
# only shown where a line breaks.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_WHITESPACE_RUN = re.compile(r"\s+")


# HR texts repeat a great deal (titles, departments, the values conditions
# name), so normalising each distinct text once pays for itself.
@functools.lru_cache(maxsize=65536)
def normalize_text(value: str) -> str:
    """Return value as compared: NFKC, no zero-width, one space, case-folded.

    Idempotent: a normalised text normalises to itself.
    """
    # Zero-width characters go first: between a letter and its combining mark
    # they would stop NFKC from composing the two.
    value = unicodedata.normalize("NFKC", value.translate(_ZERO_WIDTH))

    # Case folding can undo NFKC ("ǰ" folds to "j" and a combining caron), so
    # the folded text is composed again.
    value = unicodedata.normalize("NFKC", value.casefold())

    return _WHITESPACE_RUN.sub(" ", value).strip()
