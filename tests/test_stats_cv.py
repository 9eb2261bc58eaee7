"""Cross-validated AUCs: batched refits against scikit-learn, grouped folds, and (by
simulation on null data) intervals and permutation p-values that hold their level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.blind import run_blind
from core.mia.aggregate import mia_classifier, run_mia
from core.mia.indicators import token_indicator_keys
from core.mia.registry import direction
from core.stats import PermutationConfig, cv_auc, fit_logreg_batched, make_folds, row_aucs
from core.stats.cv import hanley_mcneil_se, permuted_labels

KEYS = list(token_indicator_keys())[:30]


def test_batched_fits_equal_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((120, 12))
    Y = (rng.random((6, 120)) < 1 / (1 + np.exp(-Z[:, 0]))).astype(float)
    for C in (0.01, 1.0, 30.0):
        w, b = fit_logreg_batched(Z, Y, C=C)
        for i in range(Y.shape[0]):
            ref = LogisticRegression(C=C, max_iter=20000, tol=1e-12).fit(Z, Y[i])
            np.testing.assert_allclose(w[i], ref.coef_[0], atol=1e-5)
            assert b[i] == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_row_aucs_equal_roc_auc_score() -> None:
    rng = np.random.default_rng(1)
    S = np.round(rng.standard_normal((5, 40)), 1)  # ties included
    Y = np.array([rng.permutation(np.r_[np.ones(15), np.zeros(25)]) for _ in range(5)]).astype(int)
    np.testing.assert_allclose(row_aucs(Y, S), [roc_auc_score(Y[i], S[i]) for i in range(5)])


def test_permutations_stay_inside_their_blocks() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 60)
    block = rng.integers(0, 5, 60)
    Yp = permuted_labels(y, block, 50, rng)
    for b in range(5):
        m = block == b
        assert (Yp[:, m].sum(1) == y[m].sum()).all()
    assert (Yp != y).any()


def test_folds_ungrouped_equal_stratified_kfold_and_grouped_keep_groups_apart() -> None:
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    f = make_folds(y, n_splits=10, seed=3)
    for (_tr, te), (_rtr, rte) in zip(f.splits(), StratifiedKFold(10, shuffle=True, random_state=3).split(np.zeros(100), y)):
        assert set(te) == set(rte)
    speakers = np.repeat([f"spk{i}" for i in range(10)], 10)
    g = make_folds(y[np.random.default_rng(0).permutation(100)], groups=speakers, grouping="speaker", n_splits=10, seed=0)
    assert g.grouping == "speaker" and g.to_dict()["n_groups"] == 10
    for tr, te in g.splits():
        assert not set(speakers[tr]) & set(speakers[te])
    single = make_folds(y, groups=["same"] * 100, grouping="source")
    assert single.grouping == "none" and "fewer than two source groups" in single.notes[0]


def test_observed_cv_auc_equals_a_scikit_learn_loop() -> None:
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    X = rng.standard_normal((80, 6)) + 0.5 * y[:, None] * np.r_[1, 0, 0, 0, 0, 1]
    folds = make_folds(y, n_splits=5, seed=1)
    est = make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
    r = cv_auc(X, y, estimator=est, folds=folds, permutations=PermutationConfig(n_perm=100), n_boot=200)
    oof = np.empty(80)
    for tr, te in folds.splits():
        m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-12, max_iter=20000)).fit(X[tr], y[tr])
        oof[te] = m.predict_proba(X[te])[:, 1]
    np.testing.assert_allclose(r.scores, oof, atol=1e-6)
    assert r.auc == pytest.approx(roc_auc_score(y, oof))
    assert r.ci[0] <= r.bootstrap_ci[0] and r.ci[1] >= r.bootstrap_ci[1]
    assert r.p_value < 0.05 and r.n_perm == 100


def test_fold_preprocessing_in_numpy_equals_scikit_learn_fitting_each_fold() -> None:
    """The blind baseline's imputation and scaling and the MIA aggregate's (with infinite
    values and clipping), fitted per fold in numpy, give the designs scikit-learn's own
    fit_transform gives: missing entries in training and test rows, a constant column, an
    all-missing one, a nearly constant one."""
    from sklearn.base import clone

    from core.blind.diagnostics import numeric_pipeline
    from core.stats.cv import _FoldDesigns, _fold_steps, _split_pipeline

    rng = np.random.default_rng(11)
    X = rng.standard_normal((90, 7)) * np.r_[1, 3, 0.1, 1, 1, 1, 1] + 5.0
    X[:, 3] = 2.0  # constant
    X[:, 4] = np.nan  # never measured
    X[:, 5] = 1e8 + 1e-9 * rng.standard_normal(90)  # constant to rounding
    X[rng.random((90, 7)) < 0.08] = np.nan
    y = np.r_[np.ones(45, int), np.zeros(45, int)]
    folds = make_folds(y, n_splits=5, seed=3)
    # the MIA aggregate's imputation of non-finite values, scaling and clipping too
    Xm = X.copy()
    Xm[rng.random((90, 7)) < 0.03] = np.inf
    Xm[rng.random((90, 7)) < 0.03] = -np.inf
    Xm[:, 0] *= 50.0  # standardized values beyond the clip
    Xm[3, 0] = 1e4
    for est, data in ((numeric_pipeline(), X), (mia_classifier(), Xm)):
        pre, _, _ = _split_pipeline(est)
        assert _fold_steps(pre) is not None  # the numpy path is taken
        designs = _FoldDesigns(data, folds, est)
        for (tr, te), (_, _, D, zte) in zip(folds.splits(), designs.parts):
            p = clone(pre)
            np.testing.assert_allclose(D.Z, p.fit_transform(data[tr]), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(zte, p.transform(data[te]), rtol=1e-12, atol=1e-12)
    # a step it does not know takes scikit-learn's path
    assert _fold_steps(make_pipeline(StandardScaler(with_mean=False), LogisticRegression())[:-1]) is None


def test_hanley_mcneil_at_half_is_the_exact_null_sd() -> None:
    n1, n0 = 37, 53
    assert hanley_mcneil_se(0.5, n1, n0) == pytest.approx(np.sqrt((n1 + n0 + 1) / (12 * n1 * n0)))
    assert hanley_mcneil_se(0.9, n1, n0) < hanley_mcneil_se(0.5, n1, n0)


def _table(X: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(X, columns=KEYS, index=pd.Index([f"c{i}" for i in range(len(X))], name="clip_hash"))


def _sim(seed: int, shift: float, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    X = rng.standard_normal((n, len(KEYS)))
    X[:, :3] += shift * y[:, None] * np.array([direction(k) for k in KEYS[:3]])
    return X, y


@pytest.mark.slow
def test_mia_aggregate_holds_its_level_and_finds_a_weak_signal() -> None:
    """Null data, n = 100: the interval covers 0.5 in >= 92% of 100 runs, p < 0.05 in <= 8%;
    3 of 30 indicators shifted by 0.6 SD: p < 0.05 in >= 80% of 40 runs. (100 runs, not the
    minimum 60: at a true 95% coverage, 60 runs fall below 92% about one time in six.)"""
    cover = reject = 0
    boot_cover = 0
    N = 100
    for s in range(N):
        X, y = _sim(s, 0.0)
        r = run_mia(_table(X), y, n_boot=200, seed=s)
        cover += r.auc_ci[0] <= 0.5 <= r.auc_ci[1]
        reject += r.auc_p_value < 0.05
        lo, hi = r.inference["bootstrap_ci"]
        boot_cover += lo <= 0.5 <= hi
    assert cover / N >= 0.92, cover
    assert reject / N <= 0.08, reject
    assert boot_cover < cover  # the fixed-score bootstrap alone is too narrow
    found = sum(run_mia(_table(X), y, n_boot=200, seed=s).auc_p_value < 0.05 for X, y in (_sim(100 + s, 0.6) for s in range(40)))
    assert found / 40 >= 0.80, found


@pytest.mark.slow
def test_blind_auc_holds_its_level() -> None:
    """The blind baseline's numeric model (what ``run_blind`` fits for a numeric group and
    for all groups) on null data: coverage >= 92% and p < 0.05 in <= 8% of 100 runs."""
    from core.blind.diagnostics import numeric_pipeline

    cover = reject = 0
    N = 100
    for s in range(N):
        X, y = _sim(200 + s, 0.0)
        r = cv_auc(X[:, :20], y, estimator=numeric_pipeline(), folds=make_folds(y, seed=s), n_boot=200, seed=s)
        cover += r.ci[0] <= 0.5 <= r.ci[1]
        reject += r.p_value < 0.05
    assert cover / N >= 0.92, cover
    assert reject / N <= 0.08, reject


def test_run_blind_reports_p_values_and_inference_per_group() -> None:
    X, y = _sim(7, 0.0)
    X[:, 0] += 1.2 * y  # one group carries a shift, the other does not
    r = run_blind({"metadata": pd.DataFrame(X[:, :5]), "acoustic": pd.DataFrame(X[:, 5:10])}, y, n_boot=100)
    assert r.auc_p_value["metadata"] < 0.05 < r.auc_p_value["acoustic"]
    assert r.inference["all"]["folds"]["grouping"] == "none" and r.inference["all"]["n_perm"] >= 100
    assert r.verdict("metadata").level in ("shift", "confounded") and r.verdict("acoustic").level == "fair"
    d = r.to_dict()
    assert set(d["auc_p_value"]) == {"metadata", "acoustic", "all"} and d["verdict"]["acoustic"]["level"] == "fair"


def _speaker_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 speakers x (5 members + 5 non-members); strong speaker effects, no label signal."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(10), 10)
    y = np.tile(np.r_[np.ones(5, int), np.zeros(5, int)], 10)
    X = 1.5 * rng.standard_normal((10, 8))[spk] + rng.standard_normal((100, 8))
    return X, y, spk


@pytest.mark.slow
def test_grouped_folds_remove_the_speaker_bias() -> None:
    grouped, ungrouped = [], []
    off = PermutationConfig(n_perm=0)
    for s in range(60):
        X, y, spk = _speaker_data(s)
        est = mia_classifier(1.0)
        grouped.append(cv_auc(X, y, estimator=est, folds=make_folds(y, groups=spk, grouping="speaker", seed=s), permutations=off, n_boot=10).auc)
        ungrouped.append(cv_auc(X, y, estimator=est, folds=make_folds(y, seed=s), permutations=off, n_boot=10).auc)
    assert abs(np.mean(grouped) - 0.5) <= 0.02, np.mean(grouped)
    assert np.mean(ungrouped) < 0.48  # the bias grouped folds remove


def _nested_speakers(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 speakers, each all members or all non-members (as when members and non-members
    are recorded by different people); features are noise."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(10), 10)
    return rng.standard_normal((100, 4)), (spk < 5).astype(int), spk


def test_out_of_fold_scores_are_prior_corrected_like_a_scikit_learn_loop() -> None:
    """Grouped folds with unequal member shares: each fold's score is scikit-learn's
    decision function minus that fold's training log prior odds."""
    X, y, spk = _nested_speakers(3)
    folds = make_folds(y, groups=spk, grouping="speaker", n_splits=10, seed=0)
    r = cv_auc(X, y, estimator=make_pipeline(StandardScaler(), LogisticRegression(C=1.0)), folds=folds, permutations=PermutationConfig(n_perm=0), n_boot=10)
    ref = np.empty(100)
    shares = set()
    for tr, te in folds.splits():
        m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-12, max_iter=20000)).fit(X[tr], y[tr])
        pi = y[tr].mean()
        shares.add(round(pi, 3))
        ref[te] = 1 / (1 + np.exp(-(m.decision_function(X[te]) - np.log(pi / (1 - pi)))))
    assert len(shares) > 1  # the case the correction is for
    np.testing.assert_allclose(r.scores, ref, atol=1e-5)


