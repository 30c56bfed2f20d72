"""A segment's declared aliases: variant spellings replaced by a canonical one.

Semantics, identical in Python and in SQL (``mentorflow_apply_aliases``):

- variants and canonicals are normalised like any compared text (NFKC, no
  zero-width, one space, case-folded); a variant that normalises to nothing is
  ignored;
- a normalised text is read as words separated by single spaces; from the
  first word on, where the words of a variant start at the current word, they
  are replaced by its canonical (the variant with the most words wins), and
  reading goes on after them; else the word is kept;
- replacement is a single pass: a canonical is never itself replaced again;
- two variants that normalise alike keep the canonical declared last.

Aliases apply to both sides of every text comparison (``eq``, ``ne``, ``in``,
``not_in``, ``contains``, ``not_contains``, ``starts_with``, ``includes``,
``excludes``), never to numbers, dates or presence. Only declared aliases
apply; none is ever guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rules.text import normalize_text

# The SQL twin of Aliases.apply, created by migration 002_segment_search.sql.
SQL_FUNCTION = "mentorflow_apply_aliases"


@dataclass(frozen=True)
class Aliases:
    """Normalised alias entries, in the order they are tried at each word."""

    entries: tuple[tuple[tuple[str, ...], str], ...] = ()

    @classmethod
    def build(cls, aliases: Mapping[str, str] | None) -> Aliases:
        """Normalise a variant -> canonical mapping into match order."""
        found: dict[tuple[str, ...], str] = {}
        for variant, canonical in (aliases or {}).items():
            words = normalize_text(variant)
            if words:
                found[tuple(words.split(" "))] = normalize_text(canonical)
        ordered = sorted(found.items(), key=lambda entry: (-len(entry[0]), entry[0]))
        return cls(tuple(ordered))

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def variants(self) -> list[str]:
        """The normalised variants, space-joined, in match order."""
        return [" ".join(words) for words, _ in self.entries]

    @property
    def canonicals(self) -> list[str]:
        """The normalised canonical of each variant, in match order."""
        return [canonical for _, canonical in self.entries]

    def apply(self, text: str) -> str:
        """Return normalised text with every variant replaced by its canonical."""
        if not self.entries or not text:
            return text
        words = text.split(" ")
        result: list[str] = []
        index = 0
        while index < len(words):
            for variant, canonical in self.entries:
                if tuple(words[index : index + len(variant)]) == variant:
                    result.append(canonical)
                    index += len(variant)
                    break
            else:
                result.append(words[index])
                index += 1
        return " ".join(result)


NO_ALIASES = Aliases()
