"""The built-in variants (LALM paper, Phase 3): original, silence, noise, and resynthesis
of the same words (``tts``: eSpeak NG reference voices, or a local Piper voice) or caption
(``tta``: the zoo diffusion model, or a local diffusers text-to-audio pipeline)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from core.disentangle.registry import VariantOption, register_variant, seed_for
from core.disentangle.tta import DEFAULT_GENERATOR, DEFAULT_GUIDANCE, DEFAULT_STEPS

TTS_REFERENCE_VOICES = (
    # eSpeak voices unrelated to any demo speaker (different variant, pitch and rate).
    ("en-us+klatt", 170, 50),
    ("en+f1", 160, 62),
    ("en-gb-x-rp+m2", 180, 42),
)


@register_variant("original", description="the clip as uploaded", original=True)
def original(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str, **_) -> NDArray[np.float32]:
    return audio


@register_variant("silence", description="zeros of the same length")
def silence(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str, **_) -> NDArray[np.float32]:
    return np.zeros_like(audio)


@register_variant("noise", realizations=3, description="Gaussian noise at the clip's RMS (fixed seeds)")
def noise(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str, **_) -> NDArray[np.float32]:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    rng = np.random.default_rng(seed_for(clip_hash, realization, "noise"))
    return (rng.standard_normal(audio.shape[0]) * rms).astype(np.float32)


def _identify_tts(options: dict) -> dict:
    from core.disentangle.piper import identify_voice

    return identify_voice(options)


@register_variant("tts", realizations=3, needs_text=True, check="transcript", identify=_identify_tts,
                  options=(VariantOption("piper_voice", "Piper voice for speech (.onnx with its .onnx.json beside it; empty: "
                                         "eSpeak NG reference voices)"),),
                  description="the transcript spoken by reference voices unrelated to the dataset "
                              "(eSpeak NG, or a local Piper voice with option piper_voice=PATH.onnx)")
def tts(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str,
        piper_voice: str | None = None, **_) -> NDArray[np.float32]:
    from core.data.audio import to_analysis

    if piper_voice:
        from core.disentangle.piper import speak

        wav, wsr = speak(piper_voice, text, realization)
    else:
        from core.data.espeak import VoiceSpec, synthesize

        name, rate, pitch = TTS_REFERENCE_VOICES[realization % len(TTS_REFERENCE_VOICES)]
        wav, wsr = synthesize(text, voice=VoiceSpec(name=name, rate=rate, pitch=pitch, speaker_id=f"ref{realization}"))
    return to_analysis(wav[:, None], wsr, sr)


def _identify_tta(options: dict) -> dict:
    from core.disentangle.tta import identify_generator

    return identify_generator(options)


def _tta_batch(audios, texts, *, sr: int, realization: int, clip_hashes, **options):
    from core.disentangle.tta import render_captions

    return render_captions(texts, n_samples=[a.shape[0] for a in audios], sr=sr,
                           seeds=[seed_for(h, realization, "tta") for h in clip_hashes], **options)


@register_variant("tta", realizations=3, needs_text=True, check="caption", identify=_identify_tta,
                  options=(VariantOption("generator", "Text-to-audio generator for sounds (zoo:<name> or a local diffusers "
                                         "pipeline folder)", "A generator trained on the audited clips can regenerate what it "
                                         "memorized: prefer one unrelated to the audited model. Sound resynthesis takes about a "
                                         "second per clip and realization on a CPU.", default=DEFAULT_GENERATOR),
                           VariantOption("steps", "Sampling steps of the generator", kind="int", default=DEFAULT_STEPS),
                           VariantOption("guidance", "Classifier-free guidance scale of the generator", kind="float",
                                         default=DEFAULT_GUIDANCE)),
                  make_batch=_tta_batch,
                  description="the caption rendered by a text-to-audio model (default the zoo diffusion model "
                              "zoo:diffusion-large; option generator=PATH for a local diffusers pipeline), three seeds")
def tta(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str, **options) -> NDArray[np.float32]:
    from core.disentangle.tta import render_captions

    return render_captions([text], n_samples=[audio.shape[0]], sr=sr, seeds=[seed_for(clip_hash, realization, "tta")], **options)[0]
