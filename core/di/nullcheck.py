"""False-positive check: the whole DI procedure run on non-members only.

Each resample draws pseudo-suspects from the known non-members, keeps the other
non-members as the reference set, and runs the chosen scorer and the Welch test as
:func:`core.di.dataset_inference` would. The rejection rate at alpha estimates the false
positive rate of the procedure on this data; it should be about alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import beta

from core.di.registry import ScorerConfig, get_scorer
from core.di.scorers import check_features, side_codes
from core.di.welch import grouped_welch


def clopper_pearson(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n."""
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.isf(a, k + 1, n - k))
    return lo, hi


@dataclass(frozen=True)
class NullCheck:
    """Rejection rate of the DI test when the suspects are non-members.

    Attributes
    ----------
    scorer : scorer used (``auto`` resolved).
    alpha : significance level of each run.
    n_suspects : pseudo-suspects per run (drawn from the non-members).
    n_nonmembers : non-members left as the reference set per run.
    n_resamples : number of runs.
    p_values : ``[n_resamples]`` the runs' p-values.
    seed : seed of the resampling.
    level : confidence level of the binomial interval.
    """

    scorer: str
    alpha: float
    n_suspects: int
    n_nonmembers: int
    n_resamples: int
    p_values: NDArray[np.float64]
    seed: int
    level: float = 0.95

    @property
    def rejections(self) -> int:
        return int(np.sum(self.p_values < self.alpha))

    @property
    def rate(self) -> float:
        return self.rejections / self.n_resamples

    @property
    def interval(self) -> tuple[float, float]:
        """Clopper-Pearson interval of the false-positive rate."""
        return clopper_pearson(self.rejections, self.n_resamples, level=self.level)

    @property
    def over_rejects(self) -> bool:
        """True when the interval lies entirely above alpha: the test fires too often here."""
        return self.interval[0] > self.alpha

    def describe(self) -> str:
        lo, hi = self.interval
        return (
            f"{self.rate:.1%} of {self.n_resamples} non-member-only runs rejected at alpha = {self.alpha:g} "
            f"({self.level:.0%} CI {lo:.1%}-{hi:.1%}; {self.n_suspects} pseudo-suspects vs "
            f"{self.n_nonmembers} non-members)"
        )

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval
        return {
            "scorer": self.scorer,
            "alpha": self.alpha,
            "n_suspects": self.n_suspects,
            "n_nonmembers": self.n_nonmembers,
            "n_resamples": self.n_resamples,
            "rejections": self.rejections,
            "rate": self.rate,
            "ci_low": lo,
            "ci_high": hi,
            "level": self.level,
            "over_rejects": self.over_rejects,
            "seed": self.seed,
            "p_values": [float(p) if np.isfinite(p) else None for p in self.p_values],
        }


def null_check(
    nonmember_features: ArrayLike,
    *,
    directions: ArrayLike | None = None,
    scorer: str = "auto",
    n_suspects: int,
    n_resamples: int = 200,
    alpha: float = 0.01,
    seed: int = 0,
    config: ScorerConfig | None = None,
    groups: ArrayLike | None = None,
) -> NullCheck:
    """Run the DI procedure ``n_resamples`` times with pseudo-suspects drawn from non-members.

    Parameters
    ----------
    nonmember_features : ``[n_u, d]`` indicators of known non-members.
    directions : ``[d]`` +1 where higher = member, -1 otherwise, or None.
    scorer : registered scorer name.
    n_suspects : pseudo-suspects per run; the remaining ``n_u - n_suspects`` clips are the
        run's non-members. Each run draws a fresh partition and a fresh scorer split, and
        refits the scorer.
    n_resamples : number of runs.
    alpha : level at which a run counts as a rejection.
    seed : seed of the partitions and of every run's scorer split.
    config : scorer options.
    groups : ``[n_u]`` group labels of the non-members; every run's scorer split then
        keeps each group on one side.

    Returns
    -------
    NullCheck
    """
    cfg = config if config is not None else ScorerConfig()
    U, _, s = check_features(nonmember_features, nonmember_features, directions)
    n_u = U.shape[0]
    if not 0 < n_suspects < n_u:
        raise ValueError(f"n_suspects must be between 1 and {n_u - 1}, got {n_suspects}")
    fn = get_scorer(scorer).score
    codes = None if groups is None else side_codes(groups)
    if codes is not None and codes.size != n_u:
        raise ValueError(f"groups has {codes.size} entries for {n_u} non-members")
    rng = np.random.default_rng(seed)
    pvals = np.empty(n_resamples, dtype=np.float64)
    used = scorer
    for r in range(n_resamples):
        perm = rng.permutation(n_u)
        run_seed = int(rng.integers(0, 2**31 - 1))
        g = None if codes is None else (codes[perm[:n_suspects]], codes[perm[n_suspects:]])
        split = fn(U[perm[:n_suspects]], U[perm[n_suspects:]], directions=s, seed=run_seed, config=cfg, groups=g)
        used = split.scorer
        pvals[r] = grouped_welch(split.p_scores, split.u_scores, p_group=split.p_group, u_group=split.u_group).p_value
    return NullCheck(
        scorer=used,
        alpha=alpha,
        n_suspects=n_suspects,
        n_nonmembers=n_u - n_suspects,
        n_resamples=n_resamples,
        p_values=pvals,
        seed=seed,
    )
