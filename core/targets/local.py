"""The ``local`` target loader: a checkpoint folder on disk -> the matching adapter.

The folder's own metadata picks the adapter, so a user only ever passes a path:

- ``model_index.json`` (a diffusers pipeline) -> ``core.targets.diffusers_audio``;
- ``config.json`` with ``model_type``:

  - ``qwen2_audio``, ``audioflamingo3`` -> :class:`core.targets.chat_lalm.ChatLALMTarget`;
  - ``musicgen`` -> :class:`core.targets.musicgen.MusicgenTarget`;
  - an encoder-decoder speech-to-text type (Whisper and other
    ``AutoModelForSpeechSeq2Seq`` models) -> :class:`core.targets.seq2seq.Seq2SeqTarget`;
- a format recognised by its files (a registered type's ``detect``): a CTranslate2
  (faster-whisper) ``model.bin`` -> :mod:`core.targets.ct2_whisper`; the zoo's own layouts
  (a copied zoo model, a shadow reference built from one): ``layout.json`` + codebook ->
  :mod:`core.targets.causal_audio`, ``patch.json`` + ``unet/`` -> :mod:`core.targets.diffusion_audio`.

Every checkpoint adapter enforces the same loading rules (:mod:`core.targets.loading`, applied
once in :class:`core.targets.two_stage.TwoStageTarget`): safetensors only,
``trust_remote_code`` off unless passed, and the flag recorded on the target.
Loader options (``prompt=``, ``batch_size=``, ``dtype=``, ``max_new_tokens=``...) pass
through to the adapter.
"""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from core.registry import Registry
from core.targets.base import Family, Target
from core.targets.loading import read_config
from core.targets.registry import register_loader

_SEQ2SEQ_NOTE = "any encoder-decoder AutoModelForSpeechSeq2Seq type (e.g. whisper)"

LoadFn = Callable[[Path, str | None, dict[str, Any]], Target]
"""``load(folder, device, options) -> Target``: a model type's adapter, given the loader options."""


@dataclass(frozen=True)
class ModelType:
    """An adapter for one model type, and the family it audits.

    ``detect`` recognises a folder by its files, for formats whose ``config.json`` names no
    ``model_type`` (CTranslate2); it returns False for a folder of another format and raises
    ``ValueError`` for one of its own format that cannot be read. Without it the type is the
    ``config.json`` ``model_type`` of the same name.
    """

    load: LoadFn
    family: Family
    detect: Callable[[Path], bool] | None = None


MODEL_TYPES: Registry[ModelType] = Registry("model type")
"""Model types with a dedicated adapter: ``config.json`` model types, and folder formats
recognised by their ``detect`` (encoder-decoder speech models and diffusers pipelines are
recognised by their structure instead)."""


def model_type(name: str, *, family: Family, detect: Callable[[Path], bool] | None = None) -> Callable[[LoadFn], LoadFn]:
    """``@model_type(name, family=...)`` registers ``load(path, device, options) -> Target`` as
    the adapter of model type ``name`` (see :class:`ModelType` for ``detect``); a name taken
    twice raises."""
    return MODEL_TYPES.decorator(name, lambda fn: ModelType(fn, family, detect))


@model_type("audioflamingo3", family="audio-language")
@model_type("qwen2_audio", family="audio-language")
def _load_chat(path: Path, device: str | None, options: dict[str, Any]) -> Target:
    """A chat audio-language checkpoint (Qwen2-Audio, Audio Flamingo 3) as a ChatLALMTarget."""
    from core.targets.chat_lalm import ChatLALMTarget

    return ChatLALMTarget(path, spec=str(path), device=device, **options)


@model_type("musicgen", family="autoregressive")
def _load_musicgen(path: Path, device: str | None, options: dict[str, Any]) -> Target:
    """A MusicGen checkpoint as a MusicgenTarget (per-token statistics of its codec tokens)."""
    from core.targets.musicgen import MusicgenTarget

    return MusicgenTarget(path, spec=str(path), device=device, **options)


