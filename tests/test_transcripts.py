"""The transcription check: degenerate hypotheses and word error rates of a speech model's
own transcriptions, and when a run must carry the warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.text import normalize_words, word_error_rate
from core.data.transcripts import MAX_MEDIAN_WER, check_transcripts, degenerate_reason, transcript_check_of

# what a multilingual Whisper base decodes from English demo clips with no language forced
GARBAGE = [" www www www www www www www www", " Who M N O O O O O O O O O", " And And And And And And",
           " It's's's's's's's's's's's's's's's's", " la la la la la la la la la la"]
HEALTHY = ["Who kept one heavy candle at a gold mill?", "The broken glass whistle in the attic in winter.",
           " my vans are cried again in the attic.", "One two three four five six seven eight nine ten.",
           "Ad Ad", "the the cat sat on the mat and the dog sat on the log"]


@pytest.mark.parametrize("text", GARBAGE)
def test_repetitions_are_degenerate(text):
    assert degenerate_reason(text, 3.0) is not None


@pytest.mark.parametrize("text", HEALTHY)
def test_ordinary_sentences_are_not(text):
    assert degenerate_reason(text, 3.0) is None


def test_a_runaway_decode_is_longer_than_its_audio_can_hold():
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november".split()
    text = " ".join(words)
    assert degenerate_reason(text, 1.0) == "14 words in 1.0 s of audio"
    assert degenerate_reason(text, 4.0) is None and degenerate_reason(text, None) is None


def test_non_latin_scripts_are_words_too():
    assert normalize_words("Déjà vu, Привет мир!") == ["déjà", "vu", "привет", "мир"]
    assert word_error_rate("Привет мир", "привет мир") == 0.0


def _check(hyps, refs, labels):
    hashes = [f"h{i}" for i in range(len(hyps))]
    return check_transcripts(dict(zip(hashes, hyps)), references=dict(zip(hashes, refs)), labels=dict(zip(hashes, labels)))


def test_medians_are_taken_per_label_against_an_independent_computation():
    rng = np.random.default_rng(0)
    vocab = "a b c d e f g h".split()
    refs = [" ".join(rng.choice(vocab, 6)) for _ in range(30)]
    hyps = [" ".join(rng.choice(vocab, int(rng.integers(3, 8)))) for _ in range(30)]
    labels = [i % 2 for i in range(30)]
    got = _check(hyps, refs, labels)

    def wer(r, h):  # a slow reference: word-level Levenshtein by full table
        r, h = r.split(), h.split()
        d = np.zeros((len(r) + 1, len(h) + 1), int)
        d[:, 0], d[0, :] = range(len(r) + 1), range(len(h) + 1)
        for i in range(1, len(r) + 1):
            for j in range(1, len(h) + 1):
                d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (r[i - 1] != h[j - 1]))
        return d[-1, -1] / len(r)

    for label, median, n in ((0, got.median_wer, got.n_wer), (1, got.median_wer_members, got.n_wer_members)):
        want = [wer(r, h) for r, h, y in zip(refs, hyps, labels) if y == label]
        assert n == 15 and median == pytest.approx(float(np.median(want)))


def test_the_warning_fires_when_both_labels_are_garbled_or_decodes_degenerate():
    refs = ["the cat sat on the mat"] * 8
    right = ["the cat sat on the mat"] * 8
    wrong = ["le chat est assis sur le tapis"] * 8
    y = [1] * 4 + [0] * 4
    assert not _check(right, refs, y).looks_wrong
    bad = _check(wrong, refs, y)
    assert bad.looks_wrong and bad.median_wer > MAX_MEDIAN_WER
    assert "median WER 1.17 on 4 non-members, 1.17 on 4 members" in bad.warning() and "language/task" in bad.warning()
    # a model that transcribes its members and garbles the rest is memorizing: no warning
    memorizing = _check(right[:4] + wrong[4:], refs, y)
    assert memorizing.median_wer_members == 0.0 and memorizing.median_wer == pytest.approx(7 / 6) and not memorizing.looks_wrong
    # without transcripts only degeneracy speaks
    loops = check_transcripts({f"h{i}": GARBAGE[i % 5] for i in range(8)})
    assert loops.median_wer is None and loops.degenerate == 8 and loops.looks_wrong
    assert len(loops.examples) == 3 and loops.to_dict()["warning"] == loops.warning()
    few = _check(wrong[:2], refs[:2], [0, 1])  # too few to judge by WER
    assert few.median_wer is None and not few.looks_wrong


def test_a_runs_clip_table_feeds_the_check():
    clips = pd.DataFrame({"clip_hash": ["a", "b", "c", "d"], "y": [1, 0, 0, 0], "text": ["one two", "three four", None, "five six"],
                          "duration": [1.0, 1.0, 1.0, 0.2]})
    got = transcript_check_of({"a": "one two", "b": "three four", "c": "x", "d": "five six seven eight"}, clips, language="English")
    assert got.n == 4 and got.n_wer == 2 and got.degenerate == 1  # 4 words in 0.2 s
    assert got.examples[0]["clip_hash"] == "d" and got.language == "English"
