"""Membership features from the denoising losses of a diffusion target.

Features of the audio generative-model MIA / dataset-inference paper
(``audio-generative-mia-and-dataset-inference``, "denoising dynamics" for diffusion
models): the noise-prediction loss per timestep (mean over the fixed noise draws), the gap
between the caption-conditioned and the unconditional loss, the slope of the loss over
timesteps, and the SecMI-style deterministic step error when the adapter measured it.

Directions (registered in :mod:`core.mia.registry`):

- ``loss@t{t}``, ``loss_mean``: lower loss = member (training clips are fitted more tightly).
- ``cond_gap@t{t}`` = loss_cond - loss_uncond: more negative = member (the caption helps
  more on clips the model was trained on with that caption).
- ``step_error@t{t}``: lower = member (SecMI).
- ``pia@t{t}``: lower = member (PIA: a member's noise estimate at ``t`` stays closer to the
  model's own estimate on the clean clip). Present only when the evidence measured it.
- ``loss_slope``: higher (flatter) = member. The epsilon-prediction loss falls with t for
  every clip, and memorization lowers it mostly at small and intermediate t, which leaves a
  member's curve flatter. The aggregate's weights are non-negative on the aligned
  indicators, so this sign also decides whether the aggregate can use the slope at all.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from core.mia.registry import families, register_indicator
from core.evidence import DiffusionEvidence

_PAPER = "audio-generative-mia-and-dataset-inference"


def _t(t: int | np.integer) -> str:
    return f"t{int(t)}"


def _mean_cond(ev: DiffusionEvidence) -> NDArray[np.float64]:
    per_t: NDArray[np.float64] = np.asarray(ev.loss_cond, dtype=np.float64).reshape(len(ev.timesteps), -1).mean(axis=1)
    return per_t


@register_indicator(
    "loss", higher_is_member=False, evidence="diffusion",
    description="conditional denoising loss at timestep t (mean over noise draws)", reference=_PAPER,
)
def loss_per_t(ev: DiffusionEvidence) -> dict[str, float]:
    return {f"loss@{_t(t)}": float(v) for t, v in zip(ev.timesteps, _mean_cond(ev))}


@register_indicator(
    "cond_gap", higher_is_member=False, evidence="diffusion",
    description="conditional minus unconditional loss at timestep t", reference=_PAPER,
)
def cond_gap(ev: DiffusionEvidence) -> dict[str, float]:
    uncond = np.asarray(ev.loss_uncond, dtype=np.float64)
    if uncond.size == 0:
        return {}
    gap = _mean_cond(ev) - uncond.reshape(len(ev.timesteps), -1).mean(axis=1)
    return {f"cond_gap@{_t(t)}": float(v) for t, v in zip(ev.timesteps, gap)}


@register_indicator(
    "loss_slope", higher_is_member=True, evidence="diffusion",
    description="least-squares slope of the mean conditional loss over t", reference=_PAPER,
)
def loss_slope(ev: DiffusionEvidence) -> dict[str, float]:
    t = np.asarray(ev.timesteps, dtype=np.float64)
    if np.unique(t).size < 2:
        return {"loss_slope": math.nan}
    slope = np.polyfit(t, _mean_cond(ev), 1)[0]
    return {"loss_slope": float(slope)}


@register_indicator(
    "step_error", higher_is_member=False, evidence="diffusion",
    description="SecMI deterministic step error at timestep t", reference="SecMI; " + _PAPER,
)
def step_error(ev: DiffusionEvidence) -> dict[str, float]:
    err = np.asarray(ev.step_error, dtype=np.float64).ravel()
    if err.size != len(ev.timesteps):
        return {}
    return {f"step_error@{_t(t)}": float(v) for t, v in zip(ev.timesteps, err)}


@register_indicator(
    "pia", higher_is_member=False, evidence="diffusion",
    description="PIA distance at timestep t (proximal initialization, l4)",
    reference="PIA (Kong et al., ICLR 2024); " + _PAPER,
)
def pia(ev: DiffusionEvidence) -> dict[str, float]:
    dist = np.asarray(ev.pia, dtype=np.float64).ravel()
    if dist.size != len(ev.timesteps):
        return {}
    return {f"pia@{_t(t)}": float(v) for t, v in zip(ev.timesteps, dist)}


@register_indicator(
    "loss_mean", higher_is_member=False, evidence="diffusion",
    description="conditional loss averaged over timesteps and noise draws", reference=_PAPER,
)
def loss_mean(ev: DiffusionEvidence) -> dict[str, float]:
    return {"loss_mean": float(np.mean(np.asarray(ev.loss_cond, dtype=np.float64)))}


def diffusion_features(ev: DiffusionEvidence) -> dict[str, float]:
    """Every registered diffusion feature of one clip.

    Parameters
    ----------
    ev : denoising evidence with ``timesteps [T]``, ``loss_cond [T, K]``,
        ``loss_uncond [T, K]`` (may be empty) and ``step_error [T]`` (may be empty).

    Returns
    -------
    dict
        ``loss@t{t}`` and ``cond_gap@t{t}`` per timestep, ``loss_slope`` (NaN with a single
        timestep), ``step_error@t{t}`` when present, and ``loss_mean``.
    """
    if len(ev.timesteps) == 0:
        raise ValueError("diffusion evidence has no timesteps")
    out: dict[str, float] = {}
    for fam in families("diffusion"):
        out.update(fam.fn(ev))
    return out
