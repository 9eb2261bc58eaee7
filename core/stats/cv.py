"""Cross-validated AUCs an auditor can defend.

A cross-validated AUC is the AUC of out-of-fold scores from classifiers refitted on each
training fold. Bootstrapping those scores as if they were fixed ignores the refits, so its
"95%" interval is too narrow (on null data it covers 0.5 about 80% of the time). Here the
whole procedure is refitted under label permutations instead:

- **Folds** (:func:`make_folds`): stratified k-fold, or stratified *group* k-fold when clips
  come in groups (speakers, sources), so no group is on both sides of a split.
- **Permutation null** (:func:`cv_auc`): labels are permuted within blocks (folds, or
  fold x group when groups mix labels), every fold is refitted and the AUC recomputed.
  Permuting within folds keeps the fold structure and every preprocessing fit unchanged,
  which makes the test exact for this procedure and lets all refits of one fold share one
  design matrix: :func:`core.stats.logreg.fit_logreg_batched` fits them together, and every fold's at once
  (the same objective as scikit-learn's L2 ``LogisticRegression``, solved to the same
  tolerance; the observed fit and every permuted one by the same steps from the same
  start, so the test stays exact: the first passes of an unconstrained fit run in single
  precision, whose rounding depends on the batch by less than a tenth of the tolerance).
- **p-value**: ``(1 + #{null AUC >= observed}) / (1 + B)``; permutations stop early (after
  ``min_perm``) once ``stop_after`` null AUCs reached the observed one, so a clearly large
  p-value costs little and no decision at 5% changes.
- **Interval**: the union of the fixed-score stratified bootstrap and a
  permutation-calibrated interval: every true AUC ``theta`` with ``q_lo - 0.5 <= (A -
  theta) / s(theta) <= q_hi - 0.5`` (:func:`inverted_interval`). ``q_lo``, ``q_hi`` are the
  order statistics of the permutation AUCs between which an AUC falls with probability
  ``level`` under the null (:func:`null_bounds`), so the interval covers 0.5 at its nominal
  level whenever the null holds, refits and the CV bias included (checked by simulation
  in the tests); ``s(theta)``, the Hanley-McNeil standard error at ``theta`` relative to
  0.5, narrows it towards 0 and 1 as an AUC's sampling spread narrows.

Only the final logistic regression sees labels; every step before it (imputation,
scaling, TF-IDF) is fitted without them, inside each training fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from scipy.stats import norm
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from core.config import DEFAULT_N_BOOT, DEFAULT_N_PERM, DEFAULT_N_SPLITS, Config
from core.stats.basic import auc_ci, n_folds_for
from core.stats.logreg import _SharedDesign, fit_logreg_batched

CI_METHOD = "permutation-calibrated (refits included) ∪ stratified bootstrap"
CI_METHOD_BOOTSTRAP = "stratified bootstrap of fixed out-of-fold scores (refits not included)"


# -- folds -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Folds:
    """A fold assignment: ``fold_of[i]`` is the test fold of clip ``i``.

    ``grouping`` names what kept clips together (``"none"``, ``"speaker"``, ...);
    ``groups`` holds the group of each clip (None without grouping).
    """

    fold_of: NDArray[np.int64]
    grouping: str = "none"
    groups: NDArray[np.int64] | None = None
    notes: tuple[str, ...] = ()

    @property
    def n_folds(self) -> int:
        return int(self.fold_of.max()) + 1

    def splits(self) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64]]]:
        for f in range(self.n_folds):
            yield np.flatnonzero(self.fold_of != f), np.flatnonzero(self.fold_of == f)

    def to_dict(self) -> dict[str, Any]:
        n_groups = None if self.groups is None else int(np.unique(self.groups).size)
        return {"grouping": self.grouping, "n_folds": self.n_folds, "n_groups": n_groups, "notes": list(self.notes)}


def group_codes(values: ArrayLike) -> NDArray[np.int64] | None:
    """Integer group codes for per-clip group names; an empty name is a group of its own.
    None when there are fewer than two groups (nothing to keep apart)."""
    vals = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip() for v in np.asarray(values, dtype=object)]
    if not any(vals):
        return None
    names = [v if v else f"\0clip{i}" for i, v in enumerate(vals)]
    _, codes = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64) if np.unique(codes).size >= 2 else None


def make_folds(
    y: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    grouping: str = "group",
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
) -> Folds:
    """Stratified k-fold, or stratified group k-fold when ``groups`` is given.

    Ungrouped folds equal ``StratifiedKFold(shuffle=True, random_state=seed)``. Grouped
    folds use ``StratifiedGroupKFold`` with at most as many folds as groups; with fewer
    than two groups (or folds that would lack a class) the folds are ungrouped and a note
    says so.
    """
    y = np.asarray(y).astype(np.int64).ravel()
    k = n_folds_for(y, n_splits)
    notes: list[str] = []
    codes = None if groups is None else group_codes(groups)
    if groups is not None and codes is None:
        notes.append(f"fewer than two {grouping} groups: ungrouped folds")
    if codes is not None:
        n_groups = int(np.unique(codes).size)
        kg = min(k, n_groups)
        if kg >= 2:
            sgk = StratifiedGroupKFold(n_splits=kg, shuffle=True, random_state=seed)
            fold_of = np.empty(y.size, dtype=np.int64)
            for f, (_, test) in enumerate(sgk.split(np.zeros(y.size), y, codes)):
                fold_of[test] = f
            if all(len(np.unique(y[fold_of != f])) == 2 for f in range(kg)):
                if kg < n_splits:
                    notes.append(f"{kg} folds: there are {n_groups} {grouping} groups")
                return Folds(fold_of, grouping, codes, tuple(notes))
        notes.append(f"{grouping} groups too few or too unbalanced for grouped folds: ungrouped folds")
    fold_of = np.empty(y.size, dtype=np.int64)
    for f, (_, test) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(y.size), y)):
        fold_of[test] = f
    return Folds(fold_of, "none", None, tuple(notes))


def row_aucs(Y: NDArray[np.integer], S: NDArray[np.float64]) -> NDArray[np.float64]:
    """AUC of each row: labels ``Y[b]`` against scores ``S[b]`` (Mann-Whitney, mid-ranks).

    ``Y`` may be one label vector ``[n]`` shared by every row of ``S`` ``[B, n]``. One sort
    per row; a member's rank is its position in sorted order, or for a run of tied scores
    the run's mean position. Every term is an integer or a half-integer, so the sum is
    exact, whatever its order.
    """
    S = np.atleast_2d(np.asarray(S, dtype=np.float64))
    B, n = S.shape
    order = np.argsort(S, axis=1)
    s = np.take_along_axis(S, order, 1)
    member = np.take_along_axis(np.broadcast_to(np.asarray(Y, dtype=np.float64), S.shape), order, 1)
    place = np.arange(1.0, n + 1)
    u = member @ place
    r, j = np.nonzero(s[:, 1:] == s[:, :-1])  # sorted positions j and j + 1 tie
    if r.size:
        f = r * n + j
        run = np.r_[True, f[1:] != f[:-1] + 1]  # tied pairs that touch make one run
        lo, hi = f[run], f[np.r_[run[1:], True]] + 1  # each run's first and last position
        # per run, its members times its mean position less their own positions
        m = np.r_[0.0, np.cumsum(member)]
        mp = np.r_[0.0, np.cumsum(member * place)]
        mean = (lo % n + hi % n) / 2.0 + 1.0
        u += np.bincount(lo // n, weights=(m[hi + 1] - m[lo]) * mean - (mp[hi + 1] - mp[lo]), minlength=B)
    n1 = member.sum(1)
    aucs: NDArray[np.float64] = (u - n1 * (n1 + 1) / 2.0) / (n1 * (n - n1))
    return aucs


# -- the cross-validated procedure, refitted in batches --------------------------------------
class NonNegativeLogisticRegression(LogisticRegression):
    """L2 logistic regression whose coefficients are constrained to be non-negative
    (features aligned so that higher = member). Fitted by :func:`fit_logreg_batched`."""

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> NonNegativeLogisticRegression:
        if sample_weight is not None:
            raise ValueError("sample weights are not supported")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        w, b = fit_logreg_batched(X, (y == self.classes_[-1]).astype(float)[None, :], C=self.C, nonneg=True)
        self.coef_, self.intercept_ = w, b
        self.n_features_in_ = X.shape[1]
        return self


def _split_pipeline(estimator: Any) -> tuple[Pipeline | None, float, bool]:
    """(label-free preprocessing, C, non-negative) of a Pipeline ending in an L2 logistic
    regression."""
    if isinstance(estimator, LogisticRegression):
        pre, lr = None, estimator
    elif isinstance(estimator, Pipeline) and isinstance(estimator.steps[-1][1], LogisticRegression):
        pre = Pipeline(estimator.steps[:-1]) if len(estimator.steps) > 1 else None
        lr = estimator.steps[-1][1]
    else:
        raise TypeError("cv_auc needs a LogisticRegression or a Pipeline ending in one")
    if lr.penalty not in ("l2", "deprecated") and lr.penalty is not None:
        raise TypeError(f"cv_auc supports L2 logistic regression, got penalty={lr.penalty!r}")
    if getattr(lr, "l1_ratio", None) not in (None, 0, 0.0):
        raise TypeError("cv_auc supports L2 logistic regression only")
    return pre, float(lr.C), isinstance(lr, NonNegativeLogisticRegression)


FoldStep = Callable[[NDArray[np.float64], NDArray[np.float64]], "tuple[NDArray[np.float64], NDArray[np.float64]] | None"]
"""A label-free column-wise step fitted on a fold's training rows, in numpy: ``(train,
test) -> (train', test')``, or None where it cannot (the fold then takes the step's own
``fit_transform``)."""


def _standardize(train: NDArray[np.float64], test: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``StandardScaler()`` fitted on ``train``: centred, divided by the standard deviation
    (population), a column indistinguishable from a constant left unscaled (scikit-learn's
    bound on the two-pass variance's rounding, Chan, Golub and LeVeque 1983)."""
    if np.isnan(train).any():
        return None  # scikit-learn ignores missing entries: leave those folds to it
    mean = train.mean(axis=0)
    var = ((train - mean) ** 2).mean(axis=0)
    n, eps = train.shape[0], np.finfo(np.float64).eps
    scale = np.sqrt(var)
    scale[var <= n * eps * var + (n * mean * eps) ** 2] = 1.0
    return (train - mean) / scale, (test - mean) / scale


