"""Which language a speech model transcribes in: names, codes, and the choice a run records.

A multilingual Whisper left to itself picks a language per clip and, on short or unusual
audio, often none at all: its greedy decode then degenerates into repetitions
(``" And And And ..."``), and every membership indicator scores that garbage. The adapter
therefore always decodes with ``task="transcribe"`` and one language per run, chosen in
this order (:class:`LanguageChoice` records which):

1. ``target option``: ``--target-option language=fr`` (or the page's Language field);
2. ``dataset``: the language the dataset's own metadata names (Common Voice's ``locale``,
   a ``language``/``locale`` column, lhotse's supervision language), its most common one;
3. ``detected``: Whisper's language identification pooled over many of the dataset's clips,
   a majority vote (ties broken by the mean log-probability), far more robust than one
   clip's guess.

The language is part of the target's fingerprint, so evidence decoded in one language is
never read as another's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

LANGUAGE_SOURCES = ("target option", "dataset", "detected", "request")

DETECT_CLIPS = 32
"""Clips language identification is pooled over (spread evenly over the dataset)."""

_NAMES: dict[str, str] | None = None


def language_names() -> dict[str, str]:
    """Whisper's language codes -> English names (``"en" -> "english"``)."""
    global _NAMES
    if _NAMES is None:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        _NAMES = dict(LANGUAGES)
    return _NAMES


def language_name(code: str) -> str:
    """``"fr" -> "French"``; an unknown code is returned as it is."""
    return language_names().get(code, code).title() if code else ""


def normalize_language(value: str, known: Iterable[str] | None = None) -> str:
    """A language code from what a user or a dataset writes: ``"en"``, ``"en-US"``,
    ``"en_us"``, ``"English"``, ``"<|en|>"`` all give ``"en"``.

    Parameters
    ----------
    value : the language as written.
    known : the codes the model knows (default: Whisper's); the result is one of them.

    Raises
    ------
    ValueError
        a language the model does not know (the message lists a few it does).
    """
    codes = set(known) if known is not None else set(language_names())
    raw = str(value).strip()
    text = raw.strip("<|>").strip().lower().replace("_", "-")
    by_name = {name: code for code, name in language_names().items()}
    for cand in (text, text.split("-")[0], by_name.get(text, "")):
        if cand and cand in codes:
            return cand
    shown = ", ".join(sorted(codes)[:12]) + (" ..." if len(codes) > 12 else "")
    raise ValueError(f"unknown language {raw!r} for this model; it knows: {shown}")


@dataclass(frozen=True)
class LanguageChoice:
    """The language a run decoded in, and where it came from.

    language : the code (``"en"``).
    source : one of :data:`LANGUAGE_SOURCES`.
    votes : for ``detected``, clips per identified language; for ``dataset``, clips per
        language the metadata names.
    """

    language: str
    source: str
    votes: Mapping[str, int] = field(default_factory=dict)

    def text(self) -> str:
        """``"English (en), detected over 32 clips: en 30, de 2"``."""
        head = f"{language_name(self.language)} ({self.language})"
        if self.source == "detected":
            n = sum(self.votes.values())
            tally = ", ".join(f"{k} {v}" for k, v in sorted(self.votes.items(), key=lambda kv: (-kv[1], kv[0])))
            return f"{head}, detected over {n} clip(s): {tally}"
        if self.source == "dataset":
            others = {k: v for k, v in self.votes.items() if k != self.language}
            extra = f" (also {', '.join(f'{k} {v}' for k, v in sorted(others.items()))} clip(s))" if others else ""
            return f"{head}, from the dataset's metadata{extra}"
        return f"{head}, from the {self.source}"

    def to_dict(self) -> dict:
        return {"language": self.language, "source": self.source, "votes": dict(self.votes), "text": self.text()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LanguageChoice":
        return cls(str(d["language"]), str(d["source"]), dict(d.get("votes") or {}))


def pooled_vote(logprobs: np.ndarray, codes: list[str]) -> tuple[str, dict[str, int]]:
    """The language of a set of clips from their per-clip language log-probabilities.

    Parameters
    ----------
    logprobs : ``[n_clips, n_languages]`` log-probabilities over the model's languages.
    codes : the language code of each column.

    Returns
    -------
    (code, votes): the language most clips pick (ties broken by the highest mean
    log-probability), and the clips each picked language got.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[0] == 0 or lp.shape[1] != len(codes):
        raise ValueError(f"expected [n_clips >= 1, {len(codes)}] log-probabilities, got shape {lp.shape}")
    picks = lp.argmax(axis=1)
    counts = Counter(int(i) for i in picks)
    mean = lp.mean(axis=0)
    best = max(counts, key=lambda i: (counts[i], mean[i]))
    return codes[best], {codes[i]: int(n) for i, n in counts.items()}


def dataset_language(counts: Mapping[str, int], known: Iterable[str] | None = None) -> LanguageChoice | None:
    """The language a dataset's metadata names (its most common, normalised), or None when
    it names none the model knows."""
    known = list(known) if known is not None else None
    tally: Counter[str] = Counter()
    for raw, n in counts.items():
        try:
            tally[normalize_language(raw, known)] += int(n)
        except ValueError:
            continue
    if not tally:
        return None
    code = max(tally, key=lambda c: (tally[c], c))
    return LanguageChoice(code, "dataset", dict(tally))


def declared_languages(spec: str) -> list[str]:
    """The languages a target can be told to transcribe, from its files alone (no model
    loaded): a multilingual Whisper folder (Hugging Face ``generation_config.json`` listing
    ``lang_to_id``, or a CTranslate2 ``config.json`` with ``lang_ids``), or a remote API
    (any of Whisper's). Empty for every other target."""
    import json
    from pathlib import Path

    if spec.startswith(("http://", "https://")):
        return sorted(language_names())
    folder = Path(spec)
    if spec.startswith("zoo:") or not folder.is_dir():
        return []
    try:
        gen = json.loads((folder / "generation_config.json").read_text(encoding="utf-8")) if (folder / "generation_config.json").is_file() else {}
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8")) if (folder / "config.json").is_file() else {}
    except (OSError, ValueError):
        return []
    if gen.get("is_multilingual") and gen.get("lang_to_id"):
        return sorted(str(t).strip("<|>") for t in gen["lang_to_id"])
    if cfg.get("lang_ids") and (folder / "model.bin").is_file() and _ct2_vocab_size(folder) >= MULTILINGUAL_VOCAB:
        return sorted(language_names())
    return []


MULTILINGUAL_VOCAB = 51865
"""Whisper's English-only checkpoints have 51864 tokens, the multilingual ones more."""


def _ct2_vocab_size(folder) -> int:
    """Entries of a CTranslate2 folder's ``vocabulary.txt`` or ``vocabulary.json`` (0: neither)."""
    import json

    if (folder / "vocabulary.txt").is_file():
        with open(folder / "vocabulary.txt", "rb") as f:
            return sum(1 for _ in f)
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    return 0


def spread(n: int, k: int = DETECT_CLIPS) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})
