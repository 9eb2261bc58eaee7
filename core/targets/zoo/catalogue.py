"""The zoo's entries: what each reference model is, what it audits, and how to load it.

Three families, each a small model trained on one bundled demo dataset with known
membership (the recipes that train them are in :mod:`core.recipes.zoo`):

- audio-language (``lalm-*``): tiny character-level Whisper models on ``demo-speech``,
  audited through :class:`core.targets.seq2seq.Seq2SeqTarget`;
- autoregressive (``ar-*``): caption -> audio-token GPT-2 models on ``demo-sounds``,
  audited through :mod:`core.targets.causal_audio`;
- diffusion (``diffusion-*``): caption-conditioned mel-patch UNets on ``demo-sounds``,
  audited through :mod:`core.targets.diffusion_audio`.

Each ``load`` imports its adapter (and with it torch) only when called.
"""

from __future__ import annotations

from pathlib import Path

from core.targets.base import Target
from core.targets.zoo.registry import ZooEntry, zoo_model

SPEECH = "demo-speech"
SOUNDS = "demo-sounds"


def load_seq2seq(model_dir: str | Path, *, device: str | None = None, **options) -> Target:
    """Load a built reference model through the generic encoder-decoder adapter."""
    from core.targets.seq2seq import Seq2SeqTarget

    model_dir = Path(model_dir)
    return Seq2SeqTarget(model_dir, spec=f"zoo:{model_dir.name}", device=device, **options)


def load_ar(model_dir: Path, *, device: str | None = None) -> Target:
    """Load a built autoregressive reference model (spec ``zoo:<folder name>``)."""
    from core.targets.causal_audio import load_causal_audio

    return load_causal_audio(model_dir, device=device, spec=f"zoo:{Path(model_dir).name}")


def load_diffusion(model_dir: Path, *, device: str | None = None) -> Target:
    """Load a built diffusion reference model (spec ``zoo:<folder name>``)."""
    from core.targets.diffusion_audio import load_mel_diffusion

    return load_mel_diffusion(model_dir, device=device, spec=f"zoo:{Path(model_dir).name}")


# -- audio-language ------------------------------------------------------------------------
zoo_model(ZooEntry(
    name="lalm-small",
    family="audio-language",
    dataset=SPEECH,
    description="Tiny Whisper (character-level) trained only on the demo-speech members for many "
    "epochs: strong per-sample memorization.",
    load=load_seq2seq,
    reference="lalm-ref",
))
zoo_model(ZooEntry(
    name="lalm-large",
    family="audio-language",
    dataset=SPEECH,
    description="Tiny Whisper trained on the demo-speech members inside a larger, more diverse speech "
    "pool for few epochs: weak per-sample signal, for dataset inference.",
    load=load_seq2seq,
    reference="lalm-ref",
))
zoo_model(ZooEntry(
    name="lalm-ref",
    family="audio-language",
    dataset=SPEECH,
    description="Reference: the lalm-large recipe on a speech pool of its own seed that excludes every "
    "demo-speech text; never saw a demo clip.",
    load=load_seq2seq,
    saw_members=False,
))
zoo_model(ZooEntry(
    name="lalm-base",
    family="audio-language",
    dataset=SPEECH,
    description="Base of a fine-tuning pair: lalm-large's pool without the demo-speech members; "
    "never saw a demo clip.",
    load=load_seq2seq,
    reference="lalm-ref",
    saw_members=False,
))
zoo_model(ZooEntry(
    name="lalm-ft",
    family="audio-language",
    dataset=SPEECH,
    description="lalm-base fine-tuned briefly on the demo-speech members (few epochs, small learning "
    "rate); audit it with lalm-base as its reference.",
    load=load_seq2seq,
    reference="lalm-base",
))
zoo_model(ZooEntry(
    name="lalm-shift-base",
    family="audio-language",
    dataset=SPEECH,
    description="Base of a domain-shift fine-tuning pair: lalm-base's recipe on a speech pool of other "
    "voices through a hot recording chain (20 dB more gain, peaks clipped); never heard the demo's voices or chain.",
    load=load_seq2seq,
    saw_members=False,
))
zoo_model(ZooEntry(
    name="lalm-shift-ft",
    family="audio-language",
    dataset=SPEECH,
    description="lalm-shift-base fine-tuned briefly on in-domain speech (demo voices, clean chain): the "
    "demo-speech members and 50 pool clips; it adapts to the domain, so a shadow reference beats the base.",
    load=load_seq2seq,
    reference="lalm-shift-base",
))

