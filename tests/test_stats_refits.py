"""The fast paths of the permutation statistics give the answers of their slow definitions:
the batched non-negative fits on wide, strongly correlated designs (where nearly every
gradient points the same way) against scipy's bounded quasi-Newton, a fit alone against
the same fit inside a batch (the observed and the permuted fits are one procedure) and
against every fold's fits stepping together, the AUCs of many rows against ranking them,
and the stratified bootstrap against re-ranking every resample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import rankdata

from core.stats import bootstrap_auc, fit_logreg_batched


def _correlated(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = 1.5 * rng.standard_normal((n, 1)) + rng.standard_normal((n, d))
    Z = (Z - Z.mean(0)) / Z.std(0)
    y = (rng.random(n) < 1 / (1 + np.exp(-0.4 * Z[:, :4].sum(1)))).astype(float)
    Y = np.vstack([y] + [rng.permutation(y) for _ in range(5)])
    return Z, Y


def _reference(Z: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    d = Z.shape[1]

    def f(th: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Z @ th[:d] + th[d]
        p = 1 / (1 + np.exp(-eta))
        return 0.5 * th[:d] @ th[:d] + C * np.sum(np.logaddexp(0, eta) - y * eta), np.r_[th[:d] + C * Z.T @ (p - y), C * np.sum(p - y)]

    return minimize(f, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=[(0, None)] * d + [(None, None)],
                    options=dict(ftol=1e-15, gtol=1e-12, maxiter=50000)).x


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_non_negative_fits_on_wide_correlated_designs_equal_the_reference(C: float) -> None:
    Z, Y = _correlated(0, 300, 60)
    w, b = fit_logreg_batched(Z, Y, C=C, nonneg=True)
    for i in range(Y.shape[0]):
        ref = _reference(Z, Y[i], C)
        np.testing.assert_allclose(w[i], ref[:-1], atol=1e-5)
        assert b[i] == pytest.approx(ref[-1], abs=1e-5)


@pytest.mark.parametrize("nonneg, n, d", [(True, 400, 30), (False, 400, 30), (True, 90, 12), (False, 90, 12), (False, 2000, 89)])
def test_a_fit_alone_equals_the_same_fit_in_a_batch(nonneg: bool, n: int, d: int) -> None:
    """Large designs and small ones (90 x 12: non-negative fits take Newton steps there).
    Non-negative fits agree to rounding. Unconstrained fits take their first passes in
    single precision, which rounds differently in batches of different sizes: they agree
    within a tenth of the tolerance they are solved to (1e-7 of a decision value), every
    clip's decision value compared."""
    Z, Y = _correlated(1, n, d)
    w, b = fit_logreg_batched(Z, Y, nonneg=nonneg)
    for i in (0, 3):
        w1, b1 = fit_logreg_batched(Z, Y[i:i + 1], nonneg=nonneg)
        if nonneg:
            np.testing.assert_allclose(w1[0], w[i], atol=1e-12)
            assert b1[0] == pytest.approx(b[i], abs=1e-12)
        else:
            assert np.abs(Z @ (w1[0] - w[i]) + b1[0] - b[i]).max() < 1e-8


def test_folds_fitted_together_equal_each_fitted_alone() -> None:
    """Every fold's refits step together (one batch across designs of different sizes);
    each equals its design's fits alone, and the out-of-fold rows that judge convergence
    only decide when a fit stops: it ends within tolerance of scikit-learn's optimum."""
    from sklearn.linear_model import LogisticRegression

    from core.stats.cv import _SharedDesign

    designs, Ys = [], []
    for s, n in enumerate((300, 280, 320)):
        Z, Y = _correlated(10 + s, n, 20)
        designs.append(_SharedDesign(Z, Z[:40] + 0.1))
        Ys.append(Y)
    for nonneg in (False, True):
        together = _SharedDesign.fit_many(designs, Ys, C=1.0, nonneg=nonneg)
        for D, Y, (w, b) in zip(designs, Ys, together):
            w1, b1 = _SharedDesign(D.Z, D.scored).fit(Y, C=1.0, nonneg=nonneg)
            np.testing.assert_allclose(w, w1, atol=1e-12)
            np.testing.assert_allclose(b, b1, atol=1e-12)
    for D, Y, (w, b) in zip(designs, Ys, _SharedDesign.fit_many(designs, Ys, C=1.0)):
        for i in (0, 4):
            ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=20000).fit(D.Z, Y[i])
            np.testing.assert_allclose(D.scored @ w[i] + b[i], ref.decision_function(D.scored), atol=1e-6)