def _fold_steps(pre: Pipeline | None) -> list[FoldStep] | None:
    """The preprocessing as numpy column steps, when every step is one: a step with a
    ``fold_apply(train, test)`` method (e.g. :class:`core.blind.diagnostics.MedianImputer`),
    ``StandardScaler()`` with its defaults, or an identity ``FunctionTransformer``. Else None
    (scikit-learn fits each fold). The numbers are the same; scikit-learn's per-call checks
    cost more than the arithmetic on a fold's table."""
    if pre is None:
        return None
    steps: list[FoldStep] = []
    for _, step in pre.steps:
        if step is None or step == "passthrough" or (isinstance(step, FunctionTransformer) and step.func is None):
            continue
        if callable(getattr(step, "fold_apply", None)):
            steps.append(step.fold_apply)
        elif type(step) is StandardScaler and step.with_mean and step.with_std:
            steps.append(_standardize)
        else:
            return None
    return steps


class _FoldDesigns:
    """Per fold: the preprocessing fitted on its training clips (without labels) and the
    resulting dense train/test designs, reduced to the training rows' span when wider; the
    training design with its Gram matrix, shared by every refit of the fold."""

    def __init__(self, X: NDArray[Any] | list[Any], folds: Folds, estimator: Any) -> None:
        pre, self.C, self.nonneg = _split_pipeline(estimator)
        Xa = X if not isinstance(X, list) else np.asarray(X, dtype=object)
        fast = _fold_steps(pre) if Xa.dtype != object else None
        self.folds = folds
        self.parts: list[tuple[NDArray[np.int64], NDArray[np.int64], _SharedDesign, NDArray[np.float64]]] = []
        for train, test in folds.splits():
            ztr, zte = self._preprocess(pre, fast, Xa, train, test)
            if ztr.shape[1] > ztr.shape[0] and not self.nonneg:
                # the L2 solution lies in the span of the training rows: fit in that basis
                _, s, vt = np.linalg.svd(ztr, full_matrices=False)
                keep = s > s.max() * 1e-10 if s.size else np.zeros(0, bool)
                basis = vt[keep].T
                ztr, zte = ztr @ basis, zte @ basis
            self.parts.append((train, test, _SharedDesign(ztr, None if self.nonneg else zte), zte))

    @staticmethod
    def _preprocess(pre: Pipeline | None, fast: list[FoldStep] | None, Xa: NDArray[Any], train: NDArray[np.int64],
                    test: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """A fold's dense training and test designs: the preprocessing fitted on its
        training clips, without labels (numpy column steps where :func:`_fold_steps` gives
        them)."""
        if pre is None:
            return np.asarray(Xa[train], dtype=np.float64), np.asarray(Xa[test], dtype=np.float64)
        if fast is not None:
            ztr, zte = np.asarray(Xa[train], dtype=np.float64), np.asarray(Xa[test], dtype=np.float64)
            for step in fast:
                applied = step(ztr, zte)
                if applied is None:
                    break
                ztr, zte = applied
            else:
                return ztr, zte
        p = clone(pre)
        return _dense(p.fit_transform(Xa[train])), _dense(p.transform(Xa[test]))  # no labels: the preprocessing is label-free

    def scores(self, Y: NDArray[np.int64]) -> NDArray[np.float64]:
        """Out-of-fold membership probabilities ``[B, n]`` for label rows ``Y`` ``[B, n]``,
        at equal priors.

        Each fold's intercept carries the member share of its training clips; grouped folds
        (and small classes) make that share differ between folds, and pooling the test
        scores of such folds then ranks clips by their fold's prior, not their evidence: on
        null data with one label per speaker, leave-speakers-out scores are anti-correlated
        with the labels (pooled AUC near 0.2). Subtracting the training log prior odds from
        the decision function (prior-shift correction, King and Zeng 2001) leaves the
        evidence term only, comparable across folds; clips with equal evidence tie.
        """
        Y = np.atleast_2d(Y)
        out = np.empty(Y.shape, dtype=np.float64)
        # each fold's label rows, gathered clip by clip (rows of the transpose: contiguous)
        Yt = np.ascontiguousarray(Y.T, dtype=np.int8)
        Ys = [Yt[train].T for train, _, _, _ in self.parts]
        fits = _SharedDesign.fit_many([ztr for _, _, ztr, _ in self.parts], Ys, C=self.C, nonneg=self.nonneg)
        for (_, test, _, zte), Yf, (w, b) in zip(self.parts, Ys, fits):
            pi = np.clip(Yf.sum(axis=1) / Yf.shape[1], 1e-6, 1 - 1e-6)
            out[:, test] = w @ zte.T + (b - np.log(pi / (1 - pi)))[:, None]
        # rounded: a fit stops within its tolerance of the optimum, and the residue of the
        # intercept follows the prior and would break ties by fold
        expit(np.round(out, 6, out=out), out=out)
        return out


class BestSingleColumn:
    """The selection rule "the one column that separates the training fold best", as an
    estimator :func:`cv_auc` can refit under permutations.

    On each training fold every column's AUC is computed (columns aligned so that higher =
    member; mid-ranks for ties), the largest one picked (the first on a tie), and the
    fold's held-out clips scored by that column's empirical distribution on the training
    clips (the share of training values below, ties counted half): a score on one scale
    whatever column each fold picked. ``steps`` are label-free column steps fitted on each
    training fold first (:data:`FoldStep`, e.g. replacing non-finite values). The
    selection is redone for every permuted label vector, so the permutation test is exact
    for the whole procedure, selection included. No parameter is fitted beyond the choice,
    so the refits cost one matrix product per fold.
    """

    def __init__(self, steps: tuple[FoldStep, ...] = ()) -> None:
        self.steps = tuple(steps)
        self.designs_: _BestColumnDesigns | None = None

    def designs(self, X: NDArray[Any] | list[Any], folds: Folds) -> "_BestColumnDesigns":
        """The folds' designs, kept as ``designs_`` (what the observed labels chose is read
        from them after :func:`cv_auc`, without building them again)."""
        self.designs_ = _BestColumnDesigns(np.asarray(X, dtype=np.float64), folds, self.steps)
        return self.designs_


def _mid_ranks(Z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each column's mid-ranks (``scipy.stats.rankdata``'s "average", 1-based) ``[n, d]``
    and its values sorted, one column a row ``[d, n]``: one sort per column, ties given
    their run's mean position."""
    zt = np.ascontiguousarray(Z.T)
    d, n = zt.shape
    order = np.argsort(zt, axis=1)
    srt = np.take_along_axis(zt, order, 1)
    place = np.broadcast_to(np.arange(n), (d, n))
    starts = np.ones((d, n), dtype=bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]  # a run of equal values starts here
    ends = np.ones((d, n), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, place, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, place, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((d, n))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, 1)
    return ranks.T, srt


class _BestColumnDesigns:
    """Per fold: mid-ranks of every column's training values (what a training AUC reads)
    and every held-out clip's score under every column (its training distribution)."""

    def __init__(self, X: NDArray[np.float64], folds: Folds, steps: tuple[FoldStep, ...]) -> None:
        self.parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]] = []
        for train, test in folds.splits():
            ztr, zte = X[train], X[test]
            for step in steps:
                applied = step(ztr, zte)
                if applied is None:
                    raise ValueError("a best-column step could not be applied to a fold")
                ztr, zte = applied
            if not (np.isfinite(ztr).all() and np.isfinite(zte).all()):
                raise ValueError("BestSingleColumn needs finite values: give it a step that replaces the others")
            ranks, srt = _mid_ranks(ztr)
            held = np.empty_like(zte)
            for j in range(srt.shape[0]):  # a held-out value's share of the training values below it, ties half
                held[:, j] = (np.searchsorted(srt[j], zte[:, j], side="left")
                              + np.searchsorted(srt[j], zte[:, j], side="right")) / (2.0 * train.size)
            self.parts.append((train, test, ranks, held))

    def _picks(self, Y: NDArray[np.int64]) -> list[NDArray[np.int64]]:
        """Per fold, the column each label row ``Y[b]`` picks on the training clips ``[B]``."""
        out = []
        for train, _, ranks, _ in self.parts:
            Ytr = Y[:, train].astype(np.float64)
            n1 = Ytr.sum(axis=1)
            n0 = train.size - n1
            aucs = (Ytr @ ranks - (n1 * (n1 + 1) / 2.0)[:, None]) / (n1 * n0)[:, None]
            out.append(np.argmax(aucs, axis=1))
        return out

    def scores(self, Y: NDArray[np.int64]) -> NDArray[np.float64]:
        """Held-out scores ``[B, n]`` for label rows ``Y`` ``[B, n]``."""
        Y = np.atleast_2d(Y)
        out = np.empty(Y.shape, dtype=np.float64)
        for (_, test, _, held), pick in zip(self.parts, self._picks(Y)):
            out[:, test] = held[:, pick].T
        return out

    def picks(self, y: ArrayLike) -> list[int]:
        """The column each fold picks under the labels ``y``."""
        return [int(p[0]) for p in self._picks(np.asarray(y, dtype=np.int64)[None, :])]


