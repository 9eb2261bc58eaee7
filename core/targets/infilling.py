"""Infilling Score (eq. 10-11 of the Infilling Score paper) for causal language models.

For token ``x_i`` with ``m_i = min(m, N - 1 - i)`` future tokens and
``x_i* = argmax p(. | x_<i)``::

    score_i =   z(x_i  | x_<i)          + sum_{j=i+1}^{i+m_i} z(x_j | x_<j)
              - z(x_i* | x_<i)          - sum_{j=i+1}^{i+m_i} z(x_j | x_<i, x_i*, x_{i+1:j})

with ``z(x | c) = (log p(x | c) - mu_c) / sigma_c`` normalized by the mean and standard
deviation of ``log p`` under the distribution the term is read from: the original pass for
the ``+`` terms, the pass with ``x_i`` replaced by ``x_i*`` for the ``-`` terms (the
``x_i*`` term's distribution, conditioned on ``x_<i`` only, is the same in both).
Higher = member; the sequence score is the mean of the lowest k% token scores (eq. 11).

The authors' public code (``run.py`` of github.com/neginraoof/mink-plus-plus, function
``calculateInfillPerplexity``) normalizes differently: every future term of both passes is
standardized by the mean and standard deviation of the *replaced* position's distribution
``p(. | x_<i)``, which is the same in both passes, so the mean cancels and the reference
variant reads::

    ref_i = z(x_i | x_<i) - z(x_i* | x_<i)
            + sum_{j=i+1}^{i+m_i} (log p(x_j | x_<j) - log p(x_j | x_<i, x_i*, x_{i+1:j})) / sigma_{x_<i}

Both variants come from the same forward passes (:func:`infilling_scores`). Two further
details of that code are not reproduced: its loop never uses the last token as a future
term (``m_i = min(m, N - 2 - i)``), and it averages ``int(k n)`` tokens (none for short
texts) where the indicators here average ``max(1, floor(k n))``.

Cost: one forward pass over the sequence, then every substitution at once: the prefix's
key/value cache is shared and each substituted sequence only recomputes its ``m`` tokens
(``(N - 2) * m`` new tokens in total, in chunks), so the work is about ``m + 1`` forward
passes instead of ``N``. ``use_cache=False`` recomputes each substituted prefix instead,
for models whose forward does not accept ``past_key_values`` / ``position_ids``.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from core.evidence import n_selected
from core.targets.token_stats import distribution_moments


def _as_ids(input_ids: ArrayLike | torch.Tensor, device: torch.device) -> torch.Tensor:
    ids = input_ids if isinstance(input_ids, torch.Tensor) else torch.as_tensor(np.asarray(input_ids))
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.ndim != 1:
        raise ValueError(f"input_ids must be 1-D or [1, N], got shape {tuple(ids.shape)}")
    return ids.to(device, torch.long)


def cache_keyword(model: torch.nn.Module) -> str:
    """The forward's (and its output's) name for the key/value cache: ``cache`` in recent
    ``transformers``, ``past_key_values`` before (deprecated there, to be removed)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


class InfillingScores(NamedTuple):
    """Per-token Infilling Scores ``[N]`` of one sequence, in both normalizations.

    own : eq. 10 as written: each term standardized by the distribution it is read from.
    ref : the authors' code: future terms standardized by the replaced position's distribution.
    """

    own: NDArray[np.float64]
    ref: NDArray[np.float64]


