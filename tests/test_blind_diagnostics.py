"""Blind-baseline diagnostics against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.signal as ss
import torch
from scipy import stats as sps
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from core import stats
from core.blind import (
    ACOUSTIC_FEATURE_NAMES,
    acoustic_features,
    blind_mia_correlation,
    cross_dataset_auc,
    run_blind,
)

torch.set_num_threads(1)
SR = 16000


def _voice(rng: np.random.Generator, dur: float = 1.0) -> np.ndarray:
    """Harmonic 'voiced' syllables with noisy bursts and pauses, full band to 7.8 kHz."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 220) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    ph = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.where(h * f0 < 7800, np.sin(h * ph) / h, 0.0) for h in range(1, 60))
    env = np.clip(np.sin(2 * np.pi * rng.uniform(1.5, 3) * t + rng.uniform(0, 6)), 0, None)
    y = y * env + 0.3 * rng.standard_normal(n) * (env > 0.5)
    return 0.3 * y / np.abs(y).max()


def _acoustic_dataset(n: int, *, shifted: bool, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    sos = ss.butter(10, 4000, fs=SR, output="sos")
    clips, y = [], np.arange(n) % 2
    for lab in y:
        c = _voice(rng)
        if shifted and lab == 0:  # non-members: low-passed at 4 kHz plus a noise floor
            c = ss.sosfilt(sos, c) + 0.003 * rng.standard_normal(c.size)
        else:
            c = c + 1e-4 * rng.standard_normal(c.size)
        clips.append(c.astype(np.float32))
    return pd.DataFrame(acoustic_features(clips, device="cpu"), columns=ACOUSTIC_FEATURE_NAMES), y


def test_shifted_acoustics_are_detected_and_explained():
    table, y = _acoustic_dataset(60, shifted=True, seed=0)
    r = run_blind({"acoustic": table}, y, n_boot=200)
    assert r.auc["acoustic"] > 0.95 and r.auc["all"] > 0.95
    assert r.shift_detected("acoustic")
    top = r.top_features[0]
    assert top["feature"] in ("effective_bandwidth_hz", "noise_floor_db")
    assert ("effective bandwidth" in top["sentence"]) or ("noise floor" in top["sentence"])
    eb = table["effective_bandwidth_hz"]
    assert eb[y == 0].median() < 5000 < eb[y == 1].median()
    json.dumps(r.to_dict())


def test_iid_acoustics_give_chance_auc():
    table, y = _acoustic_dataset(60, shifted=False, seed=1)
    r = run_blind({"acoustic": table}, y, n_boot=200)
    assert abs(r.auc["acoustic"] - 0.5) < 0.15
    lo, hi = r.auc_ci["acoustic"]
    assert lo < 0.5 < hi and not r.shift_detected("acoustic")


def _manual_cv(docs, num, y, *, seed, n_splits=10, fit_vocab_on_all=False):
    """Reference loop: every preprocessing step fitted on the training fold only."""
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out = np.empty(len(y))
    docs = np.asarray(docs, dtype=object)
    for tr, te in folds.split(np.zeros(len(y)), y):
        parts_tr, parts_te = [], []
        if num is not None:
            sc = StandardScaler().fit(num[tr])
            parts_tr.append(sc.transform(num[tr]))
            parts_te.append(sc.transform(num[te]))
        tf = TfidfVectorizer(ngram_range=(1, 2)).fit(docs if fit_vocab_on_all else docs[tr])
        parts_tr.append(tf.transform(docs[tr]).toarray())
        parts_te.append(tf.transform(docs[te]).toarray())
        lr = LogisticRegression(C=1.0, max_iter=20000, tol=1e-12).fit(np.hstack(parts_tr), y[tr])
        out[te] = lr.predict_proba(np.hstack(parts_te))[:, 1]
    return out


def _text_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    common = ["the cat sat", "a dog ran", "birds sing loudly", "rain fell today"]
    # each clip also carries a unique token: a vocabulary fitted on all clips would
    # contain the test fold's unique words
    docs = [
        f"{common[rng.integers(4)]} {'morning' if (lab and rng.random() < 0.7) else 'evening'} tok{i}"
        for i, lab in enumerate(y)
    ]
    num = rng.standard_normal((n, 3)) + 0.4 * y[:, None]
    return docs, num, y


def test_tfidf_is_fitted_inside_folds():
    docs, num, y = _text_data()
    r = run_blind({"text": pd.Series(docs)}, y, n_boot=100)
    ref = _manual_cv(docs, None, y, seed=0)
    np.testing.assert_allclose(r.scores["text"], ref, atol=1e-6)
    leaky = _manual_cv(docs, None, y, seed=0, fit_vocab_on_all=True)
    assert np.max(np.abs(leaky - ref)) > 1e-4  # the check can tell the two apart
    assert r.auc["text"] > 0.7
    assert any('"morning"' in t["sentence"] for t in r.top_by_group["text"][:3])


def test_all_group_matches_reference_column_transformer():
    docs, num, y = _text_data(seed=2)
    tables = {"metadata": pd.DataFrame(num, columns=["a", "b", "c"]), "text": pd.Series(docs)}
    r = run_blind(tables, y, n_boot=100)
    ref = _manual_cv(docs, num, y, seed=0)
    np.testing.assert_allclose(r.scores["all"], ref, atol=1e-6)
    assert r.auc["all"] == pytest.approx(roc_auc_score(y, ref))
    boot = stats.auc_ci(y, ref, n_boot=100, seed=0)
    assert r.inference["all"]["bootstrap_ci"] == pytest.approx(boot, abs=0.02)
    lo, hi = r.auc_ci["all"]  # the reported interval includes the refits: never narrower than the fixed-score one
    assert lo <= r.inference["all"]["bootstrap_ci"][0] and hi >= r.inference["all"]["bootstrap_ci"][1]
    assert 0 < r.auc_p_value["all"] < 0.05
    d = r.to_dict()
    json.dumps(d)
    assert set(d["auc"]) == {"metadata", "text", "all"}
    assert d["n_members"] == 30 and d["n_nonmembers"] == 30
    assert len(d["scores"]) == 60
    assert {"feature", "group", "coef", "sentence"} <= set(d["top_features"][0])
    fpr, tpr = r.roc["all"]
    assert fpr[0] == 0 and tpr[-1] == 1


def test_median_imputer_equals_scikit_learns():
    """The blind model's imputer computes SimpleImputer's medians to the bit (even counts,
    missing entries, a column without values), and still refuses infinities (the scaler
    after it does)."""
    from sklearn.impute import SimpleImputer

    from core.blind.diagnostics import MedianImputer, numeric_pipeline

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 40, 41):
        X = np.round(rng.standard_normal((n, 5)), 2)
        X[rng.random((n, 5)) < 0.3] = np.nan
        X[:, 4] = np.nan
        test = np.where(rng.random((6, 5)) < 0.5, np.nan, rng.standard_normal((6, 5)))
        ref = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
        ours = MedianImputer().fit(X)
        np.testing.assert_array_equal(ours.statistics_, ref.statistics_)
        np.testing.assert_array_equal(ours.transform(test), ref.transform(test))
        np.testing.assert_array_equal(ours.transform(X), ref.transform(X))
    with pytest.raises(ValueError, match="infinity"):
        numeric_pipeline().fit(np.array([[1.0, np.inf], [2.0, 3.0], [3.0, 4.0]]), [0, 1, 0])


