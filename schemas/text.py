"""Normalisation of text before it is compared."""

from __future__ import annotations

import functools
import re
import unicodedata

# Characters that HR exports carry invisibly and that must never make two
# visibly equal strings differ: the zero-width ones, the soft hyphen (only
# shown where a line breaks), the marks and embeddings that set the direction
# of right-to-left text, and the Mongolian vowel separator, which has no width
# since Unicode 6.3. All are removed, so they join the characters beside them.
_INVISIBLE = dict.fromkeys(
    map(
        ord,
        "\u200b\u200c\u200d\u2060\ufeff\u00ad"
        "\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
        "\u2066\u2067\u2068\u2069\u180e",
    )
)
_WHITESPACE_RUN = re.compile(r"\s+")


# HR texts repeat a great deal (titles, departments, the values conditions
# name), so normalising each distinct text once pays for itself.
@functools.lru_cache(maxsize=65536)
def normalize_text(value: str) -> str:
    """Return value as compared: NFKC, no invisible mark, one space, case-folded.

    Idempotent: a normalised text normalises to itself.
    """
    # Invisible characters go first: between a letter and its combining mark
    # they would stop NFKC from composing the two.
    value = unicodedata.normalize("NFKC", value.translate(_INVISIBLE))

    # Case folding can undo NFKC ("ǰ" folds to "j" and a combining caron), so
    # the folded text is composed again.
    value = unicodedata.normalize("NFKC", value.casefold())

    return _WHITESPACE_RUN.sub(" ", value).strip()
