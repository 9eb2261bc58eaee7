"""The bundled demo corpus: synthetic speech and captioned sound events with known membership.

Three datasets are written by :func:`build_corpus` (each a folder with ``members/``,
``nonmembers/``, a sidecar ``.txt`` per clip and ``metadata.csv``):

``demo-speech``
    eSpeak NG sentences from the grammar in :mod:`core.recipes.corpus.grammar`, spoken by the
    speakers in :data:`core.data.espeak.SPEAKERS`. Members and non-members are drawn
    i.i.d. from the same speakers and grammar and processed identically, so a model-free
    (blind) classifier should sit at chance.
``demo-speech-shifted``
    The same member files, byte for byte, and the same non-member sentences and speakers
    as ``demo-speech``, but the non-members went through a different "recording chain":
    8 kHz band limit (nothing above 4 kHz), a white-noise floor and about 4 dB less level.
    A blind classifier on acoustics alone separates the classes, which is what the blind
    baseline must flag.
``demo-sounds``
    Procedural sound events with captions (:mod:`core.recipes.corpus.sounds`), members and
    non-members i.i.d.

Seed streams and disjointness
-----------------------------
Every random draw comes from ``numpy.random.SeedSequence(seed, spawn_key=(stream,))`` with
one reserved stream per use (:data:`STREAMS`): the corpus speech and sounds, the channel
noise of the shifted non-members, the two in-memory pools (:func:`speech_pool`,
:func:`sound_pool`) that reference models are trained on, and the rooms of pool sound
events recorded through another chain (``sound_pool(chain="phone-room")``,
:func:`phone_room_chain`: the zoo's ``ar-shift-base`` and ``diffusion-shift-base`` never hear the corpus's clean chain). On top of that the text space is
split in two by a hash of the sentence or caption: audited clips only take texts in half 0
and pools only texts in half 1, so no pool clip, whatever its seed, shares a sentence or a
caption with an audited clip. Pools for different seeds use independent streams over a text
space of more than 10^9 sentences, so they are disjoint with overwhelming probability.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from numpy.typing import NDArray
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from core.data.espeak import OTHER_SPEAKERS, SPEAKERS, VoiceSpec, synthesize
from core.recipes.corpus.grammar import sentences
from core.recipes.corpus.sounds import render_event

STREAMS: dict[str, int] = {
    "corpus-speech": 0,
    "corpus-sounds": 1,
    "corpus-shift-noise": 2,
    "pool-speech": 10,
    "pool-sounds": 11,
    "pool-sounds-chain": 12,
}
CORPUS_HALF = 0
POOL_HALF = 1

VOICES: dict[str, tuple[VoiceSpec, ...]] = {"demo": SPEAKERS, "other": OTHER_SPEAKERS}
"""The speaker sets a speech pool can be spoken by: the demo's own, or speakers it never uses."""
CHAINS: tuple[str, ...] = ("clean", "hot")
"""A speech pool's recording chain: the demo corpus's, or an overdriven one (:func:`_hot_chain`)."""

DATASETS: tuple[str, ...] = ("demo-speech", "demo-speech-shifted", "demo-sounds")
METADATA_COLUMNS: tuple[str, ...] = ("path", "label", "text", "speaker", "source", "split")
SPEECH_SOURCE = "espeak-ng"
SOUND_SOURCE = "procedural"

# Level of every speech clip: RMS drawn uniformly in this range (dBFS), the same for both
# classes so that level alone says nothing about membership in demo-speech.
_SPEECH_RMS_DB = (-30.0, -25.0)
# The shifted non-members' recording chain.
_SHIFT_SR = 8000
_SHIFT_GAIN_DB = -4.0
_SHIFT_NOISE_DB = -66.0
# The hot chain of speech pools: this much more gain than the corpus's level, then clipping.
_HOT_GAIN_DB = 20.0
_TRIM_PAD_S = 0.05
# The other recording chain of sound-pool clips (:func:`phone_room_chain`).
_PHONE_BAND_HZ = (300.0, 3400.0)
_ROOM_RT60_S = 0.5
_AGC_PEAK = 0.5
SOUND_CHAINS: tuple[str, ...] = ("clean", "phone-room")


@dataclass(frozen=True)
class DemoClip:
    """One synthetic clip held in memory.

    Attributes
    ----------
    clip_id : str
        Identifier, unique within a pool or dataset.
    audio : ndarray of float32, shape (n_samples,)
        Mono waveform in [-1, 1].
    sr : int
        Sample rate in Hz.
    text : str
        Transcript (speech) or caption (sound event).
    speaker : str
        Speaker id for speech; empty for sound events.
    source : str
        How the clip was made: ``"espeak-ng"`` or ``"procedural"``.
    """

    clip_id: str
    audio: NDArray[np.float32]
    sr: int
    text: str
    speaker: str
    source: str


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[stream],)))


