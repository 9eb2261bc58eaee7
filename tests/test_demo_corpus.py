"""Tests for the bundled demo corpus generator (eSpeak speech, procedural sounds)."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from core.recipes.corpus.corpus import (
    DATASETS,
    METADATA_COLUMNS,
    DemoClip,
    build_corpus,
    sound_pool,
    speech_pool,
    text_half,
)
from core.data.espeak import ESPEAK_SAMPLE_RATE, OTHER_SPEAKERS, SPEAKERS, VoiceSpec, synthesize
from core.recipes.corpus.grammar import MAX_WORDS, MIN_WORDS, sentences
from core.recipes.corpus.sounds import adsr, render_event

N = 4
TEXT = "The quiet farmer painted a small boat near the harbor."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, build_corpus(out, seed=0, n_per_class=N)


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == METADATA_COLUMNS
        return list(reader)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _hf_fraction(x: np.ndarray, sr: int, *, cutoff: float = 4200.0) -> float:
    f, pxx = signal.welch(x, fs=sr, nperseg=512)
    return float(pxx[f > cutoff].sum() / pxx.sum())


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2)))


# ---------------------------------------------------------------- eSpeak


def test_espeak_speech_is_nonsilent_and_speech_length() -> None:
    audio, sr = synthesize(TEXT, voice=SPEAKERS[0])
    assert sr == ESPEAK_SAMPLE_RATE == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = audio.size / sr
    assert 1.0 < seconds < 6.0  # ten words at 150-210 words per minute
    assert np.max(np.abs(audio)) <= 1.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.02
    # Voiced speech: most energy between 100 Hz and 4 kHz.
    f, pxx = signal.welch(audio, fs=sr, nperseg=1024)
    assert pxx[(f > 100) & (f < 4000)].sum() / pxx.sum() > 0.8


def test_speakers_are_distinct_and_produce_different_audio() -> None:
    assert len(SPEAKERS) >= 8
    assert len({v.speaker_id for v in SPEAKERS}) == len(SPEAKERS)
    assert len({(v.name, v.pitch, v.rate) for v in SPEAKERS}) == len(SPEAKERS)
    digests = set()
    for v in SPEAKERS:
        audio, _ = synthesize(TEXT, voice=v)
        digests.add(hashlib.sha256(audio.tobytes()).hexdigest())
    assert len(digests) == len(SPEAKERS)
    # A higher pitch setting of the same voice raises the fundamental.
    low, _ = synthesize(TEXT, voice=VoiceSpec(name="en-us", pitch=20, speaker_id="lo"))
    high, _ = synthesize(TEXT, voice=VoiceSpec(name="en-us", pitch=90, speaker_id="hi"))
    f0_low = np.nanmedian(_f0(low))
    f0_high = np.nanmedian(_f0(high))
    assert f0_high > 1.3 * f0_low


def _f0(x: np.ndarray, sr: int = ESPEAK_SAMPLE_RATE) -> np.ndarray:
    """Autocorrelation pitch per 40 ms frame over 60-400 Hz; NaN for quiet frames."""
    n = int(0.04 * sr)
    out = []
    thresh = 0.3 * np.sqrt(np.mean(x.astype(np.float64) ** 2))
    for i in range(0, x.size - n, n):
        fr = x[i : i + n].astype(np.float64)
        if np.sqrt(np.mean(fr**2)) < thresh:
            out.append(np.nan)
            continue
        ac = np.correlate(fr, fr, "full")[n - 1 :]
        lo, hi = int(sr / 400), int(sr / 60)
        out.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return np.array(out)


def test_espeak_does_not_depend_on_previous_utterances() -> None:
    first, _ = synthesize(TEXT, voice=SPEAKERS[1])
    for v in SPEAKERS[2:5]:
        synthesize("Something else entirely, said first.", voice=v)
    again, _ = synthesize(TEXT, voice=SPEAKERS[1])
    np.testing.assert_array_equal(first, again)


def test_unknown_voice_raises() -> None:
    with pytest.raises(ValueError, match="no voice"):
        synthesize(TEXT, voice=VoiceSpec(name="xx-nonexistent-voice"))
    # The library is still usable afterwards.
    audio, _ = synthesize("Still here.", voice=SPEAKERS[0])
    assert audio.size > 0


# ---------------------------------------------------------------- grammar


def test_grammar_is_deterministic_unique_and_bounded() -> None:
    a = sentences(np.random.default_rng(7), 300)
    b = sentences(np.random.default_rng(7), 300)
    c = sentences(np.random.default_rng(8), 300)
    assert a == b
    assert len(set(a)) == 300
    assert len(set(a) & set(c)) <= 1
    for s in a:
        assert MIN_WORDS <= len(s.split()) <= MAX_WORDS
        assert s[0].isupper() and s[-1] in ".?"
    only_half = sentences(np.random.default_rng(7), 50, accept=lambda s: text_half(s) == 1)
    assert all(hashlib.sha256(s.encode()).digest()[0] % 2 == 1 for s in only_half)


# ---------------------------------------------------------------- sounds


def _simple_events(kind: str, n: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(123)
    out = []
    for _ in range(2000):
        x, cap = render_event(rng, sr=16000)
        if kind in cap and "followed by" not in cap and "overlapping" not in cap:
            out.append((x, cap))
            if len(out) == n:
                break
    assert len(out) == n
    return out


def test_sound_event_tone_frequency_matches_caption() -> None:
    for x, cap in _simple_events("sine tone", 4):
        f_cap = float(re.search(r"at (\d+) Hz", cap).group(1))
        spec = np.abs(np.fft.rfft(x.astype(np.float64)))
        f_peak = np.fft.rfftfreq(x.size, 1 / 16000)[np.argmax(spec)]
        assert abs(f_peak - f_cap) <= 1.5, cap
        register = "low" if f_cap < 250 else ("mid-range" if f_cap < 1000 else "high")
        assert f" {register} sine tone" in cap


def test_sound_event_chirp_direction_matches_caption() -> None:
    for x, cap in _simple_events("chirp", 4):
        half = x.size // 2
        centroid = []
        for seg in (x[:half], x[half:]):
            f, pxx = signal.welch(seg, fs=16000, nperseg=1024)
            centroid.append(float((f * pxx).sum() / pxx.sum()))
        assert (centroid[1] > centroid[0]) == ("rising" in cap), cap


def test_sound_events_deterministic_bounded_and_described() -> None:
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    words = set()
    for _ in range(40):
        x, cap = render_event(rng_a, sr=16000)
        y, cap_b = render_event(rng_b, sr=16000)
        np.testing.assert_array_equal(x, y)
        assert cap == cap_b
        assert x.dtype == np.float32
        seconds = x.size / 16000
        assert 1.0 <= seconds <= 3.0 + 1e-9
        peak = float(np.max(np.abs(x)))
        assert 0.08 - 1e-6 <= peak <= 0.8 + 1e-6
        loud = "quiet" if peak < 0.2 else ("moderately loud" if peak < 0.45 else "loud")
        length = "short" if seconds < 1.5 else ("medium-length" if seconds < 2.3 else "long")
        assert cap.endswith(f", {length} and {loud}.")
        words.update(k for k in ("tone", "chirp", "note", "noise", "clicks", "bell") if k in cap)
    assert len(words) >= 5


def test_adsr_envelope_shape() -> None:
    sr = 1000
    env = adsr(1000, sr, attack=0.1, decay=0.1, sustain=0.5, release=0.2)
    assert env.shape == (1000,)
    assert env[0] == 0.0 and env[-1] == 0.0
    assert np.isclose(env.max(), 1.0, atol=0.011)
    np.testing.assert_allclose(env[200:800], 0.5)
    assert np.all(np.diff(env[:100]) > 0) and np.all(np.diff(env[800:]) < 0)


# ---------------------------------------------------------------- corpus


def test_corpus_layout_and_metadata(corpus: tuple[Path, dict]) -> None:
    out, summary = corpus
    assert set(summary["datasets"]) == set(DATASETS)
    total = 0
    for name in DATASETS:
        root = out / name
        rows = _rows(root)
        assert [r["label"] for r in rows].count("member") == N
        assert [r["label"] for r in rows].count("nonmember") == N
        assert summary["datasets"][name]["n_members"] == N
        n_bytes = 0
        for r in rows:
            folder = "members" if r["label"] == "member" else "nonmembers"
            assert r["path"].startswith(folder + "/") and r["path"].endswith(".flac")
            assert r["split"] == ("train" if r["label"] == "member" else "heldout")
            audio_path = root / r["path"]
            info = sf.info(audio_path)
            assert (info.format, info.subtype, info.samplerate, info.channels) == (
                "FLAC", "PCM_16", 16000, 1,
            )
            assert 0.5 < info.duration < 5.0
            assert audio_path.with_suffix(".txt").read_text(encoding="utf-8").strip() == r["text"]
            n_bytes += audio_path.stat().st_size
            if name == "demo-sounds":
                assert r["speaker"] == "" and r["source"] == "procedural"
            else:
                assert r["speaker"] in {v.speaker_id for v in SPEAKERS}
                assert r["source"] == "espeak-ng"
                assert MIN_WORDS <= len(r["text"].split()) <= MAX_WORDS
        assert n_bytes == summary["datasets"][name]["bytes"]
        total += n_bytes
        assert len(list((root / "members").glob("*.flac"))) == N
        assert len(list((root / "nonmembers").glob("*.flac"))) == N
    assert summary["total_bytes"] == total


def test_corpus_is_byte_identical_on_rebuild(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = corpus
    synthesize("An unrelated sentence in between.", voice=SPEAKERS[3])
    again = build_corpus(tmp_path, seed=0, n_per_class=N)
    assert again == summary
    for name in DATASETS:
        assert _files(out / name) == _files(tmp_path / name)
    other = build_corpus(tmp_path / "seed1", seed=1, n_per_class=N)
    texts0 = {r["text"] for r in _rows(out / "demo-speech")}
    texts1 = {r["text"] for r in _rows(tmp_path / "seed1" / "demo-speech")}
    assert other["datasets"]["demo-speech"]["n_members"] == N
    assert not texts0 & texts1


def test_shifted_members_identical_and_nonmembers_band_limited(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    plain, shifted = out / "demo-speech", out / "demo-speech-shifted"
    rows_plain, rows_shift = _rows(plain), _rows(shifted)
    assert rows_plain == rows_shift  # same texts, speakers and paths
    hf_members, hf_shifted, level_drop = [], [], []
    for r in rows_plain:
        a, b = (plain / r["path"]).read_bytes(), (shifted / r["path"]).read_bytes()
        if r["label"] == "member":
            assert a == b
            x, sr = sf.read(plain / r["path"])
            hf_members.append(_hf_fraction(x, sr))
        else:
            assert a != b
            x, sr = sf.read(plain / r["path"])
            y, _ = sf.read(shifted / r["path"])
            hf_shifted.append(_hf_fraction(y, sr))
            level_drop.append(_rms_db(y) - _rms_db(x))
    # eSpeak speech keeps ~1% of its energy above 4.2 kHz; the 8 kHz chain keeps ~0.
    assert min(hf_members) > 5 * max(hf_shifted)
    assert max(hf_shifted) < 1e-3
    assert all(-6.0 < d < -2.0 for d in level_drop)


def test_shifted_nonmembers_have_a_noise_floor(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    for name, expect_floor in (("demo-speech", False), ("demo-speech-shifted", True)):
        root = out / name
        for r in _rows(root):
            if r["label"] != "nonmember":
                continue
            x, _ = sf.read(root / r["path"], dtype="int16")
            # Quietest 20 ms frame: digital silence for the clean chain, noise for the shift.
            frames = x[: x.size // 320 * 320].reshape(-1, 320).astype(np.float64)
            floor = np.sqrt((frames**2).mean(axis=1)).min()
            assert (floor > 5.0) == expect_floor, (name, r["path"], floor)


def test_pools_are_disjoint_from_each_other_and_from_the_corpus(
    corpus: tuple[Path, dict],
) -> None:
    out, _ = corpus
    sp0, sp1 = speech_pool(6, seed=0), speech_pool(6, seed=1)
    assert all(isinstance(c, DemoClip) and c.sr == 16000 for c in sp0)
    assert len({c.clip_id for c in sp0 + sp1}) == 12
    assert not {c.text for c in sp0} & {c.text for c in sp1}
    assert [c.text for c in speech_pool(6, seed=0)] == [c.text for c in sp0]
    so0, so1 = sound_pool(6, seed=0), sound_pool(6, seed=1)
    assert not {c.text for c in so0} & {c.text for c in so1}
    assert all(c.audio.dtype == np.float32 and c.audio.size >= 16000 for c in so0)
    corpus_texts = {r["text"] for name in DATASETS for r in _rows(out / name)}
    pool_texts = {c.text for c in sp0 + sp1 + so0 + so1}
    assert not corpus_texts & pool_texts
    # The guarantee behind it: the two sides draw from opposite halves of the text space.
    assert {hashlib.sha256(t.encode()).digest()[0] & 1 for t in corpus_texts} == {0}
    assert {hashlib.sha256(t.encode()).digest()[0] & 1 for t in pool_texts} == {1}
    # Pool speech is processed like corpus speech: 16 kHz, audible, speech-length.
    for c in sp0:
        assert 0.8 < c.audio.size / c.sr < 5.0
        assert _rms_db(c.audio) > -35.0


def test_the_phone_room_chain_records_the_same_events_band_limited_and_levelled() -> None:
    clean, room = sound_pool(6, seed=0), sound_pool(6, seed=0, chain="phone-room")
    assert [c.text for c in room] == [c.text for c in clean]
    assert [c.audio.size for c in room] == [c.audio.size for c in clean]
    assert len({c.clip_id for c in clean + room}) == 12
    assert [c.audio.tobytes() for c in sound_pool(6, seed=0, chain="phone-room")] == [c.audio.tobytes() for c in room]
    for c in room:
        assert c.audio.dtype == np.float32 and np.isclose(np.max(np.abs(c.audio)), 0.5, atol=1e-6)
        f, p = signal.welch(c.audio, fs=c.sr, nperseg=1024)
        # nothing of the telephone band's outside: above 6 kHz the power is 50 dB below the band's
        assert p[f > 6000].mean() < 1e-5 * p[(f > 500) & (f < 3000)].mean(), c.text
    with pytest.raises(ValueError, match="unknown sound chain 'tape'; valid: clean, phone-room"):
        sound_pool(1, seed=0, chain="tape")


def test_pools_of_other_voices_through_the_hot_chain() -> None:
    """The pool of a base that never heard the demo: the same sentences for a seed, spoken by
    speakers the demo never uses, 20 dB hotter and clipped."""
    demo_ids = {v.speaker_id for v in SPEAKERS}
    assert not {(v.name, v.pitch, v.rate) for v in OTHER_SPEAKERS} & {(v.name, v.pitch, v.rate) for v in SPEAKERS}
    assert len({v.speaker_id for v in OTHER_SPEAKERS}) == len(OTHER_SPEAKERS) and not {v.speaker_id for v in OTHER_SPEAKERS} & demo_ids
    clean, hot = speech_pool(6, seed=3), speech_pool(6, seed=3, voices="other", chain="hot")
    assert [c.text for c in hot] == [c.text for c in clean] and {c.speaker for c in hot} <= {v.speaker_id for v in OTHER_SPEAKERS}
    for c, h in zip(clean, hot):
        assert 12.0 < _rms_db(h.audio) - _rms_db(c.audio) <= 20.5
        assert np.max(np.abs(h.audio)) == pytest.approx(0.98) and np.max(np.abs(c.audio)) < 0.98
    with pytest.raises(ValueError, match="voices must be one of demo, other and chain one of clean, hot"):
        speech_pool(1, seed=3, chain="tape")
