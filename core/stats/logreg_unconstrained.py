"""The unconstrained batched logistic fits of :mod:`core.stats.logreg` (the blind
baseline's): every fit runs in the eigenbasis of its design's centered Gram matrix
(:class:`_Rotated`), starts where near-normal decision values would put its optimum and takes
quasi-Newton steps on a diagonal-plus-rank-one model of its Hessian
(:func:`_fit_unconstrained`)."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from core.stats.logreg_common import _objective, _spans


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