def _scored(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z-scores and clamped log-probabilities ``[...]`` of ``targets [...]`` under
    ``softmax(logits [..., V])``, float64."""
    logp, mean, std = distribution_moments(logits)
    lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return ((lp - mean) / std).to(torch.float64), lp.to(torch.float64)


def _substituted_z_cached(
    model: torch.nn.Module,
    ids: torch.Tensor,
    xstar: torch.Tensor,
    cache: object,
    m: int,
    chunk_size: int,
    keyword: str = "past_key_values",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, m]`` z-scores and ``[N, m]`` log-probabilities of ``x_{i+1+r}`` after
    substituting ``x_i*``; ``keyword``: the forward's name for ``cache`` (:func:`cache_keyword`).

    NaN where undefined (past the end) and on rows where ``x_i* == x_i``, whose future terms
    cancel exactly.
    """
    N = ids.numel()
    device = ids.device
    out = torch.full((N, m), math.nan, dtype=torch.float64, device=device)
    out_lp = out.clone()
    # Positions with at least one future token whose causal argmax differs from the token:
    # where x_i* == x_i the substituted pass is the original one and its terms cancel.
    rows = torch.nonzero(xstar[1 : N - 1] != ids[1 : N - 1]).flatten() + 1
    offsets = torch.arange(m, device=device)
    for start in range(0, rows.numel(), chunk_size):
        i = rows[start : start + chunk_size]
        B = i.numel()
        pos = i[:, None] + offsets[None, :]  # [B, m] true positions of the new tokens
        src = pos.clamp(max=N - 1)  # tokens past the end are padding whose outputs are unused
        new_ids = ids[src]
        new_ids[:, 0] = xstar[i]
        # Rows come in increasing i, so a chunk only needs the cache of its longest prefix.
        width = int(i.max())
        prefix = (torch.arange(width, device=device)[None, :] < i[:, None]).long()
        attention_mask = torch.cat([prefix, torch.ones(B, m, dtype=torch.long, device=device)], dim=1)
        past = copy.deepcopy(cache)
        if width < N:
            # a negative argument removes that many tokens, across transformers versions
            past.crop(width - N)
        past.batch_repeat_interleave(B)
        logits = model(
            input_ids=new_ids,
            attention_mask=attention_mask,
            position_ids=src,
            use_cache=True,
            **{keyword: past},
        ).logits  # [B, m, V]; row r predicts x_{i+1+r}
        target_pos = (pos + 1).clamp(max=N - 1)
        z, lp = _scored(logits, ids[target_pos])
        valid = (pos + 1) <= N - 1
        out[i] = torch.where(valid, z, torch.full_like(z, math.nan))
        out_lp[i] = torch.where(valid, lp, torch.full_like(lp, math.nan))
    return out, out_lp


def _substituted_z_full(
    model: torch.nn.Module, ids: torch.Tensor, xstar: torch.Tensor, m: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`_substituted_z_cached`, recomputing every substituted prefix."""
    N = ids.numel()
    device = ids.device
    out = torch.full((N, m), math.nan, dtype=torch.float64, device=device)
    out_lp = out.clone()
    rows = [i for i in range(1, N - 1) if int(xstar[i]) != int(ids[i])]
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        lengths = [min(i + m, N - 1) for i in chunk]  # inputs x_0 .. x_{i+m_i-1}
        L = max(lengths)
        batch = torch.zeros(len(chunk), L, dtype=torch.long, device=device)
        mask = torch.zeros(len(chunk), L, dtype=torch.long, device=device)
        for b, (i, n) in enumerate(zip(chunk, lengths)):
            batch[b, :n] = ids[:n]
            batch[b, i] = xstar[i]
            mask[b, :n] = 1
        logits = model(input_ids=batch, attention_mask=mask).logits
        for b, (i, n) in enumerate(zip(chunk, lengths)):
            r = n - i  # m_i
            out[i, :r], out_lp[i, :r] = _scored(logits[b, i:n], ids[i + 1 : n + 1])
    return out, out_lp


def infilling_scores(
    model: torch.nn.Module,
    input_ids: ArrayLike | torch.Tensor,
    m: int,
    *,
    chunk_size: int = 64,
    use_cache: bool = True,
) -> InfillingScores:
    """Per-token Infilling Scores of one sequence (eq. 10), in both normalizations.

    Parameters
    ----------
    model : a transformers causal LM (``model(input_ids=..., attention_mask=...).logits``).
    input_ids : ints ``[N]`` or ``[1, N]``.
    m : number of future tokens (fewer near the end of the sequence); 0 keeps only the
        causal ratio term (the two variants then agree).
    chunk_size : substituted sequences per batched forward.
    use_cache : reuse the prefix key/value cache (cost ~ (m + 1) forward passes); False
        recomputes each substituted prefix (cost ~ N / 2 forward passes).

    Returns
    -------
    InfillingScores
        ``own`` and ``ref``, each ``[N]``: scores for positions 1..N-1 and NaN at position 0
        (no prediction for the first token), aligned with :class:`~core.evidence.TokenStats`.
    """
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    device = _model_device(model)
    ids = _as_ids(input_ids, device)
    N = ids.numel()
    own, ref = np.full(N, np.nan), np.full(N, np.nan)
    if N < 2:
        return InfillingScores(own, ref)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = torch.ones(1, N, dtype=torch.long, device=device)
            res = model(input_ids=ids[None], attention_mask=mask, use_cache=use_cache and m > 0)
            logits = res.logits[0]  # [N, V]; row t predicts x_{t+1}
            logp, mean, std = distribution_moments(logits[:-1])
            xstar = torch.zeros(N, dtype=torch.long, device=device)
            xstar[1:] = logp.argmax(dim=-1)
            lp = logp.gather(-1, ids[1:, None]).squeeze(-1)
            z_true = ((lp - mean) / std).to(torch.float64)
            lp_true = lp.to(torch.float64)
            z_star = ((logp.gather(-1, xstar[1:, None]).squeeze(-1) - mean) / std).to(torch.float64)
            causal = z_true - z_star  # [N-1], index i-1 for token i
            total, total_ref = causal, causal.clone()
            if m > 0 and N > 2:
                if use_cache:
                    kw = cache_keyword(model)
                    sub_z, sub_lp = _substituted_z_cached(model, ids, xstar, getattr(res, kw), m, chunk_size, kw)
                else:
                    sub_z, sub_lp = _substituted_z_full(model, ids, xstar, m, chunk_size)
                # future term j = i + 1 + r reads the original pass at j - 1 = i + r
                idx = torch.arange(1, N, device=device)[:, None] + torch.arange(m, device=device)[None, :]
                nan_tail = torch.full((m,), math.nan, dtype=torch.float64, device=device)
                plus_z = torch.cat([z_true, nan_tail])[idx]  # [N-1, m]
                plus_lp = torch.cat([lp_true, nan_tail])[idx]
                defined = ~torch.isnan(sub_z[1:])
                zero = torch.zeros_like(plus_z)
                total = total + torch.where(defined, plus_z - sub_z[1:], zero).sum(dim=1)
                # the replaced position's sigma (row i-1), the same in both passes
                sigma_i = std.to(torch.float64)[:, None]
                total_ref = total_ref + torch.where(defined, (plus_lp - sub_lp[1:]) / sigma_i, zero).sum(dim=1)
            own[1:] = total.cpu().numpy()
            ref[1:] = total_ref.cpu().numpy()
    finally:
        model.train(was_training)
    return InfillingScores(own, ref)


def infilling_token_scores(
    model: torch.nn.Module,
    input_ids: ArrayLike | torch.Tensor,
    m: int,
    *,
    chunk_size: int = 64,
    use_cache: bool = True,
) -> NDArray[np.float64]:
    """Per-token Infilling Scores of one sequence (eq. 10, each term normalized by its own
    distribution): ``infilling_scores(...).own``, ``[N]`` with NaN at position 0."""
    return infilling_scores(model, input_ids, m, chunk_size=chunk_size, use_cache=use_cache).own


def infilling_score(
    model: torch.nn.Module,
    input_ids: ArrayLike | torch.Tensor,
    m: int,
    k: float = 0.2,
    *,
    chunk_size: int = 64,
    use_cache: bool = True,
) -> float:
    """Sequence Infilling Score (eq. 11): mean of the lowest ``max(1, floor(k n))`` token
    scores over the ``n = N - 1`` scored tokens; higher = member. NaN when ``N < 2``."""
    scores = infilling_token_scores(model, input_ids, m, chunk_size=chunk_size, use_cache=use_cache)
    finite = np.sort(scores[np.isfinite(scores)])
    if finite.size == 0:
        return math.nan
    return float(finite[: n_selected(finite.size, k)].mean())
