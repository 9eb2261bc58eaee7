"""Shared statistics: AUC with bootstrap intervals, TPR at fixed FPR, cross-validated scores.

Pure numpy / scikit-learn functions, used by the blind baseline, MIA and DI stages.
Conventions follow ``DESIGN.md``: TPR at a target FPR is read from
:func:`sklearn.metrics.roc_curve` at the largest achieved FPR not above the target, and the
achieved FPR is reported beside it; below 1/n_negatives it is not measurable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm, rankdata
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from core.config import DEFAULT_N_BOOT, DEFAULT_N_SPLITS

MIN_PER_CLASS_FOR_HONEST_AUC = 20


def _check_binary(y: ArrayLike, s: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(y).astype(np.int64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if set(np.unique(y)) - {0, 1}:
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        raise ValueError("AUC needs at least one member and one non-member")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    return y, s


def auc(y: ArrayLike, s: ArrayLike) -> float:
    """ROC AUC of scores ``s`` for labels ``y`` (1 = member; higher score = member)."""
    y, s = _check_binary(y, s)
    return float(roc_auc_score(y, s))


def bootstrap_auc(
    y: ArrayLike, s: ArrayLike, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> NDArray[np.float64]:
    """AUCs of ``n_boot`` stratified bootstrap resamples, shape ``[n_boot]``.

    Members and non-members are resampled separately (class sizes fixed), all resamples
    drawn at once; the AUC of each is the Mann-Whitney statistic (ties count one half).
    Nothing is re-sorted per resample: each member score's position among the sorted
    non-member scores is found once, and a resample's statistic sums, over its members,
    how many of its non-members lie below (and tie) there, from the running count of the
    non-members it drew. ``O(n_boot * n)``, in blocks of resamples.
    """
    y, s = _check_binary(y, s)
    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    n1, n0 = pos.size, neg.size
    ip = rng.integers(0, n1, size=(n_boot, n1))
    ineg = rng.integers(0, n0, size=(n_boot, n0))
    order = np.argsort(neg, kind="stable")
    slot = np.empty(n0, dtype=np.int64)
    slot[order] = np.arange(n0)  # position of each non-member in sorted order
    lo = np.searchsorted(neg[order], pos, side="left")  # non-members strictly below each member
    hi = np.searchsorted(neg[order], pos, side="right")  # ... below or tied
    u = np.empty(n_boot)
    block = max(1, int(2**21 // (n0 + n1 + 1)))
    for b0 in range(0, n_boot, block):
        b = np.arange(b0, min(b0 + block, n_boot))
        row = (np.arange(b.size) * (n0 + 1))[:, None]  # where each resample's counts start
        drawn = np.bincount((row + 1 + slot[ineg[b]]).ravel(), minlength=b.size * (n0 + 1))
        below = np.cumsum(drawn.reshape(b.size, n0 + 1), axis=1).ravel()  # below[m]: drawn among the m smallest
        under = below[row + lo[ip[b]]].sum(1)
        u[b] = under + 0.5 * (below[row + hi[ip[b]]].sum(1) - under)
    aucs: NDArray[np.float64] = u / (n1 * n0)
    return aucs


def auc_ci(
    y: ArrayLike, s: ArrayLike, *, level: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the AUC (stratified resampling)."""
    boots = bootstrap_auc(y, s, n_boot=n_boot, seed=seed)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [a, 1.0 - a])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedAUC:
    """The difference of two AUCs read on the same clips (``a`` minus ``b``), with DeLong's
    paired interval and two-sided p-value of "no difference".

    ``se``: the standard error of the difference; 0 when the two scores rank every pair
    alike (then the interval is the point and ``p_value`` is 1).
    """

    diff: float
    ci: tuple[float, float]
    p_value: float
    se: float
    auc_a: float
    auc_b: float


def normal_test(diff: float, se: float, level: float = 0.95) -> tuple[tuple[float, float], float]:
    """The normal interval ``diff +- z * se`` at ``level`` and the two-sided p-value of
    "the difference is 0"; a zero ``se`` gives the point and p = 1."""
    if se <= 1e-12:
        return (diff, diff), 1.0
    z = float(norm.ppf(0.5 + level / 2.0))
    return (diff - z * se, diff + z * se), float(min(1.0, 2.0 * norm.sf(abs(diff) / se)))


