"""Batched L2 logistic regression: many label rows fitted on one shared design at once.

What the cross-validated AUCs of :mod:`core.stats.cv` refit for every label permutation:
:func:`fit_logreg_batched` minimises scikit-learn's ``LogisticRegression`` objective for
each row of labels, optionally with non-negative weights, and :class:`_SharedDesign` keeps
what every fit on one design shares (its Gram matrix, its rotated basis), so the refits of a
fold cost passes over its clips, not a fresh solver each.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

_FIT_MEMORY = 256 * 2**20
"""Bytes one batch of fits may hold (``[B, n]`` working arrays and ``[B, d+1, d+1]``
Hessians); more label rows are fitted in consecutive batches."""


def fit_logreg_batched(
    Z: NDArray[np.float64], Y: NDArray[np.floating] | NDArray[np.integer], *, C: float = 1.0, max_iter: int = 100, tol: float = 1e-7,
    nonneg: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fit one L2 logistic regression per label row on a shared design, together.

    Minimises ``0.5 * |w|^2 + C * sum_i logloss(y_i, z_i w + b)`` (scikit-learn's
    ``LogisticRegression(C=C)``; the intercept is not penalised). With ``nonneg`` the
    weights are constrained to ``w >= 0``.

    Unconstrained fits run in the eigenbasis of the centered Gram matrix (:class:`_Rotated`),
    where a fit's curvature is a diagonal, a rank-one term and the intercept whenever its
    decision values are near normal. Each starts where they would make the optimum
    (:func:`_mean_field_start`, about ten times closer than a Newton step from the
    intercept) and takes quasi-Newton steps: BFGS updates from each step and its change of
    gradient (:func:`_two_loop`) on that model Hessian (:func:`_model_solve`), about three
    passes over the clips in all.

    Non-negative fits start where the intercept alone is optimal (``w = 0``, ``b`` = the
    log odds of its labels). There every probability equals the label share, so the exact
    Hessian is ``C pi (1 - pi) Z1' Z1`` plus the penalty: one Gram matrix serves every fit,
    and the first step is an exact Newton step. Later steps keep that Hessian (a fit
    without signal stays near ``w = 0``, where it barely changes, so two or three more
    steps converge); a fit recomputes its own, ``Z1' diag(p (1 - p)) Z1``, after a step the
    line search had to shorten, and at every step on small designs, where that costs less
    than the steps it saves (:data:`_SMALL_DESIGN`). Each step solves the quadratic model on
    ``w >= 0`` (projected Newton in ``d + 1`` dimensions, :func:`_nonneg_qp`; to the end,
    or on small designs one projected step of it after the first), so finding which
    weights are zero costs no pass over the clips.

    An Armijo search along the step keeps the objective decreasing (certified, for most
    steps, by the log-loss's curvature bound without evaluating it); a fit stops when its
    step, or the distance still to go at its observed rate of convergence, is below
    ``tol`` in every coefficient (or, given the rows a fit is for, in their decision
    values: :class:`_SharedDesign`). Gradients and steps are double precision (small
    designs' Hessians single: they only shape the steps), and no ``[n, d^2]`` array is
    formed but for small designs. Each row's fit is the same whatever else is in the batch.

    Parameters
    ----------
    Z : ``[n, d]`` design (shared by every fit).
    Y : ``[B, n]`` labels in {0, 1} (integer or float), one fit per row.
    nonneg : constrain ``w >= 0`` (features aligned so that higher = member).

    Returns
    -------
    w : ``[B, d]`` coefficients; b : ``[B]`` intercepts.
    """
    return _SharedDesign(Z).fit(Y, C=C, max_iter=max_iter, tol=tol, nonneg=nonneg)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


