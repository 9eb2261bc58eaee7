"""Distribution-matched subsets by propensity-score matching on the blind score.

The out-of-fold blind score is an estimate of P(member | model-free features), i.e. a
propensity score. Matching each member to the nearest non-member on the logit of that
score (1:1, without replacement, within a caliper of 0.2 standard deviations of the
logit, Austin 2011) keeps pairs that the blind features cannot tell apart; re-running
the blind baseline on the matched subset should then give an AUC near 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from core.blind.diagnostics import BlindResult, Table, run_blind

__all__ = ["MatchRecheck", "MatchResult", "match", "match_and_recheck"]

_EPS = 1e-6


@dataclass(frozen=True)
class MatchResult:
    """Matched pairs: ``member_idx[i]`` is paired with ``nonmember_idx[i]``.

    Attributes
    ----------
    member_idx, nonmember_idx : np.ndarray [shape=(n_pairs,)], clip indices.
    caliper_sd : the caliper in standard deviations of the logit propensity.
    caliper : the same caliper in logit units.
    n_members, n_nonmembers : clips before matching.
    """

    member_idx: NDArray[np.int64]
    nonmember_idx: NDArray[np.int64]
    caliper_sd: float
    caliper: float
    n_members: int
    n_nonmembers: int

    @property
    def n_pairs(self) -> int:
        return int(self.member_idx.size)

    @property
    def indices(self) -> NDArray[np.int64]:
        """All matched clip indices, sorted (to subset tables and labels)."""
        return np.sort(np.r_[self.member_idx, self.nonmember_idx])

    def to_dict(self) -> dict:
        return {
            "n_pairs": self.n_pairs,
            "n_members_before": self.n_members,
            "n_nonmembers_before": self.n_nonmembers,
            "members_kept": self.n_pairs / max(self.n_members, 1),
            "nonmembers_kept": self.n_pairs / max(self.n_nonmembers, 1),
            "caliper_sd": self.caliper_sd,
            "caliper_logit": self.caliper,
            "member_idx": [int(i) for i in self.member_idx],
            "nonmember_idx": [int(i) for i in self.nonmember_idx],
        }


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def match(
    blind_scores: ArrayLike,
    labels: ArrayLike,
    *,
    caliper: float = 0.2,
    seed: int = 0,
) -> MatchResult:
    """1:1 greedy nearest-neighbour matching of members to non-members.

    Parameters
    ----------
    blind_scores : array-like [n_clips]
        Out-of-fold membership propensity in (0, 1) (e.g. ``BlindResult.blind_score``).
    labels : array-like [n_clips]
        1 = member, 0 = non-member.
    caliper : float
        Maximum pair distance in standard deviations of the logit propensity (pooled
        over all clips); pairs farther apart are not formed.
    seed : int
        Members are visited in a random order (greedy matching depends on order).

    Returns
    -------
    MatchResult
    """
    s = np.asarray(blind_scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("blind scores contain NaN or Inf")
    if caliper <= 0:
        raise ValueError("caliper must be positive")
    z = _logit(s)
    width = float(caliper * np.std(z))
    mem = np.flatnonzero(y == 1)
    non = np.flatnonzero(y == 0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(mem)
    free = np.ones(non.size, dtype=bool)
    zn = z[non]
    pm: list[int] = []
    pn: list[int] = []
    for i in order:
        if not free.any():
            break
        d = np.where(free, np.abs(zn - z[i]), np.inf)
        j = int(np.argmin(d))
        if d[j] <= width:
            free[j] = False
            pm.append(int(i))
            pn.append(int(non[j]))
    return MatchResult(
        member_idx=np.asarray(pm, dtype=np.int64),
        nonmember_idx=np.asarray(pn, dtype=np.int64),
        caliper_sd=float(caliper),
        caliper=width,
        n_members=int(mem.size),
        n_nonmembers=int(non.size),
    )


@dataclass(frozen=True)
class MatchRecheck:
    """Blind baseline before and after matching."""

    before: BlindResult
    matching: MatchResult
    after: BlindResult | None
    warnings: list[str]

    def to_dict(self) -> dict:
        return {
            "before": self.before.to_dict(),
            "matching": self.matching.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
            "warnings": list(self.warnings),
        }


def match_and_recheck(
    tables: Mapping[str, Table],
    labels: ArrayLike,
    *,
    caliper: float = 0.2,
    n_splits: int = 10,
    seed: int = 0,
    n_boot: int = 1000,
    C: float = 1.0,
) -> MatchRecheck:
    """Run the blind baseline, match on its combined score, and re-run it on the pairs.

    The ``after`` result's AUC (with its interval) shows whether the matched subset is
    free of the detected shift; it is None when fewer than 2 pairs survive.
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    before = run_blind(tables, y, n_splits=n_splits, seed=seed, n_boot=n_boot, C=C)
    m = match(before.blind_score, y, caliper=caliper, seed=seed)
    notes: list[str] = []
    if m.n_pairs < 2:
        notes.append(f"only {m.n_pairs} pairs within the caliper; no matched re-check possible")
        return MatchRecheck(before, m, None, notes)
    idx = m.indices
    sub = {g: t.iloc[idx] for g, t in tables.items()}
    after = run_blind(sub, y[idx], n_splits=n_splits, seed=seed, n_boot=n_boot, C=C)
    kept = m.n_pairs / max(min(m.n_members, m.n_nonmembers), 1)
    if kept < 0.5:
        notes.append(
            f"matching kept {m.n_pairs} pairs ({kept:.0%} of the smaller class): the matched "
            "subset may not represent the original population"
        )
    return MatchRecheck(before, m, after, notes)
