"""The batched logistic regression that ``core.stats.cv`` used before it fitted in the
reduced, outer-product-free form: kept as the baseline ``bench/bench_stats.py`` measures
the current solver against (same objective, same answers to its 1e-7 coefficient
tolerance).

Projected Newton (Bertsekas 1982) from zero with an Armijo backtracking search; every
fit's Hessian comes from one ``[n, (d+1)(d+2)/2]`` float32 matrix of the rows' outer
products, and every iteration refits every row's exact Hessian.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit


def fit_logreg_batched(
    Z: NDArray[np.float64], Y: NDArray[np.floating] | NDArray[np.integer], *, C: float = 1.0, max_iter: int = 100, tol: float = 1e-7,
    nonneg: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Same signature and objective as :func:`core.stats.logreg.fit_logreg_batched`."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    n, d = Z.shape
    Z1 = np.hstack([Z, np.ones((n, 1))])
    reg = np.ones(d + 1)
    reg[-1] = 0.0
    iu = np.triu_indices(d + 1)
    outer = (Z1[:, iu[0]] * Z1[:, iu[1]]).astype(np.float32)
    ridge = np.diag(reg + 1e-6).astype(np.float32)
    eye = np.eye(d + 1, dtype=np.float32)
    theta = np.zeros((Y.shape[0], d + 1))
    f = _objective_rows(theta, Z1, Y, reg, C)
    active = np.arange(Y.shape[0])
    for _ in range(max_iter):
        if active.size == 0:
            break
        th, yy = theta[active], Y[active]
        p = expit(th @ Z1.T)
        g = C * (p - yy) @ Z1 + reg * th
        H = _hessians(Z1, C * p * (1.0 - p), iu, outer) + ridge
        if nonneg:
            fixed = np.zeros_like(th, dtype=bool)
            fixed[:, :d] = (th[:, :d] <= 1e-12) & (g[:, :d] > 0)
            free = ~fixed
            H = H * (free[:, :, None] & free[:, None, :]) + eye * fixed[:, None, :]
            g_step = g * free
        else:
            g_step = g
        step = np.linalg.solve(H, g_step.astype(np.float32)[..., None])[..., 0].astype(np.float64)
        t = np.ones(active.size)
        f_old = f[active]
        for _ in range(40):  # Armijo backtracking along the (projected) step
            cand = th - t[:, None] * step
            if nonneg:
                cand[:, :d] = np.maximum(cand[:, :d], 0.0)
            f_new = _objective_rows(cand, Z1, yy, reg, C)
            bad = f_new > f_old - 1e-4 * np.einsum("bj,bj->b", g, th - cand) + 1e-12 * np.abs(f_old)
            if not bad.any():
                break
            t[bad] *= 0.5
        change = np.max(np.abs(cand - th), axis=1)
        theta[active] = cand
        f[active] = f_new
        active = active[change >= tol]
    return theta[:, :d], theta[:, d]


def _hessians(Z1: NDArray[np.float64], w: NDArray[np.float64], iu: tuple[NDArray[np.intp], NDArray[np.intp]], outer: NDArray[np.float32]) -> NDArray[np.float32]:
    k = Z1.shape[1]
    H = np.empty((w.shape[0], k, k), dtype=outer.dtype)
    H[:, iu[0], iu[1]] = w.astype(outer.dtype) @ outer
    H[:, iu[1], iu[0]] = H[:, iu[0], iu[1]]
    return H


def _objective_rows(th: NDArray[np.float64], Z1: NDArray[np.float64], Y: NDArray[np.float64], reg: NDArray[np.float64], C: float) -> NDArray[np.float64]:
    eta = th @ Z1.T
    f: NDArray[np.float64] = 0.5 * (reg * th * th).sum(1) + C * (np.logaddexp(0.0, eta) - Y * eta).sum(1)
    return f


class BaselineDesign:
    """Stands in for ``core.stats.logreg._SharedDesign`` (as :mod:`core.stats.cv` names it) so that ``cv_auc`` refits every fold
    with the baseline solver (``bench/bench_stats.py`` swaps it in)."""

    def __init__(self, Z: NDArray[np.float64], scored: NDArray[np.float64] | None = None) -> None:
        # ``scored`` (the current solver judges convergence on the out-of-fold scores) is
        # not used: the baseline stops on its coefficients
        self.Z = np.asarray(Z, dtype=np.float64)

    def fit(self, Y: NDArray[np.floating] | NDArray[np.integer], *, C: float, max_iter: int = 100, tol: float = 1e-7,
            nonneg: bool = False) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return fit_logreg_batched(self.Z, Y, C=C, max_iter=max_iter, tol=tol, nonneg=nonneg)

    @staticmethod
    def fit_many(designs: Sequence[BaselineDesign], Ys: Sequence[NDArray[np.floating] | NDArray[np.integer]], *, C: float, max_iter: int = 100,
                 tol: float = 1e-7, nonneg: bool = False) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
        return [d.fit(Y, C=C, max_iter=max_iter, tol=tol, nonneg=nonneg) for d, Y in zip(designs, Ys)]
