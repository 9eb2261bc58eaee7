"""Consistency of resynthesized clips, in the spirit of Synthio's filter: a resynthesis
that does not carry the same content is flagged (and optionally dropped) before it is
compared with the original.

For speech the check is the word error rate between the clip's transcript and what an
audio-language model transcribes from the resynthesis.
"""

from __future__ import annotations

import re

import numpy as np

DEFAULT_MAX_WER = 0.5
_WORD = re.compile(r"[a-z0-9']+")


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation (what a WER should not count)."""
    return _WORD.findall(text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by word-level edit
    distance. An empty reference gives 0 for an empty hypothesis, else 1."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return float(prev[-1]) / len(ref)
