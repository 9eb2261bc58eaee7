"""The built-in variants (LALM paper, Phase 3): original, silence, noise, and resynthesis
of the same words (speech, eSpeak NG reference voices) or caption (sound, a diffusers
text-to-audio model)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from core.disentangle.registry import register_variant, seed_for

TTS_REFERENCE_VOICES = (
    # eSpeak voices unrelated to any demo speaker (different variant, pitch and rate).
    ("en-us+klatt", 170, 50),
    ("en+f1", 160, 62),
    ("en-gb-x-rp+m2", 180, 42),
)


@register_variant("original", description="the clip as uploaded")
def original(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str) -> NDArray[np.float32]:
    return audio


@register_variant("silence", description="zeros of the same length")
def silence(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str) -> NDArray[np.float32]:
    return np.zeros_like(audio)


@register_variant("noise", realizations=3, description="Gaussian noise at the clip's RMS (fixed seeds)")
def noise(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str) -> NDArray[np.float32]:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    rng = np.random.default_rng(seed_for(clip_hash, realization, "noise"))
    return (rng.standard_normal(audio.shape[0]) * rms).astype(np.float32)


@register_variant("tts", realizations=3, needs_text=True, description="the transcript spoken by eSpeak NG reference voices unrelated to the dataset")
def tts(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str) -> NDArray[np.float32]:
    from core.data.audio import to_analysis
    from core.data.demo.espeak import VoiceSpec, synthesize

    name, rate, pitch = TTS_REFERENCE_VOICES[realization % len(TTS_REFERENCE_VOICES)]
    wav, wsr = synthesize(text, voice=VoiceSpec(name=name, rate=rate, pitch=pitch, speaker_id=f"ref{realization}"))
    return to_analysis(wav[:, None], wsr, sr)
