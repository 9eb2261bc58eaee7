"""The best single indicator as a held-out estimate: chosen on each training fold, read on
its held-out clips, refitted (re-chosen) under every permutation. Checked against a slow
loop written from the definition with scikit-learn's AUC, and by simulation: on null data
it sits at chance and its test holds its level, where the best indicator chosen on the
reported clips does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from core.mia.aggregate import FiniteImputer, run_mia
from core.stats import PermutationConfig, cv_auc, make_folds
from core.stats.cv import BestSingleColumn, permuted_labels


def held_out_by_hand(X: np.ndarray, y: np.ndarray, fold_of: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Per fold: every column's AUC on the training clips (scikit-learn), the first largest
    picked, each held-out clip scored by the share of training values below it (ties half)."""
    scores, picks = np.empty(y.size), []
    for f in range(int(fold_of.max()) + 1):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        aucs = [roc_auc_score(y[train], X[train, j]) for j in range(X.shape[1])]
        j = int(np.argmax(aucs))
        picks.append(j)
        for i in test:
            below = np.sum(X[train, j] < X[i, j]) + 0.5 * np.sum(X[train, j] == X[i, j])
            scores[i] = below / train.size
    return scores, picks


def _data(rng: np.random.Generator, n: int = 60, d: int = 12, shift: float = 0.0, informative: int = 0):
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    X = rng.normal(size=(n, d))
    X[:, informative] += shift * y
    return X, y


def test_scores_and_picks_match_the_definition_for_observed_and_permuted_labels():
    rng = np.random.default_rng(0)
    X, y = _data(rng, n=48, d=9, shift=0.8, informative=4)
    X[:, 2] = np.round(X[:, 2])  # ties within a column
    folds = make_folds(y, n_splits=4, seed=3)
    designs = BestSingleColumn().designs(X, folds)
    Y = np.vstack([y[None, :], permuted_labels(y, folds.fold_of, 5, rng)])
    S = designs.scores(Y)
    for b in range(Y.shape[0]):
        expected, picks = held_out_by_hand(X, Y[b], folds.fold_of)
        np.testing.assert_allclose(S[b], expected, atol=1e-12)
        assert designs.picks(Y[b]) == picks
    assert designs.picks(y).count(4) >= 3  # the informative column, chosen by the observed labels


def test_non_finite_values_are_replaced_from_the_training_fold_before_choosing():
    rng = np.random.default_rng(1)
    X, y = _data(rng, n=40, d=5, shift=1.5, informative=1)
    X[3, 1], X[10, 1], X[7, 0] = np.nan, np.inf, -np.inf
    folds = make_folds(y, n_splits=5, seed=0)
    got = BestSingleColumn((FiniteImputer().fold_apply,)).designs(X, folds).scores(y[None, :])[0]
    expected = np.empty(y.size)
    for f in range(5):
        train, test = np.flatnonzero(folds.fold_of != f), np.flatnonzero(folds.fold_of == f)
        imp = FiniteImputer().fit(X[train])
        Z = np.empty_like(X)
        Z[train], Z[test] = imp.transform(X[train]), imp.transform(X[test])
        fold_scores, _ = held_out_by_hand(Z, y, np.where(folds.fold_of == f, 1, 0))  # fold 1 = this test fold
        expected[test] = fold_scores[test]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.isfinite(got).all()
    with pytest.raises(ValueError, match="finite values"):  # without the step, refused rather than ranked as NaN
        BestSingleColumn().designs(X, folds)


def test_on_null_data_it_sits_at_chance_and_its_test_holds_its_level_where_the_in_sample_best_does_not():
    """300 null tables of 60 clips and 20 indicators: the held-out best indicator's mean AUC
    is 0.5 and its permutation test rejects at 5% within binomial noise of 5%; the best
    indicator chosen on the same clips reads well above chance."""
    rng = np.random.default_rng(2024)
    rejections, aucs, in_sample, covered = 0, [], [], 0
    runs = 300
    for r in range(runs):
        X, y = _data(rng, n=60, d=20)
        folds = make_folds(y, n_splits=5, seed=r)
        cv = cv_auc(X, y, estimator=BestSingleColumn(), folds=folds, permutations=PermutationConfig(n_perm=99, min_perm=99),
                    n_boot=50, seed=r)
        rejections += cv.p_value <= 0.05
        aucs.append(cv.auc)
        covered += cv.ci[0] <= 0.5 <= cv.ci[1]
        in_sample.append(max(roc_auc_score(y, X[:, j]) for j in range(X.shape[1])))
    bound = 0.05 + 2.58 * np.sqrt(0.05 * 0.95 / runs)  # 99% binomial band above the nominal level
    assert rejections / runs <= bound
    assert abs(np.mean(aucs) - 0.5) < 0.02
    assert covered / runs >= 0.95 - 2.58 * np.sqrt(0.05 * 0.95 / runs)
    assert np.mean(in_sample) > 0.6  # what the descriptive best indicator reads on the same null data


def test_one_informative_indicator_among_many_is_found_in_every_fold():
    rng = np.random.default_rng(5)
    X, y = _data(rng, n=120, d=30, shift=1.2, informative=17)
    keys = [f"loss@t{j}" for j in range(30)]
    table = pd.DataFrame(-X, columns=keys)  # loss@t*: lower = member, so the aligned matrix is X
    res = run_mia(table, y, n_splits=5, n_boot=50, permutations=PermutationConfig(n_perm=50))
    best = res.to_dict()["held_out_best"]
    assert best["picks"] == {"loss@t17": 5} and best["n_folds"] == 5
    assert best["auc"] == pytest.approx(roc_auc_score(y, res.held_out_best_scores.to_numpy()))
    assert best["auc"] > 0.75 and best["auc_p_value"] <= 1 / 51 + 1e-12
    assert best["auc_ci"][0] <= best["auc"] <= best["auc_ci"][1]
    assert best["null_sd"] > 0 and "training fold" in best["method"]


def test_mid_ranks_are_scipys_average_ranks_with_ties():
    from scipy.stats import rankdata

    from core.stats.cv import _mid_ranks

    rng = np.random.default_rng(9)
    Z = rng.normal(size=(300, 7))
    Z[:, 1] = np.round(Z[:, 1])  # long runs of ties
    Z[:, 4] = 2.5  # one run
    ranks, srt = _mid_ranks(Z)
    np.testing.assert_array_equal(ranks, rankdata(Z, axis=0))
    np.testing.assert_array_equal(srt, np.sort(Z, axis=0).T)
