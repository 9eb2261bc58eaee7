"""The target adapter interface: a model that turns clips into raw evidence."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from core.config import ACCESS_LEVELS, DEFAULT_GEN_STEPS, Config  # noqa: F401  (re-exported)
from core.evidence import ClipEvidence

Family = Literal["audio-language", "autoregressive", "diffusion"]
ANALYSIS_SR = 16000


@dataclass(frozen=True)
class ClipInput:
    """One clip handed to a target: mono float32 audio at ``sr`` and its text.

    ``text`` is the transcript (audio-language targets in given-text mode) or the caption
    (text-to-audio targets); empty when unknown.
    """

    clip_hash: str
    audio: np.ndarray
    text: str = ""
    sr: int = ANALYSIS_SR


@dataclass(frozen=True)
class EvidenceConfig(Config):
    """How evidence is extracted. Part of every cache key.

    mode : audio-language only: ``"generated"`` (two-stage: greedy decode, then
        teacher-forced re-scoring of the hypothesis) or ``"given"`` (score the clip's own
        transcript).
    infill_m : future tokens for the Infilling Score (0 disables it).
    timesteps : diffusion timesteps (empty = the target's default spread).
    n_noise : fixed noise draws per timestep (diffusion).
    seed : seed of the noise draws (and of the perturbations and generations).
    access : ``"white-box"`` (the fields above) or ``"outputs"``: only what the model returns
        (:mod:`core.targets.outputs`); the fields below apply.
    n_perturb : outputs, audio-language: seeded perturbations of each clip's audio (noise,
        gain, speed in turn) whose transcriptions measure the output's stability.
    n_generations : outputs, text-to-audio: seeded generations from each clip's caption.
    gen_steps : outputs, text-to-audio: sampling steps of a diffusion target's generations.
    clap_model : outputs, text-to-audio: a local CLAP checkpoint folder for ``clap_sim``
        (empty: no CLAP similarity).
    pia : white-box, diffusion: also measure PIA (Kong et al., ICLR 2024) at each timestep:
        one more model call per clip and per timestep, and one at ``t = 0``.
    """

    mode: Literal["generated", "given"] = "generated"
    infill_m: int = 0
    timesteps: tuple[int, ...] = ()
    n_noise: int = 4
    seed: int = 0
    access: Literal["white-box", "outputs"] = "white-box"
    n_perturb: int = 3
    n_generations: int = 4
    gen_steps: int = DEFAULT_GEN_STEPS
    clap_model: str = ""
    pia: bool = False

    def cache_key(self, reads: Sequence[str] | None = None) -> dict:
        """The evidence cache's key for this config.

        ``reads`` (from :func:`evidence_reads`): the settings the target's evidence depends
        on at this access level. Only those key the evidence, so a setting the model never
        reads (the folds' seed for a Whisper model, the text mode for MusicGen) never runs
        it again. Without ``reads``, the key every earlier version wrote (:meth:`legacy_keys`
        reads those): a white-box config's settings without the outputs ones; an outputs
        config's outputs settings and seed. An outputs key carries :data:`OUTPUTS_VERSION`
        (what is fixed in code: perturbation strengths, the samplers' guidance and
        temperature, the similarity metrics).

        A setting of :data:`ADDED_SETTINGS` keys the evidence only when it differs from its
        default there, so adding one left every key written before it as it was.
        """
        d = {k: v for k, v in self.to_dict().items() if ADDED_SETTINGS.get(k, _UNSET) != v}
        if reads is not None:
            key = {k: d[k] for k in sorted(set(reads) | {"access"}) if k in d} | {"identity": EVIDENCE_IDENTITY}
            return key | ({"outputs_version": OUTPUTS_VERSION} if self.access == "outputs" else {})
        if self.access == "white-box":
            return {k: v for k, v in d.items() if k not in OUTPUT_SETTINGS}
        return {k: v for k, v in d.items() if k in OUTPUT_SETTINGS or k == "seed"} | {"outputs_version": OUTPUTS_VERSION}

    def legacy_keys(self, reads: Sequence[str]) -> list[dict]:
        """Keys under which earlier versions may have cached the same evidence: the full key
        of this config, and of this config with every setting the target does not read at
        its default (what most earlier runs used). A hit under one is copied to
        :meth:`cache_key` ``(reads)``, so existing caches stay valid."""
        unread = {k: v for k, v in EvidenceConfig().to_dict().items() if k not in set(reads) | {"access"}}
        keys = [self.cache_key(), dataclasses.replace(self, **unread).cache_key()]
        return [k for i, k in enumerate(keys) if k not in keys[:i]]


OUTPUT_SETTINGS = ("access", "n_perturb", "n_generations", "gen_steps", "clap_model")
WHITE_BOX_SETTINGS = ("mode", "infill_m", "timesteps", "n_noise", "pia", "seed")
_UNSET = object()
ADDED_SETTINGS: dict[str, object] = {"pia": False}
"""White-box settings added after evidence keys were first written, with the value every
earlier key implies: at that value they are left out of the key (:meth:`EvidenceConfig.cache_key`)."""
EVIDENCE_IDENTITY = 2
"""Version of the evidence keys built from what a target reads (:func:`evidence_reads`)."""
OUTPUTS_VERSION = 1
"""Version of the outputs evidence's fixed parts (perturbations, sampler defaults, similarity
metrics): raise it when one changes, so no cached outputs evidence is read as the new kind."""


OUTPUT_READS: dict[str, tuple[str, ...]] = {
    "audio-language": ("n_perturb", "seed"),
    "autoregressive": ("n_generations", "clap_model", "seed"),
    "diffusion": ("n_generations", "gen_steps", "clap_model", "seed"),
}
"""What the outputs evidence of each family depends on: an audio-language model's
transcriptions of seeded perturbations; a text-to-audio model's seeded generations (a
diffusion model's with its sampling steps) and their CLAP similarity."""