def is_causal_audio_folder(folder: Path) -> bool:
    """A folder written by :func:`core.targets.causal_audio.save_causal_audio` (the zoo's
    ``ar-*`` models and shadows built from them): ``config.json``, ``layout.json`` and the
    audio codebook."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in ("config.json", "layout.json", "codebook.json"))


def is_mel_diffusion_folder(folder: Path) -> bool:
    """A folder written by :func:`core.targets.diffusion_audio.save_mel_diffusion` (the zoo's
    ``diffusion-*`` models and shadows built from them): ``patch.json`` beside ``unet/``,
    ``text_encoder/`` and ``scheduler/``."""
    folder = Path(folder)
    return (folder / "patch.json").is_file() and all((folder / sub).is_dir() for sub in ("unet", "text_encoder", "scheduler"))


def _no_options(path: Path, options: dict[str, Any]) -> None:
    if options:
        raise ValueError(f"{path} takes no --target-option (got {', '.join(sorted(options))}); its settings are fixed by its folder")


@model_type("causal-audio", family="autoregressive", detect=is_causal_audio_folder)
def _load_causal_audio(path: Path, device: str | None, options: dict[str, Any]) -> Target:
    """A caption -> audio-token GPT-2 folder (the zoo's ``ar-*`` layout) as a CausalAudioTarget."""
    from core.targets.causal_audio import load_causal_audio

    _no_options(path, options)
    return load_causal_audio(path, device=device, spec=str(path))


@model_type("mel-diffusion", family="diffusion", detect=is_mel_diffusion_folder)
def _load_mel_diffusion(path: Path, device: str | None, options: dict[str, Any]) -> Target:
    """A caption-conditioned mel-patch UNet folder (the zoo's ``diffusion-*`` layout) as a MelDiffusionTarget."""
    from core.targets.diffusion_audio import load_mel_diffusion

    _no_options(path, options)
    return load_mel_diffusion(path, device=device, spec=str(path))


def _load_seq2seq(path: Path, device: str | None, options: dict[str, Any]) -> Target:
    from core.targets.seq2seq import Seq2SeqTarget

    return Seq2SeqTarget(path, spec=str(path), device=device, **options)


def supported_model_types() -> list[str]:
    """The ``config.json`` model types the local loader can audit (plus diffusers pipelines)."""
    return MODEL_TYPES.names() + [_SEQ2SEQ_NOTE, "diffusers pipelines (model_index.json)"]


def _is_speech_seq2seq(config: dict[str, Any]) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES

    speech_types = MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES
    return bool(config.get("is_encoder_decoder")) and config.get("model_type") in speech_types


def detect_kind(folder: str | Path) -> str:
    """``"diffusers"``, ``"seq2seq"`` or a chat/musicgen model type for a checkpoint folder.

    Raises
    ------
    FileNotFoundError
        Neither ``model_index.json`` nor ``config.json`` is in the folder.
    ValueError
        The model type is not supported (the message lists the supported ones), or a
        detected format cannot be read (the message says why).
    """
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return "diffusers"
    for name, model_type in MODEL_TYPES.items():
        if model_type.detect is not None and model_type.detect(folder):
            return name
    config = read_config(folder)
    model_type = str(config.get("model_type", ""))
    if model_type in MODEL_TYPES and MODEL_TYPES.get(model_type).detect is None:
        return model_type
    if _is_speech_seq2seq(config):
        return "seq2seq"
    archs = ", ".join(config.get("architectures") or []) or "none listed"
    raise ValueError(
        f"{folder}: model type {model_type or '(missing)'!r} (architectures: {archs}) is not supported; "
        f"supported: {', '.join(supported_model_types())}"
    )


def load_local(path: str | Path, *, device: str | None = None, **options: Any) -> Target:
    """Load a local checkpoint folder as the matching target adapter.

    Parameters
    ----------
    path : str or Path
        The folder.
    device : str, optional
        ``None``/``"auto"``: CUDA when available.
    **options
        Passed to the adapter (``trust_remote_code=``, ``batch_size=``, ``dtype=``, and per
        family ``prompt=``/``max_new_tokens=`` or ``bandwidth=``).

    Raises
    ------
    ValueError
        Unsupported model type, pickle-only weights, or custom code without
        ``trust_remote_code=True``.
    ImportError
        A diffusers pipeline folder while the diffusers adapter is not installed.
    """
    folder = Path(path)
    kind = detect_kind(folder)
    if kind == "diffusers":
        try:
            from core.targets.diffusers_audio import load_pipeline_target
        except ImportError as exc:
            raise ImportError(
                f"{folder} is a diffusers pipeline, but the diffusers adapter (core.targets.diffusers_audio) "
                f"cannot be imported: {exc}"
            ) from exc
        return load_pipeline_target(str(folder), device=device, **options)
    if kind == "seq2seq":
        return _load_seq2seq(folder, device, options)
    return MODEL_TYPES.get(kind).load(folder, device, options)


def _is_local_folder(spec: str) -> bool:
    return not spec.startswith("zoo:") and Path(spec).is_dir()


def local_family(spec: str) -> Family:
    """The family of a checkpoint folder, from its metadata alone."""
    kind = detect_kind(spec)
    if kind == "diffusers":
        return "diffusion"
    return "audio-language" if kind == "seq2seq" else MODEL_TYPES.get(kind).family


@register_loader("local", matches=_is_local_folder, family=local_family)
def _load(spec: str, *, device: str | None = None, **options: Any) -> Target:
    """A local checkpoint folder, dispatched on its own metadata (see :func:`load_local`)."""
    return load_local(spec, device=device, **options)

