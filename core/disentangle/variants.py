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


FIXED_SECONDS = 4.0
"""Length of the silence and noise that replace every clip: the same for all clips, so
these conditions carry nothing of the clip's audio (not even its duration, which the blind
baseline reads: a length that differs by chance between members and non-members would
otherwise enter the condition, and cross-validation can read such chance structure
backwards)."""
NOISE_LEVEL_DB = -26.0
"""RMS of the replacing noise in dBFS (a typical speech level)."""

def _seconds(what: str) -> VariantOption:
    return VariantOption("seconds", f"{what}: length in seconds, the same for every clip", kind="float", default=FIXED_SECONDS,
                         help="0: each clip's own length, which carries its duration (a blind-baseline feature) into the condition")


def _fixed_options(options: dict) -> dict:
    """The defaults written out, so the cache key names the rendering (and never meets
    evidence cached when these variants followed each clip's length)."""
    out = {"seconds": FIXED_SECONDS, **options}
    if float(out["seconds"]) < 0:
        raise ValueError(f"option seconds must be >= 0, got {out['seconds']}")
    return out


def _noise_options(options: dict) -> dict:
    return {"level_db": NOISE_LEVEL_DB, **_fixed_options(options)}


def _length(audio: NDArray[np.float32], sr: int, seconds: float) -> int:
    return int(audio.shape[0]) if float(seconds) == 0 else max(1, int(round(float(seconds) * sr)))


@register_variant("silence", options=(_seconds("Silence"),), identify=_fixed_options, keeps_length=False,
                  description=f"zeros, {FIXED_SECONDS:g} s for every clip (option seconds=0: each clip's length)")
def silence(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str, seconds: float = FIXED_SECONDS,
            **_) -> NDArray[np.float32]:
    return np.zeros(_length(audio, sr, seconds), dtype=np.float32)


@register_variant("noise", realizations=3, identify=_noise_options, keeps_length=False,
                  options=(_seconds("Noise"), VariantOption("level_db", "Noise: level in dBFS (RMS)", kind="float", default=NOISE_LEVEL_DB,
                                                            help="unused with seconds=0, where each clip's own RMS is used")),
                  description=f"Gaussian noise, the same {FIXED_SECONDS:g} s at {NOISE_LEVEL_DB:g} dBFS for every clip "
                              "(fixed seeds; option seconds=0: each clip's length and RMS)")
def noise(audio: NDArray[np.float32], text: str, *, sr: int, realization: int, clip_hash: str, seconds: float = FIXED_SECONDS,
          level_db: float = NOISE_LEVEL_DB, **_) -> NDArray[np.float32]:
    if float(seconds) == 0:  # each clip's own length and level, its own seed
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
        rng = np.random.default_rng(seed_for(clip_hash, realization, "noise"))
        return (rng.standard_normal(audio.shape[0]) * rms).astype(np.float32)
    # the same noise for every clip: a realization differs from another, a clip from another does not
    rng = np.random.default_rng(seed_for("every-clip", realization, "noise"))
    return (rng.standard_normal(_length(audio, sr, seconds)) * 10 ** (float(level_db) / 20)).astype(np.float32)


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