def text_half(text: str) -> int:
    """Which half of the text space ``text`` belongs to (0 = audited corpus, 1 = pools)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] & 1


def _resample(x: NDArray[np.float64], sr_in: int, sr_out: int) -> NDArray[np.float64]:
    if sr_in == sr_out:
        return x
    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)


def _trim(x: NDArray[np.float64], sr: int) -> NDArray[np.float64]:
    # eSpeak pads each utterance with a long tail of digital silence.
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.max(np.abs(x)))
    if loud.size == 0:
        return x
    pad = int(_TRIM_PAD_S * sr)
    return x[max(0, loud[0] - pad) : loud[-1] + pad + 1]


def _set_rms(x: NDArray[np.float64], rms_db: float) -> NDArray[np.float64]:
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    y = x * (10 ** (rms_db / 20) / rms)
    peak = float(np.max(np.abs(y)))
    return y * (0.98 / peak) if peak > 0.98 else y


def _speak(text: str, voice: VoiceSpec) -> tuple[NDArray[np.float64], int]:
    audio, sr = synthesize(text, voice=voice)
    return _trim(audio.astype(np.float64), sr), sr


def _speech_plan(
    rng: np.random.Generator, n: int, *, half: int, speakers: tuple[VoiceSpec, ...] = SPEAKERS
) -> list[tuple[str, VoiceSpec, float]]:
    texts = sentences(rng, n, accept=lambda s: text_half(s) == half)
    voices = rng.integers(len(speakers), size=n)
    levels = rng.uniform(*_SPEECH_RMS_DB, size=n)
    return [(t, speakers[int(v)], float(lv)) for t, v, lv in zip(texts, voices, levels)]


def _clean_chain(
    x: NDArray[np.float64], sr_in: int, rms_db: float, sr: int
) -> NDArray[np.float32]:
    return _set_rms(_resample(x, sr_in, sr), rms_db).astype(np.float32)


def _shifted_chain(
    x: NDArray[np.float64],
    sr_in: int,
    rms_db: float,
    sr: int,
    noise_rng: np.random.Generator,
) -> NDArray[np.float32]:
    # A narrow-band capture: 8 kHz source, quieter, with its own noise floor, then stored
    # at the corpus rate like everything else.
    low = _set_rms(_resample(x, sr_in, _SHIFT_SR), rms_db + _SHIFT_GAIN_DB)
    low = low + noise_rng.standard_normal(low.size) * 10 ** (_SHIFT_NOISE_DB / 20)
    y = _resample(low, _SHIFT_SR, sr)
    return np.clip(y, -0.98, 0.98).astype(np.float32)


def _hot_chain(
    x: NDArray[np.float64], sr_in: int, rms_db: float, sr: int
) -> NDArray[np.float32]:
    # An overdriven capture: the level 20 dB above the corpus's (RMS -10 to -5 dBFS) and the
    # peaks clipped at the ceiling (a few percent of the samples of a typical sentence).
    y = _resample(x, sr_in, sr)
    y = y * (10 ** ((rms_db + _HOT_GAIN_DB) / 20) / (float(np.sqrt(np.mean(y**2))) + 1e-12))
    return np.clip(y, -0.98, 0.98).astype(np.float32)


def _sound_events(
    rng: np.random.Generator, n: int, *, half: int, sr: int
) -> list[tuple[NDArray[np.float32], str]]:
    out: list[tuple[NDArray[np.float32], str]] = []
    seen: set[str] = set()
    while len(out) < n:
        audio, caption = render_event(rng, sr=sr)
        if text_half(caption) != half or caption in seen:
            continue
        seen.add(caption)
        out.append((audio, caption))
    return out


def speech_pool(
    n: int, *, seed: int, sr: int = 16000, voices: str = "demo", chain: str = "clean"
) -> list[DemoClip]:
    """Synthetic speech clips for training reference models, disjoint from the corpus.

    Parameters
    ----------
    n : int
        Number of clips.
    seed : int
        Pool seed; different seeds give (almost surely) disjoint sentences, and no seed
        gives a sentence of the audited corpus.
    sr : int, default 16000
        Output sample rate in Hz.
    voices : {"demo", "other"}, default "demo"
        Who speaks (:data:`VOICES`): the demo corpus's speakers, or speakers it never uses.
    chain : {"clean", "hot"}, default "clean"
        The recording chain (:data:`CHAINS`): the demo corpus's, or an overdriven one
        (20 dB more gain, peaks clipped). The defaults give the pools the zoo has always
        been trained on, clip for clip.

    Returns
    -------
    list of DemoClip, length n
        Each with float32 audio of shape (n_samples,), its sentence and speaker id.
    """
    if voices not in VOICES or chain not in CHAINS:
        raise ValueError(f"voices must be one of {', '.join(VOICES)} and chain one of {', '.join(CHAINS)}, "
                         f"got {voices!r} and {chain!r}")
    plan = _speech_plan(_rng(seed, "pool-speech"), n, half=POOL_HALF, speakers=VOICES[voices])
    record = _clean_chain if chain == "clean" else _hot_chain
    return [
        DemoClip(
            clip_id=f"speech-pool{seed}-{i:05d}",
            audio=record(*_speak(text, voice), level, sr),
            sr=sr,
            text=text,
            speaker=voice.speaker_id,
            source=SPEECH_SOURCE,
        )
        for i, (text, voice, level) in enumerate(plan)
    ]


def phone_room_chain(x: NDArray[np.floating], sr: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Another recording chain for a sound event: the corpus's clips are rendered clean, this
    one is heard through a telephone band (300-3400 Hz, 4th-order Butterworth), in a
    reverberant room (a seeded exponentially decaying noise impulse response, RT60 0.5 s,
    after the direct path) and levelled by an automatic gain control (peak 0.5). The length
    is kept (the reverberant tail is cut at the clip's end), so captions stay true.
    """
    y = sosfilt(butter(4, _PHONE_BAND_HZ, btype="bandpass", fs=sr, output="sos"), np.asarray(x, dtype=np.float64))
    n = int(_ROOM_RT60_S * sr)
    ir = rng.standard_normal(n) * np.exp(-math.log(1000.0) * np.arange(n) / n)  # -60 dB at RT60
    ir[0] = 1.0
    y = fftconvolve(y, ir / np.sqrt(np.sum(ir**2)))[: y.size]
    return (y / (np.max(np.abs(y)) + 1e-12) * _AGC_PEAK).astype(np.float32)


