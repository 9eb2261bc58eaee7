"""Indicator table, CV aggregation and correlation against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.mia.aggregate import FiniteImputer, blind_correlation, indicator_table, run_mia
from core.mia.diffusion import diffusion_features
from core.mia.indicators import compute_indicators, token_indicator_keys
from core.mia.registry import direction
from core.targets.token_stats import token_stats_from_logits
from core.evidence import ClipEvidence, DiffusionEvidence

COLUMNS = ["ppl", "entropy", "prob_gap", "min_k@0.2", "max_renyi[2]@0.1", "loss@t100"]


def noise_table(n: int, seed: int, columns: list[str] = COLUMNS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, len(columns))), columns=columns,
                        index=pd.Index([f"c{i}" for i in range(n)], name="clip_hash"))


def _nonneg_logreg(Z: np.ndarray, y: np.ndarray, *, C: float) -> tuple[np.ndarray, float]:
    """Reference fit written from the objective: 0.5 |w|^2 + C sum logloss, w >= 0, by scipy's L-BFGS-B."""
    from scipy.optimize import minimize

    d = Z.shape[1]

    def f(th):
        w, b = th[:d], th[d]
        eta = Z @ w + b
        p = 1 / (1 + np.exp(-eta))
        return 0.5 * w @ w + C * np.sum(np.logaddexp(0, eta) - y * eta), np.r_[w + C * Z.T @ (p - y), C * np.sum(p - y)]

    r = minimize(f, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=[(0, None)] * d + [(None, None)],
                 options=dict(ftol=1e-15, gtol=1e-12, maxiter=20000))
    return r.x[:d], float(r.x[d])


def labels_for(n: int, seed: int) -> np.ndarray:
    y = np.zeros(n, dtype=int)
    y[np.random.default_rng(seed).permutation(n)[: n // 2]] = 1
    return y


def test_cv_aggregate_equals_manual_sklearn_loop() -> None:
    n = 90
    table = noise_table(n, 0)
    y = labels_for(n, 1)
    table.loc[y == 1, "ppl"] -= 0.8  # a real but imperfect signal
    table.iloc[[3, 17, 40], 1] = np.nan
    res = run_mia(table, y, n_splits=10, seed=7, n_boot=200)

    X = table.to_numpy() * np.array([direction(c) for c in table.columns])
    oof = np.empty(n)
    for train, test in StratifiedKFold(10, shuffle=True, random_state=7).split(X, y):
        prep = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()).fit(X[train])
        w, b = _nonneg_logreg(prep.transform(X[train]), y[train], C=1.0)
        prior = np.log(y[train].mean() / (1 - y[train].mean()))  # scores at equal priors
        oof[test] = 1 / (1 + np.exp(-(prep.transform(X[test]) @ w + b - prior)))
    np.testing.assert_allclose(res.scores.to_numpy(), oof, rtol=1e-5, atol=2e-7)
    assert list(res.scores.index) == list(table.index)
    assert res.auc == pytest.approx(roc_auc_score(y, oof))
    lo, hi = res.auc_ci
    assert lo <= res.auc <= hi
    for j, key in enumerate(table.columns):
        ok = np.isfinite(X[:, j])
        assert res.indicator_auc[key] == pytest.approx(roc_auc_score(y[ok], X[ok, j])), key
    assert res.indicator_auc["ppl"] > 0.6  # lower ppl = member, aligned by the registry
    assert res.n_members == 45 and res.n_nonmembers == 45 and res.n_folds == 10
    assert any("entropy (3)" in w for w in res.warnings)


def test_one_separating_indicator_gives_auc_near_one() -> None:
    n = 240
    table = noise_table(n, 2)
    y = labels_for(n, 3)
    table["min_k@0.2"] = np.where(y == 1, -1.0, -3.0) + 0.2 * np.random.default_rng(4).normal(size=n)
    res = run_mia(table, y, n_boot=200)
    assert res.indicator_auc["min_k@0.2"] > 0.99
    assert res.best_indicator == "min_k@0.2"
    assert res.auc > 0.97
    assert res.tpr_at_1pct_fpr.tpr is not None and res.tpr_at_1pct_fpr.tpr > 0.8
    assert res.tpr_at_01pct_fpr.tpr is None  # 120 non-members cannot measure 0.1% FPR
    # a lower-is-member indicator separating the same way gives an aligned AUC near 1 too
    table2 = noise_table(n, 5)
    table2["ppl"] = np.where(y == 1, 5.0, 20.0) + np.random.default_rng(6).normal(size=n)
    res2 = run_mia(table2, y, n_boot=200)
    assert res2.indicator_auc["ppl"] > 0.99 and res2.auc > 0.97


def test_pure_noise_gives_chance_auc_within_its_interval() -> None:
    n = 200
    cols = list(token_indicator_keys(with_infill=False)[:20])
    table = noise_table(n, 8, cols)
    y = labels_for(n, 9)
    res = run_mia(table, y, n_boot=500)
    lo, hi = res.auc_ci
    assert lo <= 0.5 <= hi
    assert abs(res.auc - 0.5) < 0.12
    assert not any("only" in w for w in res.warnings)


def test_non_finite_values_are_handled_inside_folds() -> None:
    n = 60
    table = noise_table(n, 10)
    y = labels_for(n, 11)
    table.iloc[0, 0] = np.inf
    table.iloc[1, 0] = -np.inf
    table["entropy"] = np.nan  # no finite value at all
    res = run_mia(table, y, n_boot=100)
    assert math.isfinite(res.auc) and np.all(np.isfinite(res.scores))
    assert math.isnan(res.indicator_auc["entropy"])
    assert any("dropped" in w and "entropy" in w for w in res.warnings)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["indicators"]["entropy"] is None


def test_finite_imputer_uses_training_statistics_only() -> None:
    train = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan], [10.0, np.nan]])
    test = np.array([[np.nan, 1.0], [np.inf, np.nan], [-np.inf, 2.0]])
    imp = FiniteImputer().fit(train)
    out = imp.transform(test)
    np.testing.assert_array_equal(out, [[3.0, 1.0], [10.0, 0.0], [1.0, 2.0]])


