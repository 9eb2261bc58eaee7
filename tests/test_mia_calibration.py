"""Reference calibration: each calibration against a computation written from its paper's
formula, calibrated keys in the registry, and what calibration does to a per-clip
difficulty and to a distribution shift that the target and the reference share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

import core.mia  # noqa: F401  (fills the registries)
from core.mia.aggregate import run_mia
from core.mia.calibration import (
    LIRA_PRIOR,
    calibrated_table,
    calibration_gain,
    calibration_of_table,
    calibrations,
    get_calibration,
    split_columns,
    suspects_gain,
)
from core.mia.registry import aligned, calibration_of, direction, family_of

KEYS = ("min_k@0.2", "ppl", "loss@t500")


def _tables(n: int = 40, m: int = 3, seed: int = 0) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    rng = np.random.default_rng(seed)
    index = pd.Index([f"c{i:03d}" for i in range(n)], name="clip_hash")
    target = pd.DataFrame({k: rng.normal(size=n) for k in KEYS}, index=index)
    refs = [target + rng.normal(scale=0.5, size=target.shape) for _ in range(m)]
    return target, refs


def test_difference_is_target_minus_reference_mean() -> None:
    target, refs = _tables()
    cal = calibrated_table(target, refs)
    for k in KEYS:
        by_hand = target[k].to_numpy() - np.mean([r[k].to_numpy() for r in refs], axis=0)
        np.testing.assert_allclose(cal[f"diff:{k}"].to_numpy(), by_hand)


def test_lira_standardises_each_clip_against_the_references() -> None:
    target, refs = _tables(m=3)
    cal = calibrated_table(target, refs)
    for k in KEYS:
        R = np.array([r[k].to_numpy() for r in refs])  # [m, n]
        mu = R.mean(axis=0)
        var = ((R - mu) ** 2).sum(axis=0) / (R.shape[0] - 1)
        pooled = var.mean()
        sigma = np.sqrt((2 * var + LIRA_PRIOR * pooled) / (2 + LIRA_PRIOR))
        np.testing.assert_allclose(cal[f"lira:{k}"].to_numpy(), (target[k].to_numpy() - mu) / sigma)


def test_resid_is_the_least_squares_residual_on_the_references() -> None:
    target, refs = _tables(m=1)
    cal = calibrated_table(target, refs)
    for k in KEYS:
        slope, intercept = np.polyfit(refs[0][k].to_numpy(), target[k].to_numpy(), 1)
        np.testing.assert_allclose(cal[f"resid:{k}"].to_numpy(), target[k].to_numpy() - (intercept + slope * refs[0][k].to_numpy()))
    target, refs = _tables(m=2)
    cal = calibrated_table(target, refs)
    k = KEYS[0]
    X = np.column_stack([np.ones(len(target)), refs[0][k], refs[1][k]])
    coef = np.linalg.solve(X.T @ X, X.T @ target[k].to_numpy())
    np.testing.assert_allclose(cal[f"resid:{k}"].to_numpy(), target[k].to_numpy() - X @ coef)


def test_rmia_is_the_pairwise_likelihood_ratio_test_of_the_paper() -> None:
    """Score(x) = Pr_z[LR(x) > LR(z)] over the other clips z, LR(x) = p(x|target) / mean_j p(x|ref_j),
    written as the paper's double loop on aligned (log-likelihood-like) values."""
    target, refs = _tables(n=25, m=2)
    cal = calibrated_table(target, refs)
    for k in KEYS:
        s = direction(k)
        a_t = s * target[k].to_numpy()
        a_r = s * np.array([r[k].to_numpy() for r in refs])
        lr = [a_t[i] - (logsumexp(a_r[:, i]) - np.log(a_r.shape[0])) for i in range(len(a_t))]
        score = [np.mean([1.0 if lr[i] > lr[z] else 0.5 if lr[i] == lr[z] else 0.0 for z in range(len(lr)) if z != i])
                 for i in range(len(lr))]
        np.testing.assert_allclose(aligned(f"rmia:{k}", cal[f"rmia:{k}"].to_numpy()), score)


def test_calibrations_offered_by_number_of_references_and_nan_kept() -> None:
    target, refs = _tables(m=1)
    assert [c.name for c in calibrations(1)] == ["diff", "resid", "rmia"]
    assert [c.name for c in calibrations(2)] == ["diff", "resid", "lira", "rmia"]
    target.iloc[3, 0] = np.nan
    refs[0].iloc[5, 0] = np.inf
    cal = calibrated_table(target, refs)
    assert calibration_of_table(cal) == ["diff", "resid", "rmia"]
    assert np.isnan(cal[f"diff:{KEYS[0]}"].iloc[[3, 5]]).all() and np.isnan(cal[f"resid:{KEYS[0]}"].iloc[[3, 5]]).all()
    assert np.isnan(cal[f"rmia:{KEYS[0]}"].iloc[[3, 5]]).all()
    assert np.isfinite(cal[f"rmia:{KEYS[0]}"].drop(index=cal.index[[3, 5]])).all()
    with pytest.raises(ValueError, match="at least 2 references"):
        calibrated_table(target, refs, names=["lira"])
    with pytest.raises(ValueError, match="at least one reference"):
        calibrated_table(target, [])