def sound_pool(n: int, *, seed: int, sr: int = 16000, chain: str = "clean") -> list[DemoClip]:
    """Captioned sound events for training reference models, disjoint from the corpus.

    Parameters
    ----------
    n : int
        Number of clips.
    seed : int
        Pool seed; no seed gives a caption of the audited corpus.
    sr : int, default 16000
        Sample rate in Hz.
    chain : str, default "clean"
        How the events are recorded: ``"clean"`` as the corpus renders them, or
        ``"phone-room"`` through :func:`phone_room_chain` (the same events, the chain's
        randomness drawn from its own stream).

    Returns
    -------
    list of DemoClip, length n
        Each with float32 audio of shape (n_samples,) and a unique caption.
    """
    if chain not in SOUND_CHAINS:
        raise ValueError(f"unknown sound chain {chain!r}; valid: {', '.join(SOUND_CHAINS)}")
    events = _sound_events(_rng(seed, "pool-sounds"), n, half=POOL_HALF, sr=sr)
    if chain == "phone-room":
        room = _rng(seed, "pool-sounds-chain")
        events = [(phone_room_chain(audio, sr, room), caption) for audio, caption in events]
    return [
        DemoClip(
            clip_id=f"sound-pool{seed}-{i:05d}" + ("" if chain == "clean" else f"-{chain}"),
            audio=audio,
            sr=sr,
            text=caption,
            speaker="",
            source=SOUND_SOURCE,
        )
        for i, (audio, caption) in enumerate(events)
    ]