def test_to_dict_is_json_safe_and_complete() -> None:
    n = 30
    table = noise_table(n, 12)
    y = labels_for(n, 13)
    res = run_mia(table, y, n_boot=100)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    for key in ("auc", "auc_ci", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "indicators",
                "best_indicator", "n_members", "n_nonmembers", "warnings"):
        assert key in d
    assert d["n_members"] == 15 and d["n_nonmembers"] == 15
    assert d["tpr_at_1pct_fpr"] is None and d["tpr_at_0.1pct_fpr"] is None  # 15 non-members
    assert "not measurable" in d["tpr_at_fpr_text"][0]
    assert set(d["indicators"]) == set(COLUMNS)
    assert d["best_indicator"] == max(res.indicator_auc, key=res.indicator_auc.get)
    assert any("unreliable" in w for w in d["warnings"])
    assert set(d["roc"]) == set(COLUMNS) | {"aggregate"}


def test_run_mia_rejects_unknown_columns_and_bad_labels() -> None:
    table = noise_table(20, 14)
    with pytest.raises(ValueError):
        run_mia(table, np.zeros(19, dtype=int))
    with pytest.raises(KeyError, match="unknown indicator family 'perplexity'; valid: .*ppl"):
        run_mia(table.rename(columns={"ppl": "perplexity"}), labels_for(20, 1))


def test_indicator_table_from_evidence() -> None:
    rng = np.random.default_rng(15)
    clips = []
    for c in range(4):
        N = 6 + c
        st = token_stats_from_logits(rng.normal(size=(N, 13)), rng.integers(0, 13, size=N))
        clips.append(ClipEvidence(clip_hash=f"tok{c}", tokens=st, text="hello" if c % 2 else ""))
    dev = DiffusionEvidence(np.array([100, 300]), rng.uniform(size=(2, 3)), rng.uniform(size=(2, 3)))
    clips.append(ClipEvidence(clip_hash="dif", diffusion=dev))
    table = indicator_table(clips)
    assert list(table.index) == ["tok0", "tok1", "tok2", "tok3", "dif"]
    assert set(table.columns) == set(token_indicator_keys(with_infill=False)) | set(diffusion_features(dev))
    for c in range(4):
        expected = compute_indicators(clips[c].tokens, "hello" if c % 2 else None)
        assert table.loc[f"tok{c}", list(expected)].to_numpy() == pytest.approx(list(expected.values()))
        assert np.isnan(table.loc[f"tok{c}", "loss@t100"])
    assert table.loc["dif", "loss_mean"] == pytest.approx(dev.loss_cond.mean())
    assert np.isnan(table.loc["dif", "ppl"])
    texts = ["a", "b", "c", "d", None]
    t2 = indicator_table(clips, texts=texts)
    assert t2.loc["tok0", "zlib"] == pytest.approx(compute_indicators(clips[0].tokens, "a")["zlib"])
    with pytest.raises(ValueError):
        indicator_table([ClipEvidence(clip_hash="empty")])


def test_blind_correlation_matches_scipy() -> None:
    rng = np.random.default_rng(16)
    a = rng.normal(size=50)
    b = 0.5 * a + rng.normal(size=50)
    a[3] = np.nan
    ok = np.isfinite(a)
    got = blind_correlation(a, b)
    assert got["n"] == 49
    assert got["pearson_r"] == pytest.approx(pearsonr(a[ok], b[ok]).statistic)
    assert got["pearson_p"] == pytest.approx(pearsonr(a[ok], b[ok]).pvalue)
    assert got["spearman_rho"] == pytest.approx(spearmanr(a[ok], b[ok]).statistic)
    assert got["spearman_p"] == pytest.approx(spearmanr(a[ok], b[ok]).pvalue)
    constant = blind_correlation(np.ones(10), rng.normal(size=10))
    assert constant["pearson_r"] is None and constant["n"] == 10
    with pytest.raises(ValueError):
        blind_correlation(np.ones(3), np.ones(4))
