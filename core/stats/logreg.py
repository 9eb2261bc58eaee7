"""Batched L2 logistic regression: many label rows fitted on one shared design at once.

What the cross-validated AUCs of :mod:`core.stats.cv` refit for every label permutation:
:func:`fit_logreg_batched` minimises scikit-learn's ``LogisticRegression`` objective for
each row of labels, optionally with non-negative weights, and :class:`_SharedDesign` keeps
what every fit on one design shares (its Gram matrix, its rotated basis), so the refits of a
fold cost passes over its clips, not a fresh solver each.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from core.stats.logreg_common import _objective, _spans
from core.stats.logreg_unconstrained import _fit_unconstrained, _Rotated

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


_SMALL_DESIGN = 2**18
"""Multiply-adds (``n (d+1)^2``) below which a non-negative fit's exact Hessian costs less
than the steps it saves (e.g. 100 clips x 30 indicators): such fits take Newton steps."""

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
