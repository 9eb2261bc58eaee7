"""Do a speech model's own transcriptions look like transcriptions at all?

An audit of an audio-language model in ``generated`` mode (and at the outputs access level)
scores the text the model itself decoded. When that text is garbage (a multilingual model
decoding in the wrong language, the wrong task, broken weights) the indicators score the
garbage, and "no membership signal" means nothing. :func:`check_transcripts` measures
two things after decoding and says when a run must carry a warning:

- **degenerate hypotheses**: a word or a short phrase repeated over and over (``" And And
  And ..."``, ``" It's's's's ..."``), or far more words than the audio's duration can hold
  (:func:`degenerate_reason`);
- **word error rate** against the clips' own transcripts, where the dataset has them: on
  the known non-members (clips the model never saw: its honest skill) and on the members.
  Only when both are far off do the transcriptions read as wrong: a model that transcribes
  its members and garbles the non-members is memorizing (the very signal an audit looks
  for; the demo's ``lalm-small`` does exactly this), not misconfigured.

The thresholds are far from any healthy model: the demo's reference models and the real
Whisper checkpoints stay well below them (README, "Language and transcription check").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from core.data.text import normalize_chars, normalize_words, word_error_rate

MAX_WORDS_PER_SECOND = 7.0
"""Fast read speech is about 4 words per second; more than 7 is a runaway decode."""
MAX_MEDIAN_WER = 0.8
"""Median word error rate, on the non-members and on the members alike, above which the
transcriptions read as wrong."""
MAX_DEGENERATE_SHARE = 0.25
"""Share of degenerate hypotheses above which the transcriptions read as wrong."""
MIN_CLIPS = 3
"""Fewer non-members with transcripts than this: no WER judgement."""
N_EXAMPLES = 3


def degenerate_reason(text: str, duration_s: float | None = None) -> str | None:
    """Why a hypothesis is degenerate, or None when it is not.

    A hypothesis is degenerate when one word makes up at least half of its (four or more)
    words, when fewer than half of its word trigrams (six or more words) or of its character
    trigrams (20 or more characters) are distinct, or when it holds more than
    :data:`MAX_WORDS_PER_SECOND` words per second of audio.
    """
    words = normalize_words(text)
    if len(words) >= 4:
        word, n = Counter(words).most_common(1)[0]
        if n / len(words) >= 0.5:
            return f"repeats {word!r} {n} times"
    if len(words) >= 6:
        grams = list(zip(words, words[1:], words[2:]))
        if len(set(grams)) / len(grams) < 0.5:
            return "repeats a phrase"
    chars = normalize_chars(text)
    if len(chars) >= 20:
        grams3 = [chars[i:i + 3] for i in range(len(chars) - 2)]
        if len(set(grams3)) / len(grams3) < 0.3:
            return "repeats a fragment"
    if duration_s and duration_s > 0 and len(words) / duration_s > MAX_WORDS_PER_SECOND:
        return f"{len(words)} words in {duration_s:.1f} s of audio"
    return None


@dataclass(frozen=True)
class TranscriptCheck:
    """What :func:`check_transcripts` measured.

    n : hypotheses checked.
    degenerate : how many are degenerate.
    n_wer : non-members whose hypothesis was compared with their transcript (0: none had one).
    median_wer : their median word error rate (None when fewer than :data:`MIN_CLIPS`).
    n_wer_members, median_wer_members : the same on the members.
    examples : up to :data:`N_EXAMPLES` ``{"clip_hash", "text", "reason"}`` of the worst.
    language : the language the model decoded in, when it chose one (for the hint).
    """

    n: int
    degenerate: int
    n_wer: int
    median_wer: float | None
    examples: tuple[Mapping[str, str], ...] = field(default_factory=tuple)
    language: str = ""
    n_wer_members: int = 0
    median_wer_members: float | None = None

    @property
    def degenerate_share(self) -> float:
        return self.degenerate / self.n if self.n else 0.0

    @property
    def looks_wrong(self) -> bool:
        """True when the run's transcriptions look wrong (a warning is due)."""
        medians = [m for m in (self.median_wer, self.median_wer_members) if m is not None]
        bad_wer = bool(medians) and min(medians) > MAX_MEDIAN_WER
        return bad_wer or self.degenerate_share > MAX_DEGENERATE_SHARE

    def warning(self) -> str | None:
        """The sentence every surface shows when :attr:`looks_wrong`, else None."""
        if not self.looks_wrong:
            return None
        found = []
        if self.median_wer is not None:
            found.append(f"median WER {self.median_wer:.2f} on {self.n_wer} non-members")
        if self.median_wer_members is not None:
            found.append(f"{self.median_wer_members:.2f} on {self.n_wer_members} members")
        if self.degenerate:
            found.append(f"{self.degenerate} of {self.n} degenerate (repetitions or runaway length)")
        shown = "; ".join(f"{e['text'][:60]!r}" for e in self.examples)
        lang = f" (decoded in {self.language})" if self.language else ""
        return (f"the model's transcriptions look wrong{lang}: {', '.join(found)}; check language/task "
                f"(--target-option language=xx) before reading this result" + (f"; e.g. {shown}" if shown else ""))

    def to_dict(self) -> dict:
        return {"n": self.n, "degenerate": self.degenerate, "n_wer": self.n_wer, "median_wer": self.median_wer,
                "n_wer_members": self.n_wer_members, "median_wer_members": self.median_wer_members, "examples": [dict(e) for e in self.examples], "language": self.language,
                "looks_wrong": self.looks_wrong, "warning": self.warning()}


