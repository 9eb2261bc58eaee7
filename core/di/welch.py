"""Welch's one-sided t-test, scalar and vectorized over resamples.

The dataset-inference test (Welch's unequal-variance t-test, H1: suspects score higher)
is written from its moments so that many resamples are tested in one array operation:
``welch_pvalue_batch`` returns exactly what one ``scipy.stats.ttest_ind(p, u,
equal_var=False, alternative="greater")`` per row would, up to floating point.

:func:`grouped_welch` extends it to scores that come from several independently fitted
scorers (the folds of a cross-fitted scorer); with one group it is the plain Welch test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import stdtr


def welch_from_moments(
    mean_p: ArrayLike,
    var_p: ArrayLike,
    n_p: ArrayLike,
    mean_u: ArrayLike,
    var_u: ArrayLike,
    n_u: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Mean difference, its Welch standard error and Welch-Satterthwaite degrees of freedom.

    All arguments broadcast against each other (sample variances with ``ddof=1``).

    Returns
    -------
    diff, se, df : arrays of the broadcast shape. Where both variances are zero the
        degrees of freedom are undefined and set to 1, as scipy does, so the p-value is
        0 or 1 for a nonzero difference and NaN for none.
    """
    mean_p, var_p, n_p, mean_u, var_u, n_u = (
        np.asarray(a, dtype=np.float64) for a in (mean_p, var_p, n_p, mean_u, var_u, n_u)
    )
    a = var_p / n_p
    b = var_u / n_u
    se2 = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        df = se2**2 / (a**2 / (n_p - 1.0) + b**2 / (n_u - 1.0))
    df = np.where(np.isnan(df), 1.0, df)
    return mean_p - mean_u, np.sqrt(se2), df


def _sf_t(diff: NDArray[np.float64], se: NDArray[np.float64], df: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / se
    # stdtr is the Student-t CDF; the upper tail at t is the CDF at -t.
    p: NDArray[np.float64] = stdtr(df, -t)
    return p


def welch_pvalue_batch(p_scores: ArrayLike, u_scores: ArrayLike) -> NDArray[np.float64]:
    """One-sided Welch p-values for many resamples at once.

    Parameters
    ----------
    p_scores : array ``[R, n_p]``, suspect scores of each resample (a 1-D ``[n_p]`` is
        one resample).
    u_scores : array ``[R, n_u]`` or ``[n_u]`` (the same non-members for every resample).

    Returns
    -------
    p : array ``[R]``, P(T >= t) under H0 for H1 "suspects score higher".
    """
    P = np.atleast_2d(np.asarray(p_scores, dtype=np.float64))
    U = np.atleast_2d(np.asarray(u_scores, dtype=np.float64))
    if P.shape[1] < 2 or U.shape[1] < 2:
        raise ValueError("the Welch test needs at least 2 scores on each side")
    diff, se, df = welch_from_moments(
        P.mean(axis=1), P.var(axis=1, ddof=1), P.shape[1], U.mean(axis=1), U.var(axis=1, ddof=1), U.shape[1]
    )
    return _sf_t(diff, se, df)


def welch_pvalue(p_scores: ArrayLike, u_scores: ArrayLike) -> float:
    """One-sided Welch t-test p-value, H1: the suspects' mean score is higher.

    Equal to ``scipy.stats.ttest_ind(p, u, equal_var=False, alternative="greater").pvalue``.

    Parameters
    ----------
    p_scores : array ``[n_p]``, suspect scores (higher = member).
    u_scores : array ``[n_u]``, non-member scores.
    """
    p = np.asarray(p_scores, dtype=np.float64).ravel()
    u = np.asarray(u_scores, dtype=np.float64).ravel()
    return float(welch_pvalue_batch(p[None, :], u[None, :])[0])


@dataclass(frozen=True)
class WelchTest:
    """Result of a (grouped) Welch test.

    Attributes
    ----------
    t : the test statistic (sum of group mean differences over the sum of their
        standard errors; the Welch t for one group).
    df : degrees of freedom of the Student-t reference (the smallest group's).
    p_value : one-sided p-value, H1: suspects score higher.
    n_groups : number of independently scored groups combined.
    """

    t: float
    df: float
    p_value: float
    n_groups: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": _finite_or_none(self.t),
            "df": _finite_or_none(self.df),
            "p_value": _finite_or_none(self.p_value),
            "n_groups": self.n_groups,
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def combine_groups(
    diff: NDArray[np.float64], se: NDArray[np.float64], df: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Combine per-group Welch parts, last axis = group, into (t, df, p).

    ``t = sum(diff) / sum(se)`` and ``df = min(df)``. Whatever the correlation between
    the groups' differences, ``sd(sum diff) <= sum(sd diff)`` (triangle inequality), so the
    statistic is never more dispersed than a unit t under H0 and the test holds its level;
    it is exact when the groups are perfectly correlated and conservative when they are
    independent. With one group this is Welch's test.
    """
    d = diff.sum(axis=-1)
    s = se.sum(axis=-1)
    k = df.min(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d / s
    return t, k, _sf_t(d, s, k)


def grouped_welch(
    p_scores: ArrayLike,
    u_scores: ArrayLike,
    *,
    p_group: ArrayLike | None = None,
    u_group: ArrayLike | None = None,
) -> WelchTest:
    """Welch test of suspects against non-members, combined over independently scored groups.

    Parameters
    ----------
    p_scores : array ``[m_p]``; u_scores : array ``[m_u]``.
    p_group, u_group : int arrays ``[m_p]`` and ``[m_u]``: which scorer (fold) produced
        each score; None means a single group. Every group needs at least 2 scores on
        each side.

    Returns
    -------
    WelchTest
    """
    p = np.asarray(p_scores, dtype=np.float64).ravel()
    u = np.asarray(u_scores, dtype=np.float64).ravel()
    gp = np.zeros(p.size, dtype=np.int64) if p_group is None else np.asarray(p_group).ravel()
    gu = np.zeros(u.size, dtype=np.int64) if u_group is None else np.asarray(u_group).ravel()
    groups = np.unique(np.concatenate([gp, gu]))
    parts = []
    for g in groups:
        pg, ug = p[gp == g], u[gu == g]
        if pg.size < 2 or ug.size < 2:
            raise ValueError(f"group {g} has {pg.size} suspect and {ug.size} non-member scores; needs 2 each")
        parts.append(welch_from_moments(pg.mean(), pg.var(ddof=1), pg.size, ug.mean(), ug.var(ddof=1), ug.size))
    diff, se, df = (np.array([part[i] for part in parts]) for i in range(3))
    t, k, pv = combine_groups(diff, se, df)
    return WelchTest(t=float(t), df=float(k), p_value=float(pv), n_groups=int(groups.size))