def _dense(M: Any) -> NDArray[np.float64]:  # a dense array or a scipy sparse matrix
    return np.asarray(M.toarray() if hasattr(M, "toarray") else M, dtype=np.float64)


def _blocks(folds: Folds, y: NDArray[np.int64]) -> tuple[NDArray[np.int64], str]:
    """Permutation blocks: folds, or fold x group when groups mix labels."""
    if folds.groups is not None:
        block = folds.fold_of * (int(folds.groups.max()) + 1) + folds.groups
        mixed = np.zeros(y.size, dtype=bool)
        for b in np.unique(block):
            m = block == b
            mixed[m] = np.unique(y[m]).size == 2
        if mixed.mean() >= 0.5:
            return block, f"labels permuted within {folds.grouping} groups"
        return folds.fold_of.copy(), f"labels permuted within folds ({folds.grouping} groups are mostly single-label)"
    return folds.fold_of.copy(), "labels permuted within folds"


def permuted_labels(y: NDArray[np.int64], block: NDArray[np.int64], n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``n`` label vectors, each a random permutation of ``y`` within every block."""
    order = np.argsort(block, kind="stable")
    keys = block[None, :] + rng.random((n, y.size))
    perm = np.argsort(keys, axis=1)  # keys do not tie, so any sort gives this order
    out = np.empty((n, y.size), dtype=np.int64)
    out[:, order] = y[perm]
    return out


def null_bounds(nulls: NDArray[np.float64], level: float) -> tuple[float, float]:
    """Order statistics of ``B`` permutation AUCs between which the observed AUC falls with
    probability at least ``level`` under the null: the k-th smallest and k-th largest with
    ``k = floor((B + 1) (1 - level) / 2)`` (the observed AUC is exchangeable with the
    permutation draws). With too few draws for k >= 1, mean +- z SD (normal approximation)."""
    b = np.sort(nulls)
    k = int(np.floor((b.size + 1) * (1 - level) / 2))
    if k >= 1:
        return float(b[k - 1]), float(b[b.size - k])
    z = float(norm.ppf(0.5 + level / 2))
    m, sd = float(b.mean()), float(b.std(ddof=1)) if b.size > 1 else 0.0
    return m - z * sd, m + z * sd


def inverted_interval(a: float, q_lo: float, q_hi: float, n1: int, n0: int, *, grid: int = 4001) -> tuple[float, float]:
    """Every true AUC ``theta`` the observed ``a`` is consistent with: ``(a - theta) /
    s(theta)`` lies within the null's deviations ``[q_lo - 0.5, q_hi - 0.5]``, where
    ``s(theta)`` is the Hanley-McNeil standard error at ``theta`` relative to 0.5.

    At ``theta = 0.5`` (s = 1) this is exactly "``a`` lies between the null bounds", so the
    interval covers 0.5 whenever the null holds; towards 0 and 1 the spread shrinks as an
    AUC's sampling spread does."""
    theta = np.linspace(0.0, 1.0, grid)
    se0 = hanley_mcneil_se(0.5, n1, n0)
    scale = np.array([hanley_mcneil_se(float(t), n1, n0) for t in theta]) / se0
    dev = (a - theta) / np.maximum(scale, 1e-12)
    ok = (dev >= q_lo - 0.5 - 1e-12) & (dev <= q_hi - 0.5 + 1e-12)
    if not ok.any():  # numerically empty (a at 0 or 1 with a degenerate null): the point
        return a, a
    return float(theta[ok].min()), float(theta[ok].max())


@dataclass(frozen=True)
class PermutationConfig(Config):
    """How many label permutations refit the CV procedure (0: none, bootstrap interval only)."""

    n_perm: int = DEFAULT_N_PERM
    min_perm: int = 100
    stop_after: int = 10
    chunk: int = 50
    level: float = 0.95


def hanley_mcneil_se(a: float, n1: int, n0: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC ``a`` with ``n1`` positives and
    ``n0`` negatives; at 0.5 it equals the exact null SD sqrt((n + 1) / (12 n1 n0))."""
    a = min(max(a, 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt(max(a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a), 0.0) / (n1 * n0))


@dataclass
class CVAUC:
    """A cross-validated AUC with what an auditor needs to defend it.

    Attributes
    ----------
    auc : AUC of the out-of-fold scores.
    ci : interval at ``level`` (method in ``ci_method``).
    p_value : permutation p-value of "AUC above chance" (None without permutations).
    scores : out-of-fold probabilities ``[n]``.
    n_perm : permutations run (early stopping may end before the configured number).
    null_mean, null_sd : mean and SD of the permutation AUCs.
    folds : the fold assignment used.
    permutation : how labels were permuted.
    """

    auc: float
    ci: tuple[float, float]
    ci_method: str
    p_value: float | None
    scores: NDArray[np.float64]
    n_perm: int
    null_mean: float | None
    null_sd: float | None
    folds: Folds
    permutation: str = ""
    bootstrap_ci: tuple[float, float] = (math.nan, math.nan)
    level: float = 0.95
    null_aucs: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def below_chance(self) -> bool:
        """The interval lies below 0.5 (under the null, in at most ``(1 - level) / 2`` of
        runs): held-out clips read backwards more than label-exchangeable folds allow. Not
        evidence of membership: it is what near-identical clips of opposite labels split
        across folds produce (each held-out clip is predicted from its twin of the other
        label)."""
        return self.null_aucs.size > 0 and self.ci[1] < 0.5

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": self.auc, "ci": list(self.ci), "ci_method": self.ci_method, "p_value": self.p_value,
            "n_perm": self.n_perm, "null_mean": self.null_mean, "null_sd": self.null_sd,
            "folds": self.folds.to_dict(), "permutation": self.permutation,
            "bootstrap_ci": list(self.bootstrap_ci), "level": self.level,
        }


def cv_auc(
    X: NDArray[Any] | list[Any],
    y: ArrayLike,
    *,
    estimator: Any,
    folds: Folds,
    permutations: PermutationConfig = PermutationConfig(),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CVAUC:
    """Cross-validated AUC of ``estimator`` with a permutation p-value and an interval that
    includes the refits (see the module docstring for the method).

    Parameters
    ----------
    X : ``[n, d]`` features, or a list of ``n`` documents for a TF-IDF pipeline.
    y : ``[n]`` 1 = member, 0 = non-member.
    estimator : L2 ``LogisticRegression`` or a Pipeline of label-free steps ending in one,
        or a :class:`BestSingleColumn` selection rule.
    folds : from :func:`make_folds`.
    permutations : permutation settings; ``n_perm=0`` gives the bootstrap interval only.
    n_boot : resamples of the fixed-score bootstrap.
    seed : seed of the permutations and the bootstrap.
    progress : called with (permutations refitted, permutations planned) before the first
        chunk and after each; an early stop ends at fewer than planned.
    """
    y = np.asarray(y).astype(np.int64).ravel()
    designs: _FoldDesigns | _BestColumnDesigns = (
        estimator.designs(X, folds) if isinstance(estimator, BestSingleColumn) else _FoldDesigns(X, folds, estimator))
    if permutations.n_perm <= 0:
        scores = designs.scores(y[None, :])[0]
        boot = auc_ci(y, scores, level=permutations.level, n_boot=n_boot, seed=seed)
        a = float(row_aucs(y, scores[None, :])[0])
        return CVAUC(a, boot, CI_METHOD_BOOTSTRAP, None, scores, 0, None, None, folds, "", boot, permutations.level)
    block, how = _blocks(folds, y)
    rng = np.random.default_rng([seed, 7919])
    if progress is not None:
        progress(0, permutations.n_perm)
    # the observed labels are refitted with the first chunk (a fit is the same in any batch,
    # to a tenth of its tolerance)
    Yp = permuted_labels(y, block, min(permutations.chunk, permutations.n_perm), rng)
    S = designs.scores(np.vstack([y[None, :], Yp]))
    scores, S = S[0], S[1:]
    a = float(row_aucs(y, scores[None, :])[0])
    boot = auc_ci(y, scores, level=permutations.level, n_boot=n_boot, seed=seed)
    null: list[NDArray[np.float64]] = []
    done = exceed = 0
    while True:
        aucs = row_aucs(Yp, S)
        null.append(aucs)
        done += aucs.size
        if progress is not None:
            progress(done, permutations.n_perm)
        exceed += int((aucs >= a - 1e-12).sum())
        if done >= permutations.n_perm or (done >= permutations.min_perm and exceed >= permutations.stop_after):
            break
        Yp = permuted_labels(y, block, min(permutations.chunk, permutations.n_perm - done), rng)
        S = designs.scores(Yp)
    nulls = np.concatenate(null)
    p = (1 + exceed) / (1 + done)
    m0, sd0 = float(nulls.mean()), float(nulls.std(ddof=1))
    n1, n0 = int(y.sum()), int((y == 0).sum())
    q_lo, q_hi = null_bounds(nulls, permutations.level)
    lo_c, hi_c = inverted_interval(a, q_lo, q_hi, n1, n0)
    lo, hi = min(boot[0], lo_c), max(boot[1], hi_c)
    ci = (float(max(0.0, lo)), float(min(1.0, hi)))
    return CVAUC(a, ci, CI_METHOD, float(p), scores, done, m0, sd0, folds, how, boot, permutations.level, nulls)