def _placements(pos: NDArray[np.float64], neg: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """DeLong's structural components of one score: for each member the fraction of
    non-members it outranks (ties one half), and for each non-member the fraction of members
    that outrank it; from midranks (Sun and Xu 2014), ``O(n log n)``."""
    n1, n0 = pos.size, neg.size
    both = rankdata(np.concatenate([pos, neg]))
    v10 = (both[:n1] - rankdata(pos)) / n0
    v01 = 1.0 - (both[n1:] - rankdata(neg)) / n1
    return v10, v01


def paired_auc_difference(y: ArrayLike, s_a: ArrayLike, s_b: ArrayLike, *, level: float = 0.95) -> PairedAUC:
    """AUC of ``s_a`` minus AUC of ``s_b`` on the same clips, with DeLong's paired test
    (DeLong, DeLong and Clarke-Pearson 1988): the variance of the difference is
    ``c' (S10 / n1 + S01 / n0) c`` with ``c = (1, -1)`` and ``S10``, ``S01`` the 2 x 2
    covariances of the two scores' structural components over the members and over the
    non-members. The interval is normal (:func:`normal_test`); the p-value two-sided.

    The two scores may be on any scales; ties count one half, as in the AUC itself.
    """
    y, a = _check_binary(y, s_a)
    _, b = _check_binary(y, s_b)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if min(n1, n0) < 2:
        raise ValueError("a paired AUC difference needs at least two members and two non-members")
    va10, va01 = _placements(a[y == 1], a[y == 0])
    vb10, vb01 = _placements(b[y == 1], b[y == 0])
    auc_a, auc_b = float(va10.mean()), float(vb10.mean())
    d10, d01 = va10 - vb10, va01 - vb01  # c' S c is the variance of the components' difference
    se = float(np.sqrt(max(float(d10.var(ddof=1) / n1 + d01.var(ddof=1) / n0), 0.0)))
    diff = auc_a - auc_b
    ci, p = normal_test(diff, se, level)
    return PairedAUC(diff, ci, p, se, auc_a, auc_b)


@dataclass(frozen=True)
class TprAtFpr:
    """TPR at a target FPR, with the FPR actually achieved; ``tpr`` is None when the
    target is below 1/n_negatives and so cannot be measured.

    ``tpr_ci`` is the exact (Clopper-Pearson) 95% interval of the TPR given the threshold:
    with 100 members a measured 7% could be anything from 3% to 14%. ``n_false_positives``
    says how many non-members the threshold admits: at 1% FPR with 100 non-members it rests
    on a single clip.
    """

    target_fpr: float
    tpr: float | None
    achieved_fpr: float | None
    n_negatives: int
    n_positives: int = 0
    tpr_ci: tuple[float, float] | None = None
    n_false_positives: int | None = None

    @property
    def measurable(self) -> bool:
        return self.tpr is not None

    def describe(self) -> str:
        if self.tpr is None:
            return (
                f"TPR@{self.target_fpr:.1%}FPR not measurable with {self.n_negatives} "
                f"non-members (needs at least {int(np.ceil(1 / self.target_fpr))})"
            )
        ci = "" if self.tpr_ci is None else f" [{self.tpr_ci[0]:.1%}, {self.tpr_ci[1]:.1%}]"
        rests = "" if self.n_false_positives is None else (
            f"; the threshold admits {self.n_false_positives} of {self.n_negatives} non-members")
        return f"TPR {self.tpr:.1%}{ci} at FPR {self.achieved_fpr:.2%} (target {self.target_fpr:.1%}{rests})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_fpr": self.target_fpr,
            "tpr": self.tpr,
            "achieved_fpr": self.achieved_fpr,
            "n_negatives": self.n_negatives,
            "n_positives": self.n_positives,
            "tpr_ci": None if self.tpr_ci is None else list(self.tpr_ci),
            "n_false_positives": self.n_false_positives,
        }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a proportion ``k / n`` (Clopper and Pearson 1934): the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of Beta(k, n - k + 1) and
    Beta(k + 1, n - k), with 0 and 1 at the ends."""
    from scipy.stats import beta

    if n <= 0:
        raise ValueError("n must be positive")
    a = (1.0 - level) / 2.0
    lo = 0.0 if k <= 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def _roc_points(y: NDArray[np.int64], s: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``sklearn.metrics.roc_curve(y, s)``'s (fpr, tpr), computed in numpy: one point per
    distinct score from the highest down (a stable sort, ties kept together), the points
    on a straight segment between their neighbours dropped (its ``drop_intermediate``),
    (0, 0) first. Without scikit-learn's input checks, which cost more than the curve for
    the MIA run's per-indicator AUCs."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last clip of each distinct score
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = 1.0 + last - tps
    if tps.size > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[keep], fps[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return fps / fps[-1], tps / tps[-1]


def tpr_at_fpr(y: ArrayLike, s: ArrayLike, target_fpr: float) -> TprAtFpr:
    """TPR at the largest ROC operating point whose FPR is at most ``target_fpr``."""
    y, s = _check_binary(y, s)
    n0, n1 = int((y == 0).sum()), int((y == 1).sum())
    if target_fpr < 1.0 / n0:
        return TprAtFpr(target_fpr, None, None, n0, n1)
    fpr, tpr = _roc_points(y, s)
    ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
    i = ok[-1]
    tp, fp = int(round(float(tpr[i]) * n1)), int(round(float(fpr[i]) * n0))
    return TprAtFpr(target_fpr, float(tpr[i]), float(fpr[i]), n0, n1, clopper_pearson(tp, n1), fp)


def roc(y: ArrayLike, s: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ROC curve points (fpr, tpr): scikit-learn's ``roc_curve``, in numpy."""
    y, s = _check_binary(y, s)
    return _roc_points(y, s)


