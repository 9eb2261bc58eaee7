"""Per-token statistics of predictive distributions, computed where the logits live.

Adapters call :func:`token_stats_batch` on the device that produced the logits, so the
full ``[B, N, V]`` tensor never leaves it; only a handful of ``[N]`` vectors per clip are
copied back (see :class:`core.evidence.TokenStats`).

Numerics: the log-softmax is taken in float32 (float64 when the logits are float64);
log-probabilities are clamped at :data:`LOGPROB_FLOOR` so that masked vocabulary entries
(``-inf`` logits) and nearly one-hot distributions give finite perplexities, Min-K% and
entropies, and the standard deviation of ``log p`` is clamped at :data:`STD_FLOOR` so that
Min-K%++ never divides by zero.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from core.evidence import TokenStats

LOGPROB_FLOOR = -100.0
"""Smallest log-probability kept (e^-100 ~ 4e-44); anything below reads as this value."""

STD_FLOOR = 1e-6
"""Smallest standard deviation of log p(z) under p (Min-K%++ denominator)."""

_FIELDS = (
    "logprob",
    "entropy",
    "top1",
    "top2",
    "mean_logp",
    "std_logp",
    "renyi_05",
    "renyi_2",
    "renyi_inf",
)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _moments(
    logits: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    logp_raw = torch.log_softmax(logits.to(_work_dtype(logits.dtype)), dim=-1)
    p = logp_raw.exp()
    logp = logp_raw.clamp(min=LOGPROB_FLOOR)
    mean = (p * logp).sum(dim=-1)
    var = (p * (logp - mean.unsqueeze(-1)).square()).sum(dim=-1)
    std = var.clamp(min=0.0).sqrt().clamp(min=STD_FLOOR)
    return logp_raw, p, logp, mean, std


def distribution_moments(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clamped log-probabilities and the mean / std of ``log p(z)`` under ``z ~ p``.

    Parameters
    ----------
    logits : tensor ``[..., V]``.

    Returns
    -------
    logp : ``[..., V]`` log-softmax clamped at :data:`LOGPROB_FLOOR`.
    mean : ``[...]`` E_p[log p].
    std : ``[...]`` sqrt(Var_p[log p]) clamped at :data:`STD_FLOOR`.
    """
    _, _, logp, mean, std = _moments(logits)
    return logp, mean, std


def _stats_tensors(logits: torch.Tensor, target_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every TokenStats field as a tensor ``[...]`` for logits ``[..., V]``."""
    if logits.shape[-1] < 2:
        raise ValueError("token statistics need a vocabulary of at least 2 entries")
    logp_raw, p, logp, mean, std = _moments(logits)
    top = p.topk(2, dim=-1).values
    # Rényi entropies from the unclamped log-probs: logsumexp treats -inf as zero mass.
    renyi_05 = 2.0 * torch.logsumexp(0.5 * logp_raw, dim=-1)
    renyi_2 = -torch.logsumexp(2.0 * logp_raw, dim=-1)
    renyi_inf = -logp.max(dim=-1).values
    return {
        "logprob": logp.gather(-1, target_ids.to(torch.long).unsqueeze(-1)).squeeze(-1),
        "entropy": -mean,
        "top1": top[..., 0],
        "top2": top[..., 1],
        "mean_logp": mean,
        "std_logp": std,
        # Rounding can push an entropy a few ulps below zero on one-hot rows.
        "renyi_05": renyi_05.clamp(min=0.0),
        "renyi_2": renyi_2.clamp(min=0.0),
        "renyi_inf": renyi_inf.clamp(min=0.0),
    }


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _host_field(name: str, values: np.ndarray) -> np.ndarray:
    # float32 1e-6 is 9.99999997e-07: re-apply the floor in float64.
    return np.maximum(values, STD_FLOOR) if name == "std_logp" else values


def token_stats_from_logits(
    logits: ArrayLike | torch.Tensor, target_ids: ArrayLike | torch.Tensor
) -> TokenStats:
    """Per-token statistics of one sequence.

    Parameters
    ----------
    logits : array or tensor ``[N, V]``, any float dtype; row ``i`` is the model's
        prediction for ``target_ids[i]`` (already shifted by the caller).
    target_ids : ints ``[N]``.

    Returns
    -------
    TokenStats
        All fields filled (``infill`` left None), float64 arrays ``[N]``.
    """
    if isinstance(logits, torch.Tensor):
        lt = logits.detach()
    else:
        lt = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    tt = torch.as_tensor(np.asarray(target_ids) if not isinstance(target_ids, torch.Tensor) else target_ids)
    tt = tt.to(lt.device, torch.long).reshape(-1)
    if lt.ndim != 2 or lt.shape[0] != tt.shape[0]:
        raise ValueError(f"logits must be [N, V] with N = len(target_ids); got {tuple(lt.shape)} and {tt.shape[0]} targets")
    with torch.no_grad():
        stats = _stats_tensors(lt, tt)
    return TokenStats(
        token_ids=tt.cpu().numpy().astype(np.int64), **{k: _host_field(k, _to_numpy(stats[k])) for k in _FIELDS}
    )


def token_stats_batch(
    logits: torch.Tensor,
    target_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    rows_per_chunk: int = 8,
) -> list[TokenStats]:
    """Per-token statistics for a padded batch, computed on the logits' device.

    Parameters
    ----------
    logits : tensor ``[B, N, V]``; ``logits[b, i]`` predicts ``target_ids[b, i]``.
    target_ids : tensor ``[B, N]`` (values at masked positions are ignored).
    mask : tensor ``[B, N]``, nonzero where the token is scored.
    rows_per_chunk : sequences processed at once, bounding the float32 ``[chunk, N, V]``
        temporaries.

    Returns
    -------
    list of TokenStats, one per sequence, holding only its masked-in tokens in order.
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be [B, N, V], got {tuple(logits.shape)}")
    B, N, _ = logits.shape
    if tuple(target_ids.shape) != (B, N) or tuple(mask.shape) != (B, N):
        raise ValueError("target_ids and mask must be [B, N] like the logits' first two axes")
    targets = target_ids.to(logits.device, torch.long)
    keep = mask.to(logits.device).bool()
    # Masked positions may hold pad ids outside the vocabulary; any valid id will do there.
    targets = torch.where(keep, targets, torch.zeros_like(targets))
    out: list[TokenStats] = []
    with torch.no_grad():
        for start in range(0, B, max(1, rows_per_chunk)):
            stop = min(B, start + max(1, rows_per_chunk))
            stats = _stats_tensors(logits[start:stop].detach(), targets[start:stop])
            stacked = torch.stack([stats[k] for k in _FIELDS], dim=-1)  # [b, N, F]
            host = _to_numpy(stacked)
            ids_host = targets[start:stop].cpu().numpy().astype(np.int64)
            keep_host = keep[start:stop].cpu().numpy()
            for r in range(stop - start):
                sel = keep_host[r]
                out.append(
                    TokenStats(
                        token_ids=ids_host[r][sel],
                        **{k: _host_field(k, np.ascontiguousarray(host[r][sel, f])) for f, k in enumerate(_FIELDS)},
                    )
                )
    return out
