"""Normalisation of text before it is compared.

The normaliser lives in schemas, which may import nothing of ours, so that
segment validation refuses a condition on text that normalises to nothing with
the very function the evaluation uses.
"""

from __future__ import annotations

from schemas.text import normalize_text

__all__ = ["normalize_text"]