# -- autoregressive ------------------------------------------------------------------------
zoo_model(ZooEntry(
    name="ar-small",
    family="autoregressive",
    dataset=SOUNDS,
    description="Tiny caption -> audio-token GPT-2 trained on the demo-sounds members only, many epochs (strong memorization).",
    load=load_ar,
    reference="ar-ref",
))
zoo_model(ZooEntry(
    name="ar-large",
    family="autoregressive",
    dataset=SOUNDS,
    description="Tiny caption -> audio-token GPT-2 trained on the demo-sounds members inside a pool several times larger, few epochs (weak signal).",
    load=load_ar,
    reference="ar-ref",
))
zoo_model(ZooEntry(
    name="ar-ref",
    family="autoregressive",
    dataset=SOUNDS,
    description="Reference: the ar-large recipe on as many sound-pool clips of its own seed, none of them a demo-sounds clip.",
    load=load_ar,
    saw_members=False,
))
zoo_model(ZooEntry(
    name="ar-shift-base",
    family="autoregressive",
    dataset=SOUNDS,
    description="Base of a domain-shift fine-tuning pair: ar-ref's architecture, its own codebook, trained on sound-pool "
    "clips recorded through another chain (a telephone band in a reverberant room); never heard a clip of the clean chain.",
    load=load_ar,
    saw_members=False,
))
zoo_model(ZooEntry(
    name="ar-shift-ft",
    family="autoregressive",
    dataset=SOUNDS,
    description="ar-shift-base fine-tuned on clean in-domain sound-pool clips and the demo-sounds members (its codebook "
    "kept): a fine-tune whose domain its base never heard; audit it with a shadow of ar-shift-base.",
    load=load_ar,
    reference="ar-shift-base",
))

# -- diffusion -----------------------------------------------------------------------------
zoo_model(ZooEntry(
    name="diffusion-small",
    family="diffusion",
    dataset=SOUNDS,
    description="Tiny caption-conditioned mel-patch UNet (DDPM) trained on the demo-sounds members only, many epochs (strong memorization).",
    load=load_diffusion,
    reference="diffusion-ref",
))
zoo_model(ZooEntry(
    name="diffusion-large",
    family="diffusion",
    dataset=SOUNDS,
    description="Tiny caption-conditioned mel-patch UNet (DDPM) trained on the demo-sounds members inside a pool several times larger, few epochs (weak signal).",
    load=load_diffusion,
    reference="diffusion-ref",
))
zoo_model(ZooEntry(
    name="diffusion-ref",
    family="diffusion",
    dataset=SOUNDS,
    description="Reference: diffusion-large's number of training clips from a sound pool of its own seed, none of them a demo-sounds clip (fewer epochs, see its card).",
    load=load_diffusion,
    saw_members=False,
))
zoo_model(ZooEntry(
    name="diffusion-shift-base",
    family="diffusion",
    dataset=SOUNDS,
    description="Base of a domain-shift fine-tuning pair: diffusion-ref's architecture and pool size, trained on sound-pool "
    "clips recorded through another chain (a telephone band in a reverberant room); never heard a clip of the clean chain.",
    load=load_diffusion,
    saw_members=False,
))
zoo_model(ZooEntry(
    name="diffusion-shift-ft",
    family="diffusion",
    dataset=SOUNDS,
    description="diffusion-shift-base fine-tuned on clean in-domain sound-pool clips and the demo-sounds members (its scheduler "
    "and patch normalization kept): a fine-tune whose domain its base never heard; audit it with a shadow of diffusion-shift-base.",
    load=load_diffusion,
    reference="diffusion-shift-base",
))
