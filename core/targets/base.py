"""The target adapter interface: a model that turns clips into raw evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from core.config import Config
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
    seed : seed of the noise draws.
    """

    mode: Literal["generated", "given"] = "generated"
    infill_m: int = 0
    timesteps: tuple[int, ...] = ()
    n_noise: int = 4
    seed: int = 0


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