def _flac_bytes(audio: NDArray[np.float32], sr: int) -> bytes:
    # Quantize here rather than in libsndfile so the PCM values are fixed by numpy rounding.
    pcm = np.clip(np.round(audio.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sr, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return buf.getvalue()


def file_sha256(audio: NDArray[np.float32], sr: int) -> str:
    """Content hash of ``audio`` as :func:`build_corpus` would write it (16-bit FLAC).

    The sha256 of those file bytes is the clip hash ingestion gives a corpus file, so an
    in-memory pool clip can be compared with the corpus (and with any workspace) by hash.
    """
    return hashlib.sha256(_flac_bytes(audio, sr)).hexdigest()


@dataclass
class _Writer:
    root: Path
    rows: list[dict[str, str]]
    n_bytes: int = 0
    seconds: float = 0.0

    def add(
        self, *, label: str, name: str, data: bytes, seconds: float, text: str, speaker: str,
        source: str,
    ) -> None:
        folder = "members" if label == "member" else "nonmembers"
        rel = f"{folder}/{name}.flac"
        (self.root / rel).write_bytes(data)
        (self.root / folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
        self.rows.append(
            {
                "path": rel,
                "label": label,
                "text": text,
                "speaker": speaker,
                "source": source,
                "split": "train" if label == "member" else "heldout",
            }
        )
        self.n_bytes += len(data)
        self.seconds += seconds

    def finish(self) -> dict[str, Any]:
        with open(self.root / "metadata.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(METADATA_COLUMNS), lineterminator="\n")
            w.writeheader()
            w.writerows(self.rows)
        labels = [r["label"] for r in self.rows]
        return {
            "n_members": labels.count("member"),
            "n_nonmembers": labels.count("nonmember"),
            "bytes": self.n_bytes,
            "seconds": round(self.seconds, 3),
        }


def _fresh_dataset(out_dir: Path, name: str) -> _Writer:
    root = out_dir / name
    if root.exists():
        shutil.rmtree(root)
    (root / "members").mkdir(parents=True)
    (root / "nonmembers").mkdir()
    return _Writer(root=root, rows=[])


def build_corpus(
    out_dir: Path,
    *,
    seed: int = 0,
    n_per_class: int = 100,
    sr: int = 16000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the three demo datasets under ``out_dir``.

    Each of ``demo-speech``, ``demo-speech-shifted`` and ``demo-sounds`` is replaced if it
    exists; other files in ``out_dir`` are left alone. The output is a pure function of
    ``seed``, ``n_per_class`` and ``sr``: rebuilding gives byte-identical files.

    Parameters
    ----------
    out_dir : Path
        Parent folder of the three datasets.
    seed : int, default 0
        Corpus seed.
    n_per_class : int, default 100
        Members and, separately, non-members per dataset.
    sr : int, default 16000
        Sample rate of the stored FLAC files (PCM_16).
    progress : callable, optional
        Called with a short status line after each clip.

    Returns
    -------
    dict
        ``{"seed", "n_per_class", "sr", "datasets": {name: {"n_members", "n_nonmembers",
        "bytes", "seconds"}}, "total_bytes", "total_seconds"}``.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    n_total = 2 * n_per_class

    speech = _fresh_dataset(out_dir, "demo-speech")
    shifted = _fresh_dataset(out_dir, "demo-speech-shifted")
    plan = _speech_plan(_rng(seed, "corpus-speech"), n_total, half=CORPUS_HALF)
    noise_rng = _rng(seed, "corpus-shift-noise")
    for i, (text, voice, level) in enumerate(plan):
        label = "member" if i < n_per_class else "nonmember"
        name = f"speech_{i:04d}"
        x, sr_in = _speak(text, voice)
        audio = _clean_chain(x, sr_in, level, sr)
        data = _flac_bytes(audio, sr)
        meta = {"text": text, "speaker": voice.speaker_id, "source": SPEECH_SOURCE}
        speech.add(label=label, name=name, data=data, seconds=audio.size / sr, **meta)
        if label == "nonmember":
            audio = _shifted_chain(x, sr_in, level, sr, noise_rng)
            data = _flac_bytes(audio, sr)
        shifted.add(label=label, name=name, data=data, seconds=audio.size / sr, **meta)
        say(f"demo-speech: {i + 1}/{n_total}")

    sounds = _fresh_dataset(out_dir, "demo-sounds")
    events = _sound_events(_rng(seed, "corpus-sounds"), n_total, half=CORPUS_HALF, sr=sr)
    for i, (audio, caption) in enumerate(events):
        label = "member" if i < n_per_class else "nonmember"
        sounds.add(
            label=label,
            name=f"sound_{i:04d}",
            data=_flac_bytes(audio, sr),
            seconds=audio.size / sr,
            text=caption,
            speaker="",
            source=SOUND_SOURCE,
        )
        say(f"demo-sounds: {i + 1}/{n_total}")

    datasets = {
        "demo-speech": speech.finish(),
        "demo-speech-shifted": shifted.finish(),
        "demo-sounds": sounds.finish(),
    }
    return {
        "seed": seed,
        "n_per_class": n_per_class,
        "sr": sr,
        "datasets": datasets,
        "total_bytes": sum(d["bytes"] for d in datasets.values()),
        "total_seconds": round(sum(d["seconds"] for d in datasets.values()), 3),
    }
