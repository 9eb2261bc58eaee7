"""Text comparison for transcriptions: normalised words, edit distances, error rates.

A word error rate should not count case or punctuation: both sides are lower-cased and
reduced to runs of letters (of any script: "déjà" is one word), digits and apostrophes
before they are compared.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"(?:[^\W_]|')+")
"""Runs of letters (any script), digits and apostrophes."""


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation (what a WER should not count)."""
    return _WORD.findall(text.lower())


def normalize_chars(text: str) -> str:
    """The normalised words joined by single spaces (what a CER compares)."""
    return " ".join(normalize_words(text))


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, deletions, insertions, each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _rate(ref: Sequence, hyp: Sequence) -> float:
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by word-level edit
    distance. An empty reference gives 0 for an empty hypothesis, else 1."""
    return _rate(normalize_words(reference), normalize_words(hypothesis))


def char_error_rate(reference: str, hypothesis: str) -> float:
    """Character-level edit distance / reference characters, on normalised text (words
    joined by single spaces). An empty reference gives 0 for an empty hypothesis, else 1."""
    return _rate(normalize_chars(reference), normalize_chars(hypothesis))
