"""Per-sample membership indicators from token statistics.

The Phase 2 indicator suite of the LALM membership-inference paper with the multi-modal
blind baseline (``lalm-mia-blind-baseline``, Sec. 2.3 and 3.3): perplexity, Shannon
entropy, Min-k% / Max-k% probability, Max-Rényi, the zlib ratio and the top-1/top-2
probability gap, plus Min-K%++ (Zhang et al. 2024) and the Infilling Score (eq. 11 of the
Infilling Score paper) when the evidence carries per-token infilling scores.

Every k-indexed family is computed over the grid k = 0.05, 0.1, ..., 0.6 and a family
averages the ``max(1, floor(k N))`` selected tokens of an ``N``-token sequence. Which
direction means "member" is recorded per family in :mod:`core.mia.registry`:

=============  ==========================================  ==================
family         column keys                                  member when
=============  ==========================================  ==================
ppl            ``ppl``                                      lower
entropy        ``entropy``                                  lower
prob_gap       ``prob_gap``                                 higher
prob_gap_log   ``prob_gap_log`` (VL-MIA's definition)       higher
zlib           ``zlib``                                     lower
min_k          ``min_k@0.05`` ... ``min_k@0.6``             higher (log-prob)
max_k          ``max_k@0.05`` ... ``max_k@0.6``             higher (log-prob)
min_k_pp       ``min_k_pp@0.05`` ... ``min_k_pp@0.6``       higher
max_renyi      ``max_renyi[a]@k``, a in 0.5, 1, 2, inf      lower
infill         ``infill@0.05`` ... ``infill@0.6``           higher
infill_ref     ``infill_ref@0.05`` ... ``infill_ref@0.6``   higher
=============  ==========================================  ==================

``infill`` follows eq. 10 as printed (each term normalized by its own predictive
distribution); ``infill_ref`` follows the authors' public code (the future terms normalized
by the replaced position's distribution), see :mod:`core.targets.infilling`.
"""

from __future__ import annotations

import math
import zlib as _zlib

import numpy as np
from numpy.typing import NDArray

from core.mia.registry import families, register_indicator
from core.evidence import TokenStats, n_selected

K_GRID: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(1, 13))
"""k = 0.05, 0.1, ..., 0.6 (the sweep of the LALM paper, Sec. 3.3)."""

RENYI_ORDERS: tuple[str, ...] = ("0.5", "1", "2", "inf")
"""Rényi orders of Max-Rényi. Order 0 is left out: for a full-support softmax it is the
constant log V, identical for every token and clip."""

_LALM = "lalm-mia-blind-baseline (Sec. 2.3)"


def k_label(k: float) -> str:
    """The shortest repr of a grid value, as used in column keys (``0.05``, ``0.2``)."""
    return repr(round(float(k), 2))


def _mean_lowest(values: NDArray[np.float64], k: float) -> float:
    return float(np.mean(np.sort(values)[: n_selected(values.size, k)]))


def _mean_highest(values: NDArray[np.float64], k: float) -> float:
    return float(np.mean(np.sort(values)[::-1][: n_selected(values.size, k)]))


def _nll(stats: TokenStats) -> NDArray[np.float64]:
    return -np.asarray(stats.logprob, dtype=np.float64)


def zlib_bytes(stats: TokenStats, text: str | None) -> bytes:
    """Bytes whose zlib-compressed length normalizes the NLL.

    For text targets these are the UTF-8 bytes of the text the model read or produced; for
    audio-token targets (``text is None``) the text is the token sequence's bytes
    (``token_ids`` as little-endian int64).
    """
    if text is None:
        return np.asarray(stats.token_ids).astype("<i8").tobytes()
    return text.encode("utf-8")