@pytest.mark.slow
def test_grouped_folds_unbiased_when_each_speaker_has_one_label() -> None:
    """Null data, one label per speaker, leave-one-speaker-out folds: without the prior
    correction the pooled AUC averages about 0.18 (each test fold's label is the opposite
    of its training majority) and constant evidence scores 0.0; with it the mean is
    0.45 (the small-sample negative bias of cross-validated AUCs on null data, which the
    permutation null shares: p < 0.05 in at most 10% of 40 runs), and constant evidence
    ties exactly at 0.5."""
    off = PermutationConfig(n_perm=0)
    aucs, const, reject = [], [], 0
    for s in range(40):
        X, y, spk = _nested_speakers(s)
        folds = make_folds(y, groups=spk, grouping="speaker", n_splits=10, seed=s)
        r = cv_auc(X, y, estimator=mia_classifier(1.0, signed=False), folds=folds, permutations=PermutationConfig(n_perm=100), n_boot=10, seed=s)
        aucs.append(r.auc)
        reject += r.p_value < 0.05
        const.append(cv_auc(np.zeros((100, 4)), y, estimator=mia_classifier(1.0, signed=False), folds=folds, permutations=off, n_boot=10).auc)
    assert np.mean(aucs) >= 0.42, np.mean(aucs)
    assert reject <= 4, reject
    assert const == [0.5] * 40