def test_row_aucs_equal_ranking_with_long_runs_of_ties() -> None:
    """One sort per row, runs of tied scores at their mean rank: the same statistic as
    scipy's mid-ranks, also for a row whose scores all tie and rows sharing one label
    vector."""
    from core.stats import row_aucs

    rng = np.random.default_rng(7)
    y = (rng.random(3000) < 0.4).astype(int)
    S = np.round(rng.standard_normal((6, 3000)), 1)
    S[0] = 0.25  # every score tied
    S[1, :2000] = 1.0  # one long run
    for Y in (y, np.array([rng.permutation(y) for _ in range(6)])):
        Yb = np.broadcast_to(Y, S.shape)
        n1 = Yb.sum(1)
        ref = ((rankdata(S, axis=1) * Yb).sum(1) - n1 * (n1 + 1) / 2) / (n1 * (3000 - n1))
        np.testing.assert_array_equal(row_aucs(Y, S), ref)


@pytest.mark.parametrize("n, decimals", [(30, 0), (301, 1), (2000, 6)])
def test_bootstrap_equals_ranking_every_resample(n: int, decimals: int) -> None:
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.standard_normal(n) + 0.5 * y, decimals)  # ties included
    draws = np.random.default_rng(4)
    pos, neg = s[y == 1], s[y == 0]
    sp = pos[draws.integers(0, pos.size, size=(300, pos.size))]
    sn = neg[draws.integers(0, neg.size, size=(300, neg.size))]
    ranks = rankdata(np.concatenate([sp, sn], axis=1), axis=1)
    ref = (ranks[:, :pos.size].sum(1) - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size)
    np.testing.assert_allclose(bootstrap_auc(y, s, n_boot=300, seed=4), ref, rtol=0, atol=1e-12)


def test_twins_of_opposite_labels_split_across_folds_read_below_the_null_and_are_flagged() -> None:
    """No signal, but every member has a near-identical non-member twin: folds that split
    twins predict each held-out clip from its twin (AUC far below 0.5, its interval too),
    and the run says what that means; folds grouped by pair do not."""
    import pandas as pd

    from core.mia.aggregate import run_mia
    from core.mia.indicators import token_indicator_keys

    rng = np.random.default_rng(0)
    X = np.repeat(rng.standard_normal((60, 8)), 2, axis=0) + 0.05 * rng.standard_normal((120, 8))
    y = np.tile([1, 0], 60)
    pair = np.repeat(np.arange(60), 2)
    table = pd.DataFrame(X, columns=list(token_indicator_keys())[:8], index=pd.Index([f"c{i}" for i in range(120)], name="clip_hash"))
    split = run_mia(table, y, n_boot=100)
    assert split.auc < 0.4 and split.auc_ci[1] < 0.5 and split.auc_p_value > 0.9
    assert any("its interval lie below 0.5" in w for w in split.warnings)
    grouped = run_mia(table, y, n_boot=100, groups=pair, grouping="pair")
    assert abs(grouped.auc - 0.5) < 0.1 and not any("its interval lie below 0.5" in w for w in grouped.warnings)


def test_the_roc_curve_equals_scikit_learns() -> None:
    """``core.stats.roc`` (numpy) gives scikit-learn's ``roc_curve`` points bit for bit: ties,
    rounded scores, collinear points dropped, tiny and large sets."""
    from sklearn.metrics import roc_curve

    from core.stats import roc

    rng = np.random.default_rng(7)
    for _ in range(500):
        n = int(rng.integers(2, 400))
        y = rng.integers(0, 2, n)
        y[:2] = (1, 0)
        s = np.round(rng.standard_normal(n) * rng.choice([0.5, 3.0, 100.0]), int(rng.integers(0, 3)))
        fpr, tpr = roc(y, s)
        ref_fpr, ref_tpr, _ = roc_curve(y, s)
        np.testing.assert_array_equal(fpr, ref_fpr)
        np.testing.assert_array_equal(tpr, ref_tpr)