def test_sentences_use_group_medians_with_units():
    rng = np.random.default_rng(3)
    y = np.arange(80) % 2
    t = pd.DataFrame(
        {
            "effective_bandwidth_hz": np.where(y == 1, 7800.0, 3900.0) + rng.normal(0, 50, 80),
            "dc_offset": rng.normal(0, 1e-3, 80),
        }
    )
    r = run_blind({"acoustic": t}, y, n_boot=50)
    top = r.top_features[0]
    assert top["feature"] == "effective_bandwidth_hz" and top["coef"] > 0
    m0 = np.median(t["effective_bandwidth_hz"][y == 0]) / 1000
    m1 = np.median(t["effective_bandwidth_hz"][y == 1]) / 1000
    assert top["sentence"] == (
        f"non-members have lower effective bandwidth (median {m0:.1f} kHz vs {m1:.1f} kHz)"
    )


def test_cross_dataset_matrix():
    rng = np.random.default_rng(4)

    def ds(shift, n=60):
        return pd.DataFrame(rng.standard_normal((n, 3)) + shift, columns=list("abc"))

    tables = {"A": ds(0.0), "A2": ds(0.0), "B": ds(3.0)}
    m = cross_dataset_auc(tables)
    assert list(m.index) == ["A", "A2", "B"] and np.isnan(m.loc["A", "A"])
    assert m.loc["A", "B"] > 0.95 and m.loc["A2", "B"] > 0.95
    assert abs(m.loc["A", "A2"] - 0.5) < 0.2
    assert m.loc["A", "B"] == m.loc["B", "A"]
    labels = {k: np.arange(60) % 2 for k in tables}
    m2 = cross_dataset_auc(tables, labels, status="both")
    assert abs(m2.loc["A", "A"] - 0.5) < 0.25  # no member/non-member shift inside A
    ya = labels["A"]
    ref = run_blind({"x": tables["A"]}, ya, n_boot=10).auc["x"]
    assert m2.loc["A", "A"] == pytest.approx(ref)
    assert m2.loc["A", "B"] > 0.95 and m2.loc["B", "A"] > 0.95