def check_transcripts(
    hypotheses: Mapping[str, str],
    *,
    references: Mapping[str, str] | None = None,
    labels: Mapping[str, int] | None = None,
    durations: Mapping[str, float] | None = None,
    language: str = "",
) -> TranscriptCheck:
    """Check a run's decoded texts.

    Parameters
    ----------
    hypotheses : clip hash -> the text the model decoded.
    references : clip hash -> the clip's own transcript ("" when none).
    labels : clip hash -> 1 member, 0 non-member; the WER is taken on each label apart.
    durations : clip hash -> seconds of audio (for the runaway-length check).
    language : the language the model decoded in, named in the warning.
    """
    references, labels, durations = references or {}, labels or {}, durations or {}
    reasons = {h: degenerate_reason(t, durations.get(h)) for h, t in hypotheses.items()}
    def wer_of(label: int) -> dict[str, float]:
        return {h: word_error_rate(references[h], t) for h, t in hypotheses.items()
                if labels.get(h) == label and str(references.get(h) or "").strip()}

    def median_of(w: dict[str, float]) -> float | None:
        return float(np.median(list(w.values()))) if len(w) >= MIN_CLIPS else None

    wers, member_wers = wer_of(0), wer_of(1)
    median = median_of(wers)
    bad = [h for h, r in reasons.items() if r]
    worst = bad + sorted((h for h in wers if h not in reasons or not reasons[h]), key=lambda h: -wers[h])
    examples = tuple({"clip_hash": h, "text": hypotheses[h],
                      "reason": reasons.get(h) or f"WER {wers[h]:.2f} against {references[h]!r}"} for h in worst[:N_EXAMPLES])
    return TranscriptCheck(n=len(hypotheses), degenerate=len(bad), n_wer=len(wers), median_wer=median,
                           examples=examples, language=language, n_wer_members=len(member_wers),
                           median_wer_members=median_of(member_wers))


def transcript_check_of(decoded: Mapping[str, str], clips, language: str = "") -> TranscriptCheck:
    """:func:`check_transcripts` of a run's decoded texts against its clips table (columns
    ``clip_hash``, ``y``, ``text`` and, when present, ``duration``)."""
    hashes: Sequence[str] = clips["clip_hash"].tolist()
    refs = dict(zip(hashes, clips["text"].fillna("").astype(str)))
    labels = dict(zip(hashes, (int(v) for v in clips["y"])))
    durs = dict(zip(hashes, (float(d) for d in clips["duration"]))) if "duration" in clips else {}
    return check_transcripts({h: decoded[h] for h in hashes if h in decoded}, references=refs, labels=labels,
                             durations=durs, language=language)