class _SharedDesign:
    """A design ``Z [n, d]`` and what every batch of label rows fitted on it shares: for
    non-negative fits ``Z1 = [Z, 1]`` and its Gram matrix ``Z1' Z1``, for unconstrained fits
    the design in the eigenbasis of its centered Gram matrix (:class:`_Rotated`); each is
    computed once, when first needed.

    ``scored`` (``[m, d]``, optional): the rows a fit is for (the out-of-fold clips), whose
    decision values then judge an unconstrained fit's convergence instead of its
    coefficients: ``tol`` bounds how far they may still be from the optimum's.
    """

    def __init__(self, Z: NDArray[np.float64], scored: NDArray[np.float64] | None = None) -> None:
        self.Z = np.asarray(Z, dtype=np.float64)
        self.scored = scored

    @functools.cached_property
    def Z1(self) -> NDArray[np.float64]:
        Z1 = np.hstack([self.Z, np.ones((self.Z.shape[0], 1))])
        self.Z = Z1[:, :-1]  # the same values, held once
        return Z1

    @functools.cached_property
    def gram(self) -> NDArray[np.float64]:
        gram: NDArray[np.float64] = self.Z1.T @ self.Z1
        return gram

    @property
    def small(self) -> bool:
        """An exact Hessian of a fit on this design costs less than the steps it saves:
        ``n (d+1)^2`` below :data:`_SMALL_DESIGN` multiply-adds."""
        return bool(self.Z1.shape[0] * self.Z1.shape[1] ** 2 <= _SMALL_DESIGN)

    @functools.cached_property
    def outer(self) -> NDArray[np.float32]:
        """``[n, (d+1)^2]`` outer products ``z1 z1'`` of every clip's coordinates, single
        precision: a fit's exact Hessian is then one product with its weights (for small
        designs, where this matrix is small; a Hessian only shapes the steps, which are
        judged in double precision)."""
        n, k = self.Z1.shape
        outer: NDArray[np.float32] = (self.Z1[:, :, None] * self.Z1[:, None, :]).reshape(n, k * k).astype(np.float32)
        return outer

    def hessians(self, w: NDArray[np.float64], reg: NDArray[np.float64]) -> NDArray[np.float64]:
        """``[B, d+1, d+1]`` exact Hessians ``Z1' diag(w_b) Z1 + diag(reg)`` for weights ``w [B, n]``."""
        Z1 = self.Z1
        n, k = Z1.shape
        if self.small:
            H = (w.astype(np.float32) @ self.outer).reshape(-1, k, k).astype(np.float64)
        else:
            H = np.empty((w.shape[0], k, k))
            for c in range(0, w.shape[0], max(1, int(2**23 // (n * k)))):  # in blocks of fits
                b = slice(c, c + max(1, int(2**23 // (n * k))))
                H[b] = np.matmul(Z1.T[None] * w[b, None, :], Z1)
        H += np.diag(reg)
        return H

    @functools.cached_property
    def rotated(self) -> _Rotated:
        return _Rotated(self.Z, self.scored)

    def fit(self, Y: ArrayLike, *, C: float, max_iter: int = 100, tol: float = 1e-7, nonneg: bool = False,
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``w [B, d]``, ``b [B]`` of :func:`fit_logreg_batched` for label rows ``Y [B, n]``."""
        return _SharedDesign.fit_many([self], [Y], C=C, max_iter=max_iter, tol=tol, nonneg=nonneg)[0]

    @staticmethod
    def fit_many(designs: Sequence[_SharedDesign], Ys: Sequence[ArrayLike], *, C: float, max_iter: int = 100, tol: float = 1e-7,
                 nonneg: bool = False) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
        """:meth:`fit` of each design's label rows (``Ys[i] [B_i, n_i]`` on ``designs[i]``).
        The fits on designs with as many columns (every fold's) run as one batch: the steps
        between passes over the clips (``O(d)`` or ``O(d^2)`` per fit) are taken for all of
        them at once, which is most of what a fit costs beyond its passes (each the same as
        fitted alone)."""
        # labels as given when numbers (0/1 in a narrow integer type hold no precision to
        # lose, and a large batch stays small)
        Y2 = [np.atleast_2d(np.asarray(Y)) for Y in Ys]
        Y2 = [Y if np.issubdtype(Y.dtype, np.number) else Y.astype(np.float64) for Y in Y2]
        thetas = [np.empty((Y.shape[0], d.Z.shape[1] + 1)) for d, Y in zip(designs, Y2)]
        # label rows per batch: [B, n] working arrays (the non-negative fits hold them for
        # every design at once) and the non-negative fits' [B, d+1, d+1] Hessians
        n, k = max(d.Z.shape[0] for d in designs), max(d.Z.shape[1] for d in designs) + 1
        rows = max(1, int(_FIT_MEMORY // (8 * (8 * n + 3 * k * k) * (len(designs) if nonneg else 1))))
        # one BLAS thread: the products here are many and small, and threads that wait on
        # each other (worse on a busy machine) cost more than they save
        with _blas_controller().limit(limits=1, user_api="blas"):
            for s in range(0, max(Y.shape[0] for Y in Y2), rows):
                for width in sorted({d.Z.shape[1] for d in designs}):  # designs as wide fit together
                    which = [i for i, d in enumerate(designs) if d.Z.shape[1] == width and Y2[i].shape[0] > s]
                    if not which:
                        continue
                    batch = [Y2[i][s:s + rows] for i in which]
                    if nonneg:
                        fits = _fit_nonneg([designs[i] for i in which], batch, C, max_iter, tol)
                    else:
                        fits = _fit_unconstrained([designs[i].rotated for i in which], batch, C, max_iter, tol)
                    for i, theta in zip(which, fits):
                        thetas[i][s:s + rows] = theta
        return [(theta[:, :-1], theta[:, -1]) for theta in thetas]


def _spans(fold: NDArray[np.int64], F: int) -> list[tuple[int, slice]]:
    """The fits of each of ``F`` designs, contiguous in a batch sorted by design (``fold``,
    the design of each fit): ``(design, slice)`` for the designs with any."""
    ends = np.searchsorted(fold, np.arange(F + 1))
    return [(f, slice(int(ends[f]), int(ends[f + 1]))) for f in range(F) if ends[f + 1] > ends[f]]


def _fit_nonneg(designs: Sequence[_SharedDesign], Ys: Sequence[NDArray[np.float64]], C: float, max_iter: int, tol: float,
                ) -> list[NDArray[np.float64]]:
    """``[B_i, d + 1]`` coefficients and intercepts of the non-negative fits to label rows
    ``Ys[i] [B_i, n_i]`` on ``designs[i]`` (as wide as each other; see
    :func:`fit_logreg_batched`), all fits stepping together: the passes over the clips are
    per design, everything else (the steps, :func:`_nonneg_qp`) one batch."""
    F = len(designs)
    fold = np.repeat(np.arange(F), [Y.shape[0] for Y in Ys])  # the design of each fit, fits sorted by design
    k = designs[0].Z.shape[1] + 1
    reg = np.ones(k)
    reg[-1] = 0.0
    pi = np.clip(np.concatenate([Y.mean(axis=1, dtype=np.float64) for Y in Ys]), 1e-9, 1 - 1e-9)
    out = np.zeros((fold.size, k))
    out[:, -1] = np.log(pi / (1 - pi))
    # the fits still running, compacted whenever some converge; per design, its fits'
    # labels, decision values and probabilities over its clips
    rows, theta = np.arange(fold.size), out.copy()
    Yf, eta = list(Ys), [np.repeat(out[fold == f, -1:], D.Z.shape[0], axis=1) for f, D in enumerate(designs)]
    p = [expit(e) for e in eta]
    # per fit, the Hessian of the quadratic model its steps solve; exact at the start,
    # one per design and distinct prior
    M = np.empty((fold.size, k, k))
    for f, D in enumerate(designs):
        shares, which = np.unique(pi[fold == f], return_inverse=True)
        M[fold == f] = (C * (shares * (1 - shares))[:, None, None] * D.gram + np.diag(reg))[which.ravel()]
    f_theta = np.full(fold.size, np.nan)  # objective values, computed only where a line search needs them
    prev = np.full(fold.size, np.inf)
    stale = np.zeros(fold.size, dtype=bool)
    small = np.array([D.small for D in designs])[fold]

    def spans() -> list[tuple[int, slice]]:
        return _spans(fold[rows], F)

    for iteration in range(max_iter):
        g = np.empty_like(theta)
        for f, sl in spans():
            redo = np.flatnonzero(stale[sl])
            if redo.size:
                M[sl.start + redo] = designs[f].hessians(C * p[f][redo] * (1.0 - p[f][redo]), reg)
            g[sl] = C * (p[f] - Yf[f]) @ designs[f].Z1
        g += reg * theta
        # small designs take Newton steps (exact Hessians, below), after the first one
        # projected step of the quadratic model each; the others solve it to the end
        # (their model is kept)
        newton = small & (iteration > 0)
        if newton.all() or not newton.any():
            delta = _nonneg_qp(M, g, theta, max_iter=1 if newton.all() else 100) - theta
        else:
            delta = np.empty_like(theta)
            for few, which in ((True, np.flatnonzero(newton)), (False, np.flatnonzero(~newton))):
                delta[which] = _nonneg_qp(M[which], g[which], theta[which], max_iter=1 if few else 100) - theta[which]
        slope = np.einsum("bj,bj->b", g, delta)
        t = np.ones(rows.size)
        cand = theta + delta
        eta_new = list(eta)
        for f, sl in spans():
            eta_new[f] = cand[sl] @ designs[f].Z1.T
        f_cand = np.full(rows.size, np.nan)
        # Armijo's condition at the full step, certified without a pass over the clips:
        # the log-loss curves at most 1/4, so f(theta + delta) - f(theta) <= slope +
        # 0.5 delta' (C/4 Z1'Z1 + penalty) delta (Boehning and Lindsay 1988)
        curve = np.concatenate([np.einsum("bj,bj->b", delta[sl] @ designs[f].gram, delta[sl]) for f, sl in spans()])
        rise = slope + 0.5 * (0.25 * C * curve + (reg * delta * delta).sum(1))
        for f, sl in spans():
            e_new = eta_new[f]
            check = np.flatnonzero(rise[sl] > 1e-4 * slope[sl])
            if check.size == 0:
                continue
            # otherwise, Armijo backtracking along the step (feasible: w >= 0 is convex)
            Z1, i = designs[f].Z1, sl.start + check
            unknown = check[np.isnan(f_theta[i])]
            f_theta[sl.start + unknown] = _objective(theta[sl.start + unknown], eta[f][unknown], Yf[f][unknown], reg, C)
            f_cand[i] = _objective(cand[i], e_new[check], Yf[f][check], reg, C)
            for _ in range(40):
                bad = check[f_cand[i] > f_theta[i] + 1e-4 * t[i] * slope[i] + 1e-12 * np.abs(f_theta[i])]
                if bad.size == 0:
                    break
                j = sl.start + bad
                t[j] *= 0.5
                cand[j] = theta[j] + t[j, None] * delta[j]
                e_new[bad] = cand[j] @ Z1.T
                f_cand[j] = _objective(cand[j], e_new[bad], Yf[f][bad], reg, C)
        change = t * np.max(np.abs(delta), axis=1)
        theta, eta, f_theta, p = cand, eta_new, f_cand, [expit(e) for e in eta_new]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = change / prev
            # converged: this step, or the distance still to go at the observed rate
            # (the sum of the remaining steps), is below tol
            done = (change < tol) | (np.isfinite(prev) & (rate < 0.5) & (change * rate / (1 - rate) < tol))
        # recompute the exact Hessian where the model overshot (the line search shortened
        # the step), and at every step on small designs
        stale = (t < 1) | small
        prev = change
        if done.any():
            out[rows[done]] = theta[done]
            keep = ~done
            for f, sl in spans():
                Yf[f], eta[f], p[f] = Yf[f][keep[sl]], eta[f][keep[sl]], p[f][keep[sl]]
            rows, theta, f_theta, prev, stale, small, M = (a[keep] for a in (rows, theta, f_theta, prev, stale, small, M))
            if rows.size == 0:
                break
    out[rows] = theta  # fits that reached max_iter
    return [out[fold == f] for f in range(F)]


class _Rotated:
    """A design in the eigenbasis of its centered Gram matrix, where unconstrained fits
    run.

    With ``m`` the column means and ``(Z - m)'(Z - m) = V diag(lam) V'``, the columns of
    ``X = (Z - m) V`` are centered and orthogonal (``X'X = diag(lam)``, ``X'1 = 0``), and a
    fit's decision values are ``z w + b = x u + c`` with ``u = V'w``, ``c = b + m w``. The
    penalty is unchanged (``|u| = |w|``, V is orthogonal), so this is the same problem,
    and in this basis the curvature of every fit separates into a diagonal, a rank-one
    part and the intercept (:func:`_model_solve`). ``X1T = [X, 1]'`` (the passes over the
    clips read it and its transpose in place); a fit's coefficients here are ``theta =
    [u, c]``.
    """

    def __init__(self, Z: NDArray[np.float64], scored: NDArray[np.float64] | None = None) -> None:
        self.n = Z.shape[0]
        self.mean = Z.mean(axis=0)
        Zc = Z - self.mean
        lam, self.V = np.linalg.eigh(Zc.T @ Zc)
        self.lam = np.maximum(lam, 0.0)
        self.X1T = np.empty((Z.shape[1] + 1, self.n))
        np.matmul(self.V.T, Zc.T, out=self.X1T[:-1])
        self.X1T[-1] = 1.0
        # the scored rows in this basis, transposed, with their intercept row
        self.scoredT = None if scored is None else np.vstack([((scored - self.mean) @ self.V).T, np.ones((1, scored.shape[0]))])

    @functools.cached_property
    def X1T32(self) -> NDArray[np.float32]:
        """``X1T`` in single precision, for the passes far from a fit's optimum."""
        return self.X1T.astype(np.float32)

    def unrotate(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """``[w, b]`` in the original basis for ``theta = [u, c]``."""
        w = theta[:, :-1] @ self.V.T
        return np.hstack([w, (theta[:, -1] - w @ self.mean)[:, None]])


def _fit_unconstrained(designs: Sequence[_Rotated], Ys: Sequence[NDArray[np.float64]], C: float, max_iter: int, tol: float,
                       ) -> list[NDArray[np.float64]]:
    """``[B_i, d + 1]`` coefficients and intercepts (original basis) of the unconstrained fits
    to label rows ``Ys[i] [B_i, n_i]`` on ``designs[i]`` (as wide as each other; see
    :func:`fit_logreg_batched`), all fits stepping together.

    Quasi-Newton: each fit starts at :func:`_mean_field_start`; each pass over its clips
    gives its gradient (the first :data:`_SINGLE_PASSES` in single precision, the rest
    exact), and its step is the BFGS inverse Hessian (the last
    :data:`_MEMORY` steps and changes of gradient, :func:`_two_loop`) started from the model
    Hessian at the current point (:func:`_model_solve`), so the first steps are already
    close to Newton's and a fit converges in three or four passes. A step is measured by
    the largest change it makes to a decision value of the design's scored rows, or else to
    a coefficient in the original basis.
    """
    F = len(designs)
    counts = np.array([Y.shape[0] for Y in Ys])
    fold = np.repeat(np.arange(F), counts)  # the design of each fit, fits sorted by design
    label = np.concatenate([np.arange(c) for c in counts])  # its row in Ys[fold]
    lam = np.stack([D.lam for D in designs])[fold]
    n = np.array([float(D.n) for D in designs])[fold]
    k = lam.shape[1] + 1
    reg = np.r_[np.ones(k - 1), 0.0]
    # the largest curvature the log-loss can have (its second derivative is at most 1/4),
    # per coordinate: X1'X1 = diag(lam, n)
    bound = np.hstack([0.25 * C * lam + 1.0, 0.25 * C * n[:, None]])
    X1tY = np.vstack([Y @ D.X1T.T for D, Y in zip(designs, Ys)])
    # the passes compute tanh(eta / 2) X1 (sigma = 1/2 + tanh(eta / 2) / 2): the gradient's
    # data term is that product halved, less X1'y - 1'X1 / 2
    resid_target = X1tY - 0.5 * np.stack([D.X1T.sum(axis=1) for D in designs])[fold]
    pi = np.clip(X1tY[:, -1] / n, 1e-9, 1 - 1e-9)
    theta = _mean_field_start(C * X1tY[:, :-1], pi, lam, n, C)
    start = np.zeros_like(theta)
    start[:, -1] = np.log(pi / (1 - pi))
    rows = np.arange(fold.size)  # the fits still running, compacted whenever some converge
    out = np.empty_like(theta)

    def spans() -> list[tuple[int, slice]]:
        return _spans(fold[rows], F)

    def size(delta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per fit, the largest change a step makes to a scored decision value or to a
        coefficient."""
        out = np.empty(delta.shape[0])
        for f, sl in spans():
            at = designs[f].scoredT
            change = delta[sl] @ at if at is not None else designs[f].unrotate(delta[sl])
            out[sl] = np.abs(change).max(axis=1)
        return out

    def objective(sub: NDArray[np.intp], th: NDArray[np.float64]) -> NDArray[np.float64]:
        """Objective values of fits ``rows[sub]`` at ``th``."""
        val = np.empty(sub.size)
        for f in np.unique(fold[rows[sub]]):
            m = fold[rows[sub]] == f
            val[m] = _objective(th[m], th[m] @ designs[f].X1T, Ys[f][label[rows[sub[m]]]], reg, C)
        return val

    prev = size(theta - start)
    f_theta = np.full(rows.size, np.nan)  # objective values, computed only where a line search needs them
    pairs: list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]] = []
    last_theta = last_g = None
    for it in range(max_iter):
        g = np.empty_like(theta)
        # the first passes, far from the optimum, in single precision: their rounding
        # (about 1e-7 of a decision value) is far below the steps they lead to; every
        # convergence is judged on a pass in double precision
        low = it < _SINGLE_PASSES
        half = 0.5 * theta
        for f, sl in spans():  # a pass over every fit's clips: its gradient
            X1T = designs[f].X1T32 if low else designs[f].X1T
            p = half[sl].astype(X1T.dtype) @ X1T
            np.tanh(p, out=p)
            g[sl] = p @ X1T.T
        g *= 0.5
        g -= resid_target
        g *= C
        g += reg * theta
        if last_theta is not None and last_g is not None:
            s, y = theta - last_theta, g - last_g
            sy = np.einsum("bj,bj->b", s, y)
            # a pair without positive curvature along its step is left out (rho = 0)
            ok = sy > 1e-12 * np.sqrt(np.einsum("bj,bj->b", s, s) * np.einsum("bj,bj->b", y, y))
            pairs = [*pairs[-(_MEMORY - 1):], (s, y, np.divide(1.0, sy, out=np.zeros_like(sy), where=ok))]
        delta = -_two_loop(g, pairs, functools.partial(_model_solve, theta=theta, lam=lam, n=n, C=C))
        step = size(delta)
        slope = np.einsum("bj,bj->b", g, delta)
        # Armijo's condition at the full step, certified without a pass over the clips:
        # f(theta + delta) - f(theta) <= slope + 0.5 delta' (C/4 X1'X1 + penalty) delta
        # (Boehning and Lindsay 1988)
        certified = slope + 0.5 * (bound * delta * delta).sum(axis=1) <= 1e-4 * slope
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = step / prev
            # converged: this step, or the distance still to go after it at the observed
            # rate (the sum of the remaining steps), is below tol; the step is taken
            # without another pass
            done = certified & ((step < tol) | ((rate < 0.5) & (step * rate / (1 - rate) < tol)))
        if done.any() and not low:
            out[rows[done]] = theta[done] + delta[done]
            keep = ~done
            rows, theta, delta, f_theta, g, slope, step, certified, lam, n, bound, resid_target = (
                a[keep] for a in (rows, theta, delta, f_theta, g, slope, step, certified, lam, n, bound, resid_target))
            pairs = [(s[keep], y[keep], r[keep]) for s, y, r in pairs]
            if rows.size == 0:
                break
        t = np.ones(rows.size)
        cand = theta + delta
        check = np.flatnonzero(~certified)
        f_cand = np.full(rows.size, np.nan)
        if check.size:  # Armijo backtracking along the step
            unknown = check[np.isnan(f_theta[check])]
            f_theta[unknown] = objective(unknown, theta[unknown])
            f_cand[check] = objective(check, cand[check])
            for _ in range(40):
                bad = check[f_cand[check] > f_theta[check] + 1e-4 * t[check] * slope[check] + 1e-12 * np.abs(f_theta[check])]
                if bad.size == 0:
                    break
                t[bad] *= 0.5
                cand[bad] = theta[bad] + t[bad, None] * delta[bad]
                f_cand[bad] = objective(bad, cand[bad])
        last_theta, last_g = theta, g
        theta, f_theta, prev = cand, f_cand, t * step
    out[rows] = theta  # fits that reached max_iter
    return [designs[f].unrotate(out[fold == f]) for f in range(F)]


_SMALL_DESIGN = 2**18
"""Multiply-adds (``n (d+1)^2``) below which a non-negative fit's exact Hessian costs less
than the steps it saves (e.g. 100 clips x 30 indicators): such fits take Newton steps."""

_SINGLE_PASSES = 2
"""Passes of an unconstrained fit in single precision (from its start, a step of about 1e-2
of a decision value, then 4e-4: measured on 89 correlated indicators)."""

_MEMORY = 10
"""Step and gradient-change pairs an unconstrained fit keeps for its quasi-Newton updates."""

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(20)
_GH_W = _GH_W / _GH_W.sum()
"""Gauss-Hermite nodes and weights: expectations over a standard normal."""


def _logistic_moments(c: NDArray[np.float64], s: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """Per row, the expectations of the logistic function and of its first three
    derivatives at ``c + s N(0, 1)``: ``E sigma, E sigma', E sigma'', E sigma'''``."""
    p = expit(c[:, None] + s[:, None] * _GH_X)
    q = p * (1 - p)
    return p @ _GH_W, q @ _GH_W, (q * (1 - 2 * p)) @ _GH_W, (q * (1 - 6 * q)) @ _GH_W


def _mean_field_start(r: NDArray[np.float64], pi: NDArray[np.float64], lam: NDArray[np.float64], n: NDArray[np.float64], C: float,
                      rounds: int = 4) -> NDArray[np.float64]:
    """The starting point of unconstrained fits (rotated, ``[B, d + 1]``): the optimum if the
    clips' decision values were normal, from ``r = C X'y``.

    For normal ``x`` with covariance ``S``, ``E x sigma(x u + c) = S u E sigma'`` (Stein's
    lemma), so with ``X'X = diag(lam)`` the gradient in ``u`` is ``u + C (lam u E sigma' -
    X'y)`` and vanishes at ``u = r / (C lam E sigma' + 1)``, where the expectation is over
    decision values ``N(c, s^2)``, ``s^2 = sum(lam u^2) / n``. A few rounds of that fixed
    point (each with a Newton step on the intercept, ``E sigma = pi``) start a fit about ten
    times closer to its optimum than the intercept alone and the Newton step from there.
    """
    c = np.log(pi / (1 - pi))
    d = pi * (1 - pi)
    for _ in range(rounds):
        u = r / (C * d[:, None] * lam + 1.0)
        s = np.sqrt((lam * u * u).sum(axis=1) / n)
        mean, d, _, _ = _logistic_moments(c, s)
        d = np.maximum(d, 1e-12)
        c = c - (mean - pi) / d
    return np.hstack([r / (C * d[:, None] * lam + 1.0), c[:, None]])


def _model_solve(r: NDArray[np.float64], theta: NDArray[np.float64], lam: NDArray[np.float64], n: NDArray[np.float64], C: float,
                 ) -> NDArray[np.float64]:
    """Per row, ``H^-1 r`` for the model Hessian ``H`` of an unconstrained fit at ``theta``
    (rotated: weights ``u``, intercept ``c``), in ``O(d)``.

    The Hessian is ``C X1' diag(sigma'(eta)) X1`` plus the penalty. For normal decision
    values (Stein's lemma, as in :func:`_mean_field_start`), with ``a = lam u`` and the
    moments ``d1, d2, d3`` of ``sigma', sigma'', sigma'''`` at ``N(c, s^2)``:
    ``H_uu = diag(C d1 lam + 1) + (C d3 / n) a a'``, ``H_uc = C d2 a``, ``H_cc = C n d1``: a
    diagonal, a rank-one term (the curvature falls along the fit's own direction as its
    decision values spread) and the intercept. Eliminating ``c`` leaves ``diag(D) + k a a'``
    with ``k = C d3 / n - C d2^2 / (n d1)``, solved by Sherman-Morrison; ``k`` is kept above
    the value that would make the model singular.
    """
    u, c = theta[:, :-1], theta[:, -1]
    a = lam * u
    _, d1, d2, d3 = _logistic_moments(c, np.sqrt((lam * u * u).sum(axis=1) / n))
    d1 = np.maximum(d1, 1e-12)
    D = C * d1[:, None] * lam + 1.0
    ru, rc = r[:, :-1], r[:, -1]
    rhs = ru - (d2 / (n * d1) * rc)[:, None] * a
    Da, Drhs = a / D, rhs / D
    aDa = (a * Da).sum(axis=1)
    k = np.maximum(C * d3 / n - C * d2 * d2 / (n * d1), -0.9 / np.maximum(aDa, 1e-300))
    x = Drhs - (k * (a * Drhs).sum(axis=1) / (1 + k * aDa))[:, None] * Da
    return np.hstack([x, ((rc - C * d2 * (a * x).sum(axis=1)) / (C * n * d1))[:, None]])


def _two_loop(g: NDArray[np.float64], pairs: list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]],
              solve: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> NDArray[np.float64]:
    """Per row, the quasi-Newton inverse Hessian times ``g``: BFGS updates from the stored
    (step, gradient change, 1 / curvature) ``pairs``, oldest first, applied to the initial
    inverse ``solve`` (Nocedal's two-loop recursion, ``O(d)`` per pair)."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * np.einsum("bj,bj->b", s, q)
        q -= alpha[:, None] * y
        alphas.append(alpha)
    r = solve(q)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        r += (alpha - rho * np.einsum("bj,bj->b", y, r))[:, None] * s
    return r


def _objective(theta: NDArray[np.float64], eta: NDArray[np.float64], Y: NDArray[np.float64], reg: NDArray[np.float64], C: float) -> NDArray[np.float64]:
    """``[B]`` penalised log-losses at coefficients ``theta [B, k]`` with ``eta = theta Z1'``."""
    softplus = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
    f: NDArray[np.float64] = 0.5 * (reg * theta * theta).sum(1) + C * (softplus - Y * eta).sum(1)
    return f


_ENTER = 8
"""Coordinates at zero that one step of :func:`_nonneg_qp` may free."""


def _nonneg_qp(H: NDArray[np.float64], g: NDArray[np.float64], th: NDArray[np.float64], *, tol: float = 1e-10, max_iter: int = 100) -> NDArray[np.float64]:
    """Per row, the minimiser of ``g (x - th) + 0.5 (x - th)' H (x - th)`` over ``x[:-1] >= 0``
    (the last coordinate, the intercept, is free).

    Projected Newton (Bertsekas 1982) on the quadratic, from ``th``: coordinates at (or
    within epsilon of) zero whose gradient pushes them below are held, the others take the
    Newton step of the quadratic restricted to them, projected back, with an Armijo search
    along the projection arc. ``[B, k]`` in, ``[B, k]`` out; no pass over the clips.
    """
    out: NDArray[np.float64] = th.copy()
    rows, x, q = np.arange(th.shape[0]), th.copy(), np.zeros(th.shape[0])
    for i in range(max_iter):
        r = g + np.matmul(H, (x - th)[..., None])[..., 0] if i else g
        proj = x - r
        proj[:, :-1] = np.maximum(proj[:, :-1], 0.0)
        kkt = np.abs(x - proj)
        # optimal where the projected gradient vanishes (H >= I on the weights, so x is
        # then within tol of the minimiser)
        done = kkt.max(axis=1) <= tol
        if done.any():
            out[rows[done]] = x[done]
            keep = ~done
            rows, x, q, H, g, th, r, kkt = (a[keep] for a in (rows, x, q, H, g, th, r, kkt))
            if rows.size == 0:
                break
        eps = np.minimum(1e-6, kkt.sum(1))
        fixed = np.zeros_like(x, dtype=bool)
        at_zero = x[:, :-1] <= eps[:, None]
        fixed[:, :-1] = at_zero & (r[:, :-1] > 0)
        # of the coordinates at zero whose gradient would raise them, only the _ENTER
        # steepest enter at once: with correlated columns nearly all of them point the
        # same way, most end at zero again, and one step over all would solve a system
        # nearly as wide as the design
        rising = np.where(at_zero & (r[:, :-1] <= 0), r[:, :-1], np.inf)
        if rising.shape[1] > _ENTER:
            cut = np.partition(rising, _ENTER - 1, axis=1)[:, _ENTER - 1:_ENTER]
            fixed[:, :-1] |= np.isfinite(rising) & (rising > cut)
        free = ~fixed
        step = _free_solve(H, r, free)
        for _ in range(x.shape[1]):
            # a coordinate at zero that the joint step would push below is held too: moved
            # by the projection alone, it would stall the arc search
            block = free & (x <= eps[:, None]) & (step > 0)
            block[:, -1] = False
            again = np.flatnonzero(block.any(axis=1))
            if again.size == 0:
                break
            free[again] &= ~block[again]
            step[again] = _free_solve(H[again], r[again], free[again])
        fixed = ~free
        dec_free = np.einsum("bj,bj->b", r, step)
        rfix = r * fixed
        t = np.ones(rows.size)
        cand = x - step
        cand[:, :-1] = np.maximum(cand[:, :-1], 0.0)
        # a step the bound does not cut is the Newton step on the free coordinates, which
        # lowers the quadratic by half its decrement; the others are evaluated
        cut = np.flatnonzero((cand != x - step).any(axis=1))
        q_new = q - 0.5 * dec_free
        q_new[cut] = _quadratic(H[cut], g[cut], cand[cut] - th[cut])
        for _ in range(40):
            bad = np.flatnonzero(q_new > q - 1e-4 * (t * dec_free + np.einsum("bj,bj->b", rfix, x - cand)) + 1e-15 * (1.0 + np.abs(q)))
            if bad.size == 0:
                break
            t[bad] *= 0.5
            c = x[bad] - t[bad, None] * step[bad]
            c[:, :-1] = np.maximum(c[:, :-1], 0.0)
            cand[bad] = c
            q_new[bad] = _quadratic(H[bad], g[bad], c - th[bad])
        stuck = np.max(np.abs(cand - x), axis=1) <= 1e-3 * tol
        x, q = cand, q_new
        if stuck.any():  # no coordinate moves: as close as the arc search gets
            out[rows[stuck]] = x[stuck]
            keep = ~stuck
            rows, x, q, H, g, th = (a[keep] for a in (rows, x, q, H, g, th))
            if rows.size == 0:
                break
    out[rows] = x
    return out


def _quadratic(H: NDArray[np.float64], g: NDArray[np.float64], dx: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[B]`` values ``g dx + 0.5 dx' H dx`` per row."""
    q: NDArray[np.float64] = np.einsum("bj,bj->b", g + 0.5 * np.matmul(H, dx[..., None])[..., 0], dx)
    return q


def _free_solve(H: NDArray[np.float64], r: NDArray[np.float64], free: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Per row: ``x[F] = H[F, F]^-1 r[F]`` over the free coordinates ``F``, 0 elsewhere: one
    batched solve, padded to the largest free set (most weights of a fit without signal
    sit at zero, so this is much smaller than ``[B, k, k]``)."""
    B, k = r.shape
    count = free.sum(1)
    m = int(count.max())
    # each row's coordinates reordered, free ones first: position of coordinate j, inverted
    where = np.where(free, np.cumsum(free, axis=1), count[:, None] + np.cumsum(~free, axis=1)) - 1
    order = np.empty((B, k), dtype=np.intp)
    np.put_along_axis(order, where, np.broadcast_to(np.arange(k), (B, k)), 1)
    order = order[:, :m]
    valid = np.arange(m) < count[:, None]
    Hr = np.where(valid[:, :, None] & valid[:, None, :], H[np.arange(B)[:, None, None], order[:, :, None], order[:, None, :]], np.eye(m))
    rr = np.where(valid, np.take_along_axis(r, order, 1), 0.0)
    x = np.empty((B, m))
    for c in range(0, B, 128):  # in blocks that stay in cache
        x[c:c + 128] = np.linalg.solve(Hr[c:c + 128], rr[c:c + 128, :, None])[..., 0]
    out = np.zeros((B, k))
    out[np.arange(B)[:, None], order] = np.where(valid, x, 0.0)
    return out