def test_non_negative_fits_equal_a_bounded_quasi_newton_reference() -> None:
    """Projected Newton with w >= 0 against scipy's L-BFGS-B on the same objective, with
    correlated columns (some weights end at the bound, some inside)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(5)
    n, d = 90, 12
    Z = rng.standard_normal((n, d))
    Z[:, 4:8] = Z[:, [4]] + 0.1 * rng.standard_normal((n, 4))
    Y = (rng.random((4, n)) < 1 / (1 + np.exp(Z[:, 1] - Z[:, 2]))).astype(float)
    for C in (0.01, 1.0):
        w, b = fit_logreg_batched(Z, Y, C=C, nonneg=True)
        assert (w >= 0).all() and (w == 0).any() and (w > 0).any()
        for i in range(Y.shape[0]):
            def f(th, y=Y[i], C=C):
                eta = Z @ th[:d] + th[d]
                p = 1 / (1 + np.exp(-eta))
                return 0.5 * th[:d] @ th[:d] + C * np.sum(np.logaddexp(0, eta) - y * eta), np.r_[th[:d] + C * Z.T @ (p - y), C * np.sum(p - y)]

            ref = minimize(f, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=[(0, None)] * d + [(None, None)],
                           options=dict(ftol=1e-15, gtol=1e-12, maxiter=20000)).x
            np.testing.assert_allclose(w[i], ref[:d], atol=1e-5)
            assert b[i] == pytest.approx(ref[d], abs=1e-5)