def test_calibrated_keys_keep_family_and_direction() -> None:
    for cal in ("diff", "resid", "lira", "rmia"):
        for k in KEYS + ("max_renyi[inf]@0.2",):
            key = f"{cal}:{k}"
            assert family_of(key) == family_of(k)
            assert direction(key) == direction(k)
            assert calibration_of(key) == cal
    assert calibration_of("ppl") is None
    with pytest.raises(KeyError, match="unknown calibration 'nope'; valid: diff, lira, resid, rmia"):
        direction("nope:ppl")
    assert get_calibration("diff").to_dict()["min_references"] == 1
    target, refs = _tables(m=2)
    both = pd.concat([target, calibrated_table(target, refs)], axis=1)
    uncal, cal = split_columns(both)
    assert list(uncal.columns) == list(KEYS) and all(":" in c for c in cal.columns)


def _difficulty_world(n: int, *, shift: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Log-likelihood-like ``min_k`` per clip: a per-clip difficulty every model of the family
    sees (spread 3), a member bonus of 0.6 the target alone has, and, for the non-members,
    a shift of their difficulty (a band-limited recording: harder for every model)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], n)
    difficulty = rng.normal(scale=3.0, size=2 * n) - shift * (y == 0)
    index = pd.Index([f"c{i}" for i in range(2 * n)], name="clip_hash")
    target = pd.DataFrame({"min_k@0.2": difficulty + 0.6 * y + rng.normal(scale=0.2, size=2 * n)}, index=index)
    ref = pd.DataFrame({"min_k@0.2": difficulty + rng.normal(scale=0.2, size=2 * n)}, index=index)
    return target, ref, y


def test_calibration_recovers_a_signal_hidden_by_per_clip_difficulty() -> None:
    target, ref, y = _difficulty_world(100, shift=0.0, seed=1)
    cal = calibrated_table(target, [ref])
    raw_auc = roc_auc_score(y, target["min_k@0.2"])
    cal_auc = roc_auc_score(y, cal["diff:min_k@0.2"])
    assert raw_auc < 0.65 and cal_auc > 0.85  # by construction about 0.56 and 0.93
    kw = dict(n_splits=5, n_boot=50, seed=0)
    uncal_res, cal_res = run_mia(target, y, **kw), run_mia(cal, y, **kw)
    assert cal_res.indicator_auc["diff:min_k@0.2"] == pytest.approx(cal_auc)
    gain = calibration_gain(cal_res.to_dict(), uncal_res.to_dict())
    assert gain["auc"] == pytest.approx(cal_res.auc - uncal_res.auc) and gain["auc"] > 0.2


def test_calibration_removes_a_shift_the_reference_shares() -> None:
    """Members vs shifted non-members: the uncalibrated AUC is inflated by the shift, the
    calibrated one is not (it moves by far less than half as much)."""
    aucs = {}
    for shift in (0.0, 3.0):
        target, ref, y = _difficulty_world(150, shift=shift, seed=2)
        aucs[shift] = (roc_auc_score(y, target["min_k@0.2"]), roc_auc_score(y, calibrated_table(target, [ref])["diff:min_k@0.2"]))
    raw_gap = aucs[3.0][0] - aucs[0.0][0]
    cal_gap = abs(aucs[3.0][1] - aucs[0.0][1])
    assert raw_gap > 0.2
    assert cal_gap <= raw_gap / 2


def test_suspects_gain() -> None:
    assert suspects_gain(20, 80) == 4.0
    assert suspects_gain(20, None) == float("inf")
    assert suspects_gain(None, 80) is None


def test_suspects_gain_in_words() -> None:
    from core.mia.calibration import suspects_gain_text

    assert [suspects_gain_text(suspects_gain(c, u)) for c, u in ((20, 80), (5, 5), (10, 5), (20, None), (None, 80))] == [
        "4x fewer", "as many", "2x more", "only calibrated reaches alpha", "n/a (the calibrated test does not reach alpha)"]


def test_default_calibrations_follow_the_number_of_references() -> None:
    from core.mia.calibration import resolve_calibrations

    assert resolve_calibrations((), 1) == ("resid",)
    assert resolve_calibrations((), 3) == ("resid", "lira")
    assert resolve_calibrations(("rmia", "diff"), 1) == ("rmia", "diff")
    with pytest.raises(ValueError, match="'lira' needs at least 2"):
        resolve_calibrations(("lira",), 1)
    with pytest.raises(KeyError, match="valid: diff, lira, resid, rmia"):
        resolve_calibrations(("zscore",), 2)
