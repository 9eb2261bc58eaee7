"""Distribution-matched subsets by propensity-score matching on the blind score.

The blind score is an estimate of P(member | model-free features), i.e. a propensity
score. Matching each member to the nearest non-member on the logit of that score (1:1,
without replacement, within a caliper of 0.2 standard deviations of the logit, Austin
2011) keeps pairs that the blind features cannot tell apart.

The re-check must not be circular: re-testing the same features on the clips they were
selected with builds an after-matching AUC near 0.5 into the procedure, and so does
re-checking one half with a model that learnt from clips matched with the other half's
labels. The re-check therefore splits the clips in three (stratified, grouped when groups
are given) and rotates: one part fits the propensity model; the two others are each
matched on its (out-of-sample) scores; each matched part is then scored by a fresh blind
classifier fitted on the other matched part. The after-matching AUC is the mean over the
three rotations of the AUC of those held-out scores: no clip's label is used to fit the
propensity that selected it's partner's scorer, nor the classifier that scores it.
The matched dataset itself is matched on the out-of-fold propensity of all clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from core import stats
from core.blind.diagnostics import ALL, BlindConfig, BlindResult, Table, _design, run_blind
from core.config import DEFAULT_N_BOOT, DEFAULT_N_SPLITS

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


def _parts(y: NDArray[np.int64], groups: ArrayLike | None, grouping: str, seed: int, k: int = 3) -> NDArray[np.int64]:
    """Part of each clip (0..k-1): stratified by label, whole groups kept in one part."""
    return stats.make_folds(y, groups=groups, grouping=grouping, n_splits=k, seed=seed + 1).fold_of


def _fit_score(design, train: NDArray[np.int64], test: NDArray[np.int64], y: NDArray[np.int64]) -> NDArray[np.float64]:
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = clone(design.estimator).fit(design.X[train], y[train])
    return model.predict_proba(design.X[test])[:, 1]


def _enough(y: NDArray[np.int64]) -> bool:
    return bool((y == 1).sum() >= 2 and (y == 0).sum() >= 2)


def _heldout_recheck(tables: Mapping[str, Table], y: NDArray[np.int64], part: NDArray[np.int64], caliper: float,
                     cfg: BlindConfig, n_boot: int, seed: int) -> tuple[BlindResult | None, int]:
    """The rotated held-out re-check (module docstring): per group, the mean over rotations
    of the AUC of held-out scores of matched clips, and the mean bootstrap interval.
    Returns (result or None when a rotation has too few pairs, matched clips per rotation)."""
    full = _design(dict(tables), cfg)
    rotations: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []  # (matched clips of part a, of part b)
    for r in range(3):
        prop_rows = np.flatnonzero(part == r)
        if not _enough(y[prop_rows]):
            return None, 0
        matched = []
        for q in ((r + 1) % 3, (r + 2) % 3):
            rows = np.flatnonzero(part == q)
            p = _fit_score(full, prop_rows, rows, y)
            m = match(p, y[rows], caliper=caliper, seed=seed + q)
            matched.append(rows[m.indices])
        if not (_enough(y[matched[0]]) and _enough(y[matched[1]])):
            return None, 0
        rotations.append((matched[0], matched[1]))
    auc: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    names = [*tables.keys(), ALL]
    for name in names:
        design = _design(dict(tables) if name == ALL else {name: tables[name]}, cfg)
        a, lo, hi = [], [], []
        for ma, mb in rotations:
            rows = np.r_[ma, mb]
            s = np.r_[_fit_score(design, mb, ma, y), _fit_score(design, ma, mb, y)]
            a.append(stats.auc(y[rows], s))
            c = stats.auc_ci(y[rows], s, n_boot=n_boot, seed=seed)
            lo.append(c[0])
            hi.append(c[1])
        auc[name], ci[name] = float(np.mean(a)), (float(np.mean(lo)), float(np.mean(hi)))
    size = int(np.mean([ma.size + mb.size for ma, mb in rotations]))
    empty = np.zeros(0)
    return BlindResult(
        groups=tuple(names), labels=np.r_[np.ones(size // 2, np.int64), np.zeros(size - size // 2, np.int64)],
        auc=auc, auc_ci=ci, scores={g: empty for g in names}, roc={g: (empty, empty) for g in names},
        top_features=[], top_by_group={}, config=cfg,
        warnings=[f"after matching: held-out re-check, 3 rotations (propensity fitted on one third, matching and a cross-fitted "
                  f"re-check on the other two; about {size} matched clips per rotation); interval: mean bootstrap interval"],
    ), size


def match_and_recheck(
    tables: Mapping[str, Table],
    labels: ArrayLike,
    *,
    caliper: float = 0.2,
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    C: float = 1.0,
    groups: ArrayLike | None = None,
    grouping: str = "group",
    permutations: stats.PermutationConfig = stats.PermutationConfig(),
) -> MatchRecheck:
    """Run the blind baseline, match on its out-of-fold score, and re-check the matching
    procedure on held-out clips (see the module docstring).

    The ``after`` result's AUC (with its interval) shows whether the matched subset is
    free of the detected shift; it is None when too few pairs survive in either half.
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    before = run_blind(tables, y, n_splits=n_splits, seed=seed, n_boot=n_boot, C=C, groups=groups, grouping=grouping,
                       permutations=permutations)
    cfg = BlindConfig(n_splits=n_splits, seed=seed, n_boot=n_boot, C=C)
    m = match(before.blind_score, y, caliper=caliper, seed=seed)
    notes: list[str] = []
    after, _ = _heldout_recheck(tables, y, _parts(y, groups, grouping, seed), caliper, cfg, n_boot, seed) if m.n_pairs >= 2 else (None, 0)
    if after is None:
        notes.append(f"only {m.n_pairs} pairs within the caliper, or too few per label in a third of the clips: no held-out re-check possible")
        return MatchRecheck(before, m, None, notes)
    kept = m.n_pairs / max(min(m.n_members, m.n_nonmembers), 1)
    if kept < 0.5:
        notes.append(
            f"matching kept {m.n_pairs} pairs ({kept:.0%} of the smaller class): the matched "
            "subset may not represent the original population"
        )
    return MatchRecheck(before, m, after, notes)