def default_classifier(C: float = 1.0) -> Pipeline:
    """Standardize then L2 logistic regression; every step is fitted inside each fold."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def n_folds_for(y: ArrayLike, n_splits: int = DEFAULT_N_SPLITS) -> int:
    """Folds for stratified CV: at most ``n_splits``, at most the minority class size."""
    y = np.asarray(y)
    minority = int(min((y == 1).sum(), (y == 0).sum()))
    if minority < 2:
        raise ValueError("cross-validation needs at least 2 clips of each label")
    return min(n_splits, minority)


def cv_scores(
    X: NDArray[Any] | list[Any],
    y: ArrayLike,
    *,
    estimator: BaseEstimator | None = None,
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
) -> NDArray[np.float64]:
    """Out-of-fold membership probabilities from stratified k-fold CV, shape ``[n]``.

    ``X`` may be an array ``[n, d]`` or anything the estimator accepts row-indexed
    (e.g. a list of strings for a TF-IDF pipeline).
    """
    y = np.asarray(y).astype(np.int64)
    est = estimator if estimator is not None else default_classifier()
    folds = StratifiedKFold(n_splits=n_folds_for(y, n_splits), shuffle=True, random_state=seed)
    out = np.empty(y.shape[0], dtype=np.float64)
    Xa = X if not isinstance(X, list) else np.asarray(X, dtype=object)
    for train, test in folds.split(np.zeros(len(y)), y):
        model = clone(est).fit(Xa[train], y[train])
        out[test] = model.predict_proba(Xa[test])[:, 1]
    return out


def correlation(a: ArrayLike, b: ArrayLike) -> dict[str, float | int | None]:
    """Pearson and Spearman correlation of two per-clip score vectors (same clips, same
    order), over the pairs where both are finite.

    Returns
    -------
    dict
        ``pearson``, ``pearson_p``, ``spearman``, ``spearman_p`` (None when undefined: fewer
        than 3 pairs or a constant vector) and ``n`` (pairs used).
    """
    from scipy import stats as sps

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"score vectors differ in length: {x.size} vs {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out: dict[str, float | int | None] = {"pearson": None, "pearson_p": None, "spearman": None, "spearman_p": None, "n": int(x.size)}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    pr, sr = sps.pearsonr(x, y), sps.spearmanr(x, y)
    vals = {"pearson": pr.statistic, "pearson_p": pr.pvalue, "spearman": sr.statistic, "spearman_p": sr.pvalue}
    out.update({k: (float(v) if np.isfinite(v) else None) for k, v in vals.items()})
    return out


def small_sample_warning(y: ArrayLike) -> str | None:
    """A warning when either class has fewer than 20 clips (AUCs are then unreliable)."""
    y = np.asarray(y)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if min(n1, n0) < MIN_PER_CLASS_FOR_HONEST_AUC:
        return (
            f"only {n1} members and {n0} non-members: an AUC on fewer than "
            f"{MIN_PER_CLASS_FOR_HONEST_AUC} clips per class is unreliable"
        )
    return None


def format_p(p: float) -> str:
    """A p-value in two significant digits; one that underflowed to 0 in double precision
    (a Welch test with a huge t) reads ``< 1e-300``, never ``0``."""
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def p_clause(p: float) -> str:
    """``p = 0.012`` or, for an underflowed one, ``p < 1e-300``: :func:`format_p` in a sentence."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
