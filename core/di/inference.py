"""Dataset inference: was this suspect collection, as a whole, used to train the model?

Per-clip membership indicators of the suspects P and of known non-members U go through a
scorer (fitted on clips that are then left out of the test) and Welch's one-sided t-test at
alpha (0.01 by default), following "Membership and Dataset Inference Attacks on Large Audio
Generative Models" (arXiv 2512.09654). A null check (the same procedure on non-members
only) is reported beside the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from core.config import Config
from core.di.nullcheck import NullCheck
from core.di.nullcheck import null_check as run_null_check
from core.di.registry import ScorerConfig, get_scorer
from core.di.scorers import check_features, encode_groups
from core.di.welch import grouped_welch

MIN_NONMEMBERS_FOR_NULL_CHECK = 40
MIN_TESTED_FOR_NORMAL_APPROX = 20


@dataclass(frozen=True)
class DIConfig(Config):
    """Configuration of one dataset-inference run (hashable; a cache key).

    Attributes
    ----------
    scorer : registered scorer name (``auto``, ``control_split``, ``normalized_sum``, ``pooled_sum``, ``cross_fit``, ``mean_loss``).
    alpha : significance level of the one-sided Welch test.
    seed : seed of the scorer's fit/test split and of the null check.
    null_check : run the null check; None = when there are enough non-members.
    null_resamples : runs in the null check.
    scorer_config : options passed to the scorer.
    """

    scorer: str = "auto"
    alpha: float = 0.01
    seed: int = 0
    null_check: bool | None = None
    null_resamples: int = 200
    scorer_config: ScorerConfig = field(default_factory=ScorerConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        get_scorer(self.scorer)


def _floats(x: NDArray[np.float64]) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(x, dtype=np.float64)]


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


@dataclass(frozen=True)
class DIResult:
    """Outcome of :func:`dataset_inference`.

    Attributes
    ----------
    scorer : scorer actually used (``auto`` resolved).
    alpha : significance level.
    p_value : one-sided Welch p-value, H1: suspects score higher.
    t_statistic, df : the test statistic and its degrees of freedom.
    rejected : ``p_value < alpha``.
    p_scores : ``[m_p]`` scores of the tested suspects, the ones the t-test used.
    u_scores : ``[m_u]`` scores of the tested non-members.
    p_index, u_index : rows of the input matrices those scores belong to.
    p_group, u_group : which fitted scorer (fold) produced each score.
    n_suspects, n_nonmembers : clips given (tested or used for fitting).
    null_check : the false-positive check, or None when it was not run.
    warnings : caveats for the reader.
    config : the :class:`DIConfig` as a dict.
    """

    scorer: str
    alpha: float
    p_value: float
    t_statistic: float
    df: float
    rejected: bool
    p_scores: NDArray[np.float64]
    u_scores: NDArray[np.float64]
    p_index: NDArray[np.int64]
    u_index: NDArray[np.int64]
    p_group: NDArray[np.int64]
    u_group: NDArray[np.int64]
    n_suspects: int
    n_nonmembers: int
    null_check: NullCheck | None
    warnings: tuple[str, ...]
    config: dict[str, Any]

    @property
    def n_tested_suspects(self) -> int:
        return int(self.p_scores.size)

    @property
    def n_tested_nonmembers(self) -> int:
        return int(self.u_scores.size)

    def verdict(self) -> str:
        """A plain-language verdict with its caveats."""
        size = (
            f"Welch one-sided, {self.n_tested_suspects} suspects tested against "
            f"{self.n_tested_nonmembers} non-members, scorer {self.scorer}"
        )
        if self.rejected:
            text = (
                f"The suspect set scores higher than the non-members (p = {self.p_value:.2g} < "
                f"alpha = {self.alpha:g}, {size}): evidence that it was used in training."
            )
        else:
            text = (
                f"The suspect set does not score significantly higher than the non-members "
                f"(p = {self.p_value:.2g} >= alpha = {self.alpha:g}, {size}): no evidence that it was "
                f"used in training, which does not show that it was not (the test may lack power)."
            )
        if self.null_check is None:
            text += " No null check was run."
        else:
            text += f" Null check: {self.null_check.describe()}."
            if self.null_check.over_rejects:
                text += " Caution: the test fires on non-members more often than alpha, so this p-value is not reliable."
        if self.warnings:
            text += f" {len(self.warnings)} warning(s): " + "; ".join(self.warnings) + "."
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "alpha": self.alpha,
            "p_value": _num(self.p_value),
            "t_statistic": _num(self.t_statistic),
            "df": _num(self.df),
            "rejected": self.rejected,
            "p_scores": _floats(self.p_scores),
            "u_scores": _floats(self.u_scores),
            "p_index": self.p_index.tolist(),
            "u_index": self.u_index.tolist(),
            "p_group": self.p_group.tolist(),
            "u_group": self.u_group.tolist(),
            "n_suspects": self.n_suspects,
            "n_nonmembers": self.n_nonmembers,
            "n_tested_suspects": self.n_tested_suspects,
            "n_tested_nonmembers": self.n_tested_nonmembers,
            "null_check": None if self.null_check is None else self.null_check.to_dict(),
            "warnings": list(self.warnings),
            "config": self.config,
            "verdict": self.verdict(),
        }


def dataset_inference(
    suspect_features: ArrayLike,
    nonmember_features: ArrayLike,
    *,
    directions: ArrayLike | None = None,
    scorer: str = "auto",
    alpha: float = 0.01,
    seed: int = 0,
    null_check: bool | None = None,
    null_resamples: int = 200,
    config: ScorerConfig | None = None,
    groups: tuple[ArrayLike, ArrayLike] | None = None,
) -> DIResult:
    """Test whether the suspects score higher than known non-members.

    Parameters
    ----------
    suspect_features : ``[n_p, d]`` membership indicators of the suspect clips.
    nonmember_features : ``[n_u, d]`` the same indicators of known non-members, drawn from
        the same distribution as the suspects would be if unused.
    directions : ``[d]`` +1 where a higher indicator means member, -1 where lower does;
        used by ``normalized_sum`` and ``pooled_sum`` (and by ``auto`` to choose the first).
    scorer : registered scorer name; see :func:`core.di.scorer_names`.
    alpha : significance level of the one-sided Welch t-test.
    seed : seed of the scorer's fit/test split and of the null check.
    null_check : run :func:`core.di.null_check` with ``min(n_p, n_u // 2)`` pseudo-suspects;
        None runs it when there are at least 40 non-members and warns otherwise.
    null_resamples : runs in the null check.
    config : scorer options.
    groups : per-clip group labels (speaker, source) of the suspects and of the
        non-members; the scorer's fit/test split then keeps each group on one side, and
        the null check does the same in every run. None: clips split individually.

    Returns
    -------
    DIResult
    """
    cfg = DIConfig(
        scorer=scorer,
        alpha=alpha,
        seed=seed,
        null_check=null_check,
        null_resamples=null_resamples,
        scorer_config=config if config is not None else ScorerConfig(),
    )
    P, U, s = check_features(suspect_features, nonmember_features, directions)
    n_p, n_u = P.shape[0], U.shape[0]
    g = None if groups is None else encode_groups(groups[0], groups[1], n_p, n_u)
    split = get_scorer(scorer).score(P, U, directions=s, seed=seed, config=cfg.scorer_config, groups=g)
    test = grouped_welch(split.p_scores, split.u_scores, p_group=split.p_group, u_group=split.u_group)

    warnings: list[str] = list(split.notes)
    if n_u < n_p:
        warnings.append(
            f"fewer non-members ({n_u}) than suspects ({n_p}): the non-member reference is the "
            "weaker side of the test; collect more non-members"
        )
    m = min(split.p_scores.size, split.u_scores.size)
    if m < MIN_TESTED_FOR_NORMAL_APPROX:
        warnings.append(
            f"only {m} clips tested on the smaller side: the t-test's approximation is rough "
            "below about 20 and the p-value should be read as indicative"
        )

    nc: NullCheck | None = None
    run_nc = null_check if null_check is not None else n_u >= MIN_NONMEMBERS_FOR_NULL_CHECK
    if run_nc and n_u < MIN_NONMEMBERS_FOR_NULL_CHECK:
        warnings.append(f"null check not run: it needs at least {MIN_NONMEMBERS_FOR_NULL_CHECK} non-members, have {n_u}")
    elif run_nc:
        k = min(n_p, n_u // 2)
        nc = run_null_check(
            U,
            directions=s,
            scorer=scorer,
            n_suspects=k,
            n_resamples=null_resamples,
            alpha=alpha,
            seed=seed,
            config=cfg.scorer_config,
            groups=None if g is None else g[1],
        )
        if k < n_p:
            warnings.append(f"the null check used {k} pseudo-suspects, fewer than the {n_p} suspects (limited by non-members)")
        if nc.over_rejects:
            warnings.append(
                f"the null check rejected {nc.rate:.1%} of non-member-only runs, significantly above alpha = {alpha:g}"
            )
    elif null_check is None:
        warnings.append(f"null check not run: it needs at least {MIN_NONMEMBERS_FOR_NULL_CHECK} non-members, have {n_u}")
    else:
        warnings.append("null check not run (disabled): the false-positive rate on this data is unverified")

    return DIResult(
        scorer=split.scorer,
        alpha=alpha,
        p_value=test.p_value,
        t_statistic=test.t,
        df=test.df,
        rejected=bool(test.p_value < alpha),
        p_scores=split.p_scores,
        u_scores=split.u_scores,
        p_index=split.p_index,
        u_index=split.u_index,
        p_group=split.p_group,
        u_group=split.u_group,
        n_suspects=n_p,
        n_nonmembers=n_u,
        null_check=nc,
        warnings=tuple(warnings),
        config=cfg.to_dict(),
    )