def evidence_reads(target, access: str) -> tuple[str, ...]:
    """The :class:`EvidenceConfig` settings ``target``'s evidence depends on at ``access``.

    White-box: the target's ``evidence_reads`` (its class declares it: a speech model reads
    the text mode, a diffusion model its timesteps, noise draws and seed), else every
    white-box setting (a target that declares nothing is keyed on all of them). Outputs:
    :data:`OUTPUT_READS` of its family.
    """
    if access == "outputs":
        return OUTPUT_READS.get(getattr(target, "family", ""), tuple(k for k in OUTPUT_SETTINGS if k != "access") + ("seed",))
    reads = getattr(target, "evidence_reads", None)
    return tuple(reads) if reads is not None else WHITE_BOX_SETTINGS


def check_text_mode(config: EvidenceConfig, clips: Sequence[ClipInput]) -> None:
    """Validate ``config.mode`` for an audio-language target.

    Raises
    ------
    ValueError
        an unknown mode, or ``"given"`` with a clip whose transcript is empty (named).
    """
    if config.mode not in ("generated", "given"):
        raise ValueError(f"unknown mode {config.mode!r}; valid: 'generated', 'given'")
    if config.mode == "given":
        empty = [c.clip_hash for c in clips if not c.text.strip()]
        if empty:
            raise ValueError(
                f"mode 'given' needs a transcript, but clip {empty[0]} has empty text"
                + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else "")
            )


@dataclass(frozen=True)
class TargetInfo:
    """What the target list shows."""

    spec: str
    family: Family
    description: str
    available: bool = True
    detail: dict = field(default_factory=dict)


@runtime_checkable
class Target(Protocol):
    """A loaded model that can be audited.

    ``fingerprint`` hashes the weights and config; with a clip's content hash and the
    evidence config it keys the evidence cache.
    """

    spec: str
    family: Family
    fingerprint: str

    def evidence(
        self, clips: Sequence[ClipInput], config: EvidenceConfig, *, batch_size: int | None = None
    ) -> list[ClipEvidence]:
        """Raw evidence for each clip, in order."""
        ...

    def unload(self) -> None:
        """Release model memory (GPU memory included)."""
        ...


@runtime_checkable
class Transcriber(Protocol):
    """An audio-language target readable at the ``outputs`` access level: it returns its
    answer (a transcription) for each clip. A remote API target offers only this."""

    spec: str
    family: Family
    fingerprint: str

    def transcribe(self, clips: Sequence[ClipInput], *, batch_size: int | None = None) -> list[str]:
        """The model's answer for each clip, in order (greedy; the same clip gives the same text)."""
        ...


@runtime_checkable
class AudioGenerator(Protocol):
    """A text-to-audio target readable at the ``outputs`` access level: it generates audio
    from a caption."""

    spec: str
    family: Family
    fingerprint: str

    def generate(self, captions: Sequence[str], *, n_samples: Sequence[int], sr: int, seeds: Sequence[int],
                 steps: int = DEFAULT_GEN_STEPS) -> list[np.ndarray]:
        """One generation per caption: mono float32 at ``sr``, ``n_samples[i]`` long (cut or
        padded), drawn from seed ``seeds[i]`` (the same seed gives the same audio)."""
        ...


def access_levels(target: object) -> tuple[str, ...]:
    """The access levels ``target`` supports: ``white-box`` when it has :meth:`Target.evidence`
    (unless it declares ``access_levels`` itself, as an API target does), ``outputs`` when it
    can transcribe or generate."""
    declared = getattr(target, "access_levels", None)
    if declared is not None:
        return tuple(declared)
    levels = ["white-box"] if callable(getattr(target, "evidence", None)) else []
    if isinstance(target, (Transcriber, AudioGenerator)):
        levels.append("outputs")
    return tuple(levels)


class TargetUnavailable(RuntimeError):
    """The target itself cannot answer any more (an endpoint that is unreachable or answers
    badly, a spent request budget): the run stops, keeping every clip already cached, rather
    than listing each remaining clip as failed. The message is one line saying what to do."""
