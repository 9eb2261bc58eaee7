"""Evidence at the ``outputs`` access level: only what a target returns.

The auditor of a deployed model gets its outputs, not its logits. :func:`output_evidence`
turns a target's answers into :class:`core.evidence.OutputEvidence`, which the label-only
indicators of :mod:`core.mia.outputs` read:

* audio-language targets (anything with ``transcribe``, a remote API included): the
  transcription of each clip and of ``n_perturb`` seeded perturbations of its audio (white
  noise at 30 dB SNR, a gain of -6 dB or +6 dB, a speed change of 5 %, in turn);
* text-to-audio targets (anything with ``generate``): ``n_generations`` seeded generations
  from the clip's caption, each compared with the clip (:mod:`core.data.similarity`; CLAP
  similarity when ``clap_model`` names a local CLAP folder).

A white-box target can be read this way too (it then only generates), so the two access
levels can be compared on the same model. Every perturbation and generation is seeded from
the clip's content hash and the run's seed: a rerun, or another batch split, gives the same
evidence, and the evidence is cached like any other (its key holds the outputs settings).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from core.evidence import ClipEvidence, OutputEvidence
from core.targets.base import AudioGenerator, ClipInput, EvidenceConfig, Transcriber

PERTURBATIONS = ("noise", "gain", "speed")
"""Perturbation kinds, applied in turn: the i-th perturbation of a clip is ``PERTURBATIONS[i % 3]``."""

NOISE_SNR_DB = 30.0
GAIN_DB = 6.0
SPEED = 0.05


def derived_seed(clip_hash: str, seed: int, index: int, purpose: str) -> int:
    """A 63-bit seed from the clip's content, the run's seed, an index and a purpose."""
    digest = hashlib.sha256(f"{purpose}|{clip_hash}|{seed}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generation_seed(clip_hash: str, seed: int, index: int) -> int:
    """Seed of a clip's ``index``-th generation in a run of seed ``seed``."""
    return derived_seed(clip_hash, seed, index, "generate")


def perturb(audio: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """``audio`` (mono float32) after one small seeded perturbation.

    ``noise``: white noise at :data:`NOISE_SNR_DB` below the clip's RMS; ``gain``: -6 dB or
    +6 dB (the seed's parity), clipped to [-1, 1]; ``speed``: resampled by linear
    interpolation to play 5 % faster or slower (pitch moves with it).
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    if kind == "noise":
        rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
        y = x + rng.standard_normal(x.shape) * (rms * 10 ** (-NOISE_SNR_DB / 20) if rms > 0 else 1e-4)
    elif kind == "gain":
        y = x * 10 ** ((GAIN_DB if seed % 2 else -GAIN_DB) / 20)
    elif kind == "speed":
        factor = 1.0 + (SPEED if seed % 2 else -SPEED)
        n = max(1, int(round(x.size / factor)))
        y = np.interp(np.arange(n) * factor, np.arange(x.size), x) if x.size else x
    else:
        raise ValueError(f"unknown perturbation {kind!r}; valid: {', '.join(PERTURBATIONS)}")
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def output_evidence(target, clips: Sequence[ClipInput], config: EvidenceConfig, *,
                    batch_size: int | None = None) -> list[ClipEvidence]:
    """Output-only evidence of each clip, in order.

    Raises
    ------
    ValueError
        the target cannot be read at the outputs level (neither transcribes nor generates),
        or a text-to-audio clip has no caption to generate from.
    """
    if target.family == "audio-language":
        if not isinstance(target, Transcriber):
            raise ValueError(f"{target.spec}: this audio-language target cannot return transcriptions, so it has no outputs access")
        return _transcription_evidence(target, clips, config, batch_size)
    if not isinstance(target, AudioGenerator):
        raise ValueError(f"{target.spec}: this {target.family} target cannot generate audio, so it has no outputs access")
    return _generation_evidence(target, clips, config)


def _transcription_evidence(target: Transcriber, clips: Sequence[ClipInput], config: EvidenceConfig,
                            batch_size: int | None) -> list[ClipEvidence]:
    n = 1 + config.n_perturb
    inputs: list[ClipInput] = []
    for clip in clips:
        inputs.append(clip)
        for i in range(config.n_perturb):
            kind = PERTURBATIONS[i % len(PERTURBATIONS)]
            audio = perturb(clip.audio, kind, derived_seed(clip.clip_hash, config.seed, i, "perturb"))
            inputs.append(ClipInput(f"{clip.clip_hash}~{kind}{i}", audio, clip.text, clip.sr))
    texts = target.transcribe(inputs, batch_size=batch_size)
    if len(texts) != len(inputs):
        raise ValueError(f"{target.spec} returned {len(texts)} transcriptions for {len(inputs)} inputs")
    out = []
    for j, clip in enumerate(clips):
        answers = tuple(str(t) for t in texts[j * n:(j + 1) * n])
        out.append(ClipEvidence(clip_hash=clip.clip_hash, text=answers[0],
                                outputs=OutputEvidence(texts=answers, reference=clip.text)))
    return out


def _generation_evidence(target: AudioGenerator, clips: Sequence[ClipInput], config: EvidenceConfig) -> list[ClipEvidence]:
    from core.data.similarity import audio_similarity

    missing = [c.clip_hash for c in clips if not c.text.strip()]
    if missing:
        raise ValueError(f"clip {missing[0]} has no caption: outputs access generates from each clip's caption")
    k = config.n_generations
    captions = [c.text for c in clips for _ in range(k)]
    lengths = [len(c.audio) for c in clips for _ in range(k)]
    seeds = [generation_seed(c.clip_hash, config.seed, i) for c in clips for i in range(k)]
    sr = clips[0].sr if clips else 16000
    generated = target.generate(captions, n_samples=lengths, sr=sr, seeds=seeds, steps=config.gen_steps)
    clap = None
    if config.clap_model:
        from core.targets.clap import clap_audio_similarity

        clap = clap_audio_similarity(config.clap_model, [c.audio for c in clips for _ in range(k)], generated, sr)
    out = []
    for j, clip in enumerate(clips):
        rows = [audio_similarity(clip.audio, generated[j * k + i], sr) for i in range(k)]
        sim = {name: np.array([r[name] for r in rows], dtype=np.float64) for name in rows[0]} if rows else {}
        if clap is not None:
            sim["clap_sim"] = np.asarray(clap[j * k:(j + 1) * k], dtype=np.float64)
        out.append(ClipEvidence(clip_hash=clip.clip_hash, text=clip.text,
                                outputs=OutputEvidence(reference=clip.text, similarity=sim)))
    return out