def test_blind_mia_correlation_against_scipy():
    rng = np.random.default_rng(5)
    b = rng.random(50)
    m = 0.8 * b + 0.2 * rng.random(50)
    c = blind_mia_correlation(b, m)
    np.testing.assert_allclose(c["pearson"], np.corrcoef(b, m)[0, 1], rtol=1e-12)
    rb, rm = sps.rankdata(b), sps.rankdata(m)
    np.testing.assert_allclose(c["spearman"], np.corrcoef(rb, rm)[0, 1], rtol=1e-12)
    assert c["pearson_p"] == pytest.approx(sps.pearsonr(b, m).pvalue)
    assert c["n"] == 50 and c["pearson"] > 0.9
    with pytest.raises(ValueError, match="differ in length"):
        blind_mia_correlation(b, m[:-1])


def test_bad_tables_raise():
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="rows"):
        run_blind({"x": pd.DataFrame({"a": np.zeros(19)})}, y)
    with pytest.raises(ValueError, match="no feature tables"):
        run_blind({}, y)


def test_pair_inference_gives_the_cross_dataset_cell_a_p_value_and_interval() -> None:
    """A cross-dataset cell is a cross-validated AUC like the others: its AUC is the AUC of
    its own out-of-fold scores (checked with scikit-learn), a shift gets the smallest
    p-value the permutations allow, and two draws of one distribution are not told apart."""
    from sklearn.metrics import roc_auc_score

    from core.blind import pair_inference
    from core.stats import PermutationConfig

    rng = np.random.default_rng(5)
    same_a = pd.DataFrame(rng.normal(size=(60, 4)), columns=list("abcd"))
    same_b = pd.DataFrame(rng.normal(size=(60, 4)), columns=list("abcd"))
    shifted = same_b + 1.5
    perms = PermutationConfig(n_perm=100)
    null = pair_inference({"acoustic": same_a}, {"acoustic": same_b}, n_splits=5, permutations=perms, n_boot=200)
    hit = pair_inference({"acoustic": same_a}, {"acoustic": shifted}, n_splits=5, permutations=perms, n_boot=200)
    y = np.r_[np.ones(60), np.zeros(60)]
    for cv in (null, hit):
        assert cv.auc == pytest.approx(roc_auc_score(y, cv.scores))
        assert cv.ci[0] <= cv.auc <= cv.ci[1]
    assert hit.auc > 0.9 and hit.p_value == pytest.approx(1 / 101)
    assert null.p_value > 0.05 and null.ci[0] <= 0.5 <= null.ci[1]
    with pytest.raises(ValueError, match="different feature groups"):
        pair_inference({"acoustic": same_a}, {"metadata": same_b})