@register_indicator(
    "ppl", higher_is_member=False, evidence="tokens",
    description="perplexity exp(mean token NLL)", reference=_LALM,
)
def ppl(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    return {"ppl": float(np.exp(np.mean(_nll(stats))))}


@register_indicator(
    "entropy", higher_is_member=False, evidence="tokens",
    description="mean Shannon entropy of the predictive distributions (nats)", reference=_LALM,
)
def entropy(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    return {"entropy": float(np.mean(stats.entropy))}


@register_indicator(
    "prob_gap", higher_is_member=True, evidence="tokens",
    description="mean gap between the top-1 and top-2 probabilities", reference=_LALM,
)
def prob_gap(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    return {"prob_gap": float(np.mean(np.asarray(stats.top1) - np.asarray(stats.top2)))}


LOG_FLOOR = 1e-12
"""Probabilities are clamped here before a log (a one-hot row's top-2 is 0)."""


@register_indicator(
    "prob_gap_log", higher_is_member=True, evidence="tokens",
    description="mean gap between the top-1 and top-2 log-probabilities (VL-MIA's reference definition)",
    reference="Li et al. 2024, Membership Inference Attacks against Large Vision-Language Models (VL-MIA)",
)
def prob_gap_log(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    top1 = np.maximum(np.asarray(stats.top1, dtype=np.float64), LOG_FLOOR)
    top2 = np.maximum(np.asarray(stats.top2, dtype=np.float64), LOG_FLOOR)
    return {"prob_gap_log": float(np.mean(np.log(top1) - np.log(top2)))}


@register_indicator(
    "zlib", higher_is_member=False, evidence="tokens",
    description="mean token NLL / zlib-compressed length of the text (token bytes for audio tokens)",
    reference=_LALM,
)
def zlib_ratio(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    size = len(_zlib.compress(zlib_bytes(stats, text)))
    return {"zlib": float(np.mean(_nll(stats)) / size)}


@register_indicator(
    "min_k", higher_is_member=True, evidence="tokens",
    description="mean log-prob of the k% least likely tokens (Min-k% Prob)", reference=_LALM,
)
def min_k(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    lp = np.asarray(stats.logprob, dtype=np.float64)
    return {f"min_k@{k_label(k)}": _mean_lowest(lp, k) for k in K_GRID}


@register_indicator(
    "max_k", higher_is_member=True, evidence="tokens",
    description="mean log-prob of the k% most likely tokens (Max-k% Prob)", reference=_LALM,
)
def max_k(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    lp = np.asarray(stats.logprob, dtype=np.float64)
    return {f"max_k@{k_label(k)}": _mean_highest(lp, k) for k in K_GRID}


@register_indicator(
    "min_k_pp", higher_is_member=True, evidence="tokens",
    description="Min-K%++: lowest k% of (log p - E_p[log p]) / std_p[log p]",
    reference="Zhang et al. 2024; infilling-score eq. 3-4",
)
def min_k_pp(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    z = (np.asarray(stats.logprob, dtype=np.float64) - stats.mean_logp) / stats.std_logp
    return {f"min_k_pp@{k_label(k)}": _mean_lowest(z, k) for k in K_GRID}


@register_indicator(
    "max_renyi", higher_is_member=False, evidence="tokens",
    description="mean of the k% largest per-token Rényi entropies, orders 0.5, 1, 2, inf "
    "(order 0 is the constant log V for a full-support softmax and is omitted)",
    reference=_LALM,
)
def max_renyi(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    per_order = {
        "0.5": stats.renyi_05,
        "1": stats.entropy,
        "2": stats.renyi_2,
        "inf": stats.renyi_inf,
    }
    out: dict[str, float] = {}
    for order in RENYI_ORDERS:
        h = np.asarray(per_order[order], dtype=np.float64)
        for k in K_GRID:
            out[f"max_renyi[{order}]@{k_label(k)}"] = _mean_highest(h, k)
    return out


def _lowest_k_family(prefix: str, values: NDArray[np.float64] | None) -> dict[str, float]:
    """``{prefix@k: mean of the k% lowest finite values}``; empty when there are none."""
    if values is None:
        return {}
    scores = np.asarray(values, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        return {}
    return {f"{prefix}@{k_label(k)}": _mean_lowest(scores, k) for k in K_GRID}


@register_indicator(
    "infill", higher_is_member=True, evidence="tokens",
    description="Infilling Score: mean of the k% lowest per-token infilling scores",
    reference="infilling-score eq. 10-11",
)
def infill(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    return _lowest_k_family("infill", stats.infill)


@register_indicator(
    "infill_ref", higher_is_member=True, evidence="tokens",
    description="Infilling Score as the authors' code normalizes it (future terms by the replaced "
    "position's distribution): mean of the k% lowest per-token scores",
    reference="infilling-score eq. 11; authors' code (neginraoof/mink-plus-plus, run.py)",
)
def infill_ref(stats: TokenStats, *, text: str | None = None) -> dict[str, float]:
    return _lowest_k_family("infill_ref", stats.infill_ref)


def token_indicator_keys(*, with_infill: bool = True) -> tuple[str, ...]:
    """Every column key the registered token indicator families produce, in output order
    (read from the families themselves on a one-token sequence, so a new family's keys are
    here without a list to keep)."""
    one = np.ones(1)
    stats = TokenStats(np.zeros(1, dtype=np.int64), -one, one, 0.5 * one, 0.25 * one, -one, one, one, one, one,
                       infill=-one if with_infill else None, infill_ref=-one if with_infill else None)
    keys: list[str] = []
    for fam in families("tokens"):
        keys += [k for k in fam.fn(stats, text="a") if k not in keys]
    return tuple(keys)


def compute_indicators(stats: TokenStats, text: str | None = None) -> dict[str, float]:
    """Every registered token indicator of one clip.

    Parameters
    ----------
    stats : per-token statistics ``[N]`` of one clip.
    text : the text the model read or produced, for the zlib ratio; None for audio-token
        targets, whose "text" is the token sequence's bytes.

    Returns
    -------
    dict
        Column key -> value. An empty sequence (``N = 0``) gives NaN for every key except
        ``infill@*`` and ``infill_ref@*``, which appear only when ``stats.infill`` (or
        ``stats.infill_ref``) has finite entries.
    """
    if len(stats) == 0:
        return {key: math.nan for key in token_indicator_keys(with_infill=False)}
    out: dict[str, float] = {}
    for fam in families("tokens"):
        out.update(fam.fn(stats, text=text))
    return out
