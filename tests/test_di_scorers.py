"""DI scorers: registry behaviour, fit/test separation, and scores against independent fits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.di import ScorerConfig, get_scorer, register_scorer, resolve_auto, scorer_names

D = 5
DIRS = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
KEYS = ("zlib", "loss_mean", "loss@t10", "cond_gap@t10", "step_error@t10")  # mean_loss reads "loss_mean"
CFG = ScorerConfig(keys=KEYS)


def _data(seed: int = 0, n_p: int = 41, n_u: int = 57) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.2, 1.0, size=(n_p, D)), rng.normal(0.0, 1.0, size=(n_u, D))


def test_registry_has_the_documented_scorers() -> None:
    assert {"auto", "control_split", "normalized_sum", "cross_fit"} <= set(scorer_names())


def test_unknown_scorer_lists_valid_names() -> None:
    with pytest.raises(KeyError) as err:
        get_scorer("nope")
    for name in ("control_split", "normalized_sum", "cross_fit"):
        assert name in str(err.value)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_scorer("control_split")(lambda *a, **k: None)


@pytest.mark.parametrize("name", scorer_names())
@pytest.mark.parametrize("directions", [None, DIRS])
def test_every_scorer_tests_only_held_out_clips(name: str, directions: np.ndarray | None) -> None:
    P, U = _data()
    split = get_scorer(name).fn(P, U, directions=directions, seed=3, config=CFG)
    assert split.p_scores.shape == split.p_index.shape == split.p_group.shape
    assert split.u_scores.shape == split.u_index.shape == split.u_group.shape
    assert np.all(np.isfinite(split.p_scores)) and np.all(np.isfinite(split.u_scores))
    assert len(np.unique(split.p_index)) == split.p_index.size
    assert len(np.unique(split.u_index)) == split.u_index.size
    assert len(split.fit_p_index) == len(split.fit_u_index) == split.n_groups
    for g in range(split.n_groups):
        assert not set(split.p_index[split.p_group == g]) & set(split.fit_p_index[g])
        assert not set(split.u_index[split.u_group == g]) & set(split.fit_u_index[g])
        assert np.sum(split.p_group == g) >= 2 and np.sum(split.u_group == g) >= 2
    # every clip is either tested or used for fitting; nothing is dropped
    assert set(split.p_index) | set(np.concatenate(split.fit_p_index)) == set(range(len(P)))
    assert set(split.u_index) | set(np.concatenate(split.fit_u_index)) == set(range(len(U)))
    again = get_scorer(name).fn(P, U, directions=directions, seed=3, config=CFG)
    np.testing.assert_array_equal(again.p_scores, split.p_scores)
    if np.concatenate(split.fit_u_index).size:  # a scorer that spends clips draws them by seed
        other = get_scorer(name).fn(P, U, directions=directions, seed=4, config=CFG)
        assert not np.array_equal(other.u_index, split.u_index)
    else:  # one that fits nothing tests every clip
        assert split.p_index.size == len(P) and split.u_index.size == len(U)


@pytest.mark.parametrize("name", ["control_split", "normalized_sum", "mean_loss"])
def test_changing_a_tested_clip_changes_only_its_own_score(name: str) -> None:
    P, U = _data(1)
    split = get_scorer(name).fn(P, U, directions=DIRS, seed=0, config=CFG)
    P2, U2 = P.copy(), U.copy()
    P2[split.p_index[0]] += 50.0
    U2[split.u_index[0]] -= 50.0
    moved = get_scorer(name).fn(P2, U2, directions=DIRS, seed=0, config=CFG)
    np.testing.assert_allclose(moved.p_scores[1:], split.p_scores[1:], rtol=1e-12)
    np.testing.assert_allclose(moved.u_scores[1:], split.u_scores[1:], rtol=1e-12)
    assert moved.p_scores[0] != split.p_scores[0]


def _logreg(Xp: np.ndarray, Xu: np.ndarray, C: float) -> object:
    X = np.vstack([Xp, Xu])
    y = np.r_[np.ones(len(Xp)), np.zeros(len(Xu))]
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, tol=1e-10)).fit(X, y)


def test_control_split_equals_an_independent_logistic_regression() -> None:
    P, U = _data(2)
    split = get_scorer("control_split").fn(P, U, directions=None, seed=5, config=ScorerConfig(C=0.5))
    ref = _logreg(P[split.fit_p_index[0]], U[split.fit_u_index[0]], 0.5)
    np.testing.assert_allclose(split.p_scores, ref.decision_function(P[split.p_index]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.u_scores, ref.decision_function(U[split.u_index]), rtol=1e-5, atol=1e-6)
    assert abs(len(split.fit_p_index[0]) - len(split.p_index)) <= 1


def test_cross_fit_equals_independent_fits_standardized_per_fold() -> None:
    P, U = _data(3)
    split = get_scorer("cross_fit").fn(P, U, directions=None, seed=6, config=ScorerConfig())
    assert sorted(split.p_index) == list(range(len(P)))
    assert sorted(split.u_index) == list(range(len(U)))
    for g in (0, 1):
        ref = _logreg(P[split.fit_p_index[g]], U[split.fit_u_index[g]], 1.0)
        tp, tu = split.p_index[split.p_group == g], split.u_index[split.u_group == g]
        raw = np.concatenate([ref.decision_function(P[tp]), ref.decision_function(U[tu])])
        z = (raw - raw.mean()) / raw.std(ddof=1)
        got = np.concatenate([split.p_scores[split.p_group == g], split.u_scores[split.u_group == g]])
        np.testing.assert_allclose(got, z, rtol=1e-4, atol=1e-5)
        # the model for fold g was fitted on exactly the other fold
        assert set(split.fit_p_index[g]) == set(split.p_index[split.p_group == 1 - g])


def test_normalized_sum_formula_and_control_half() -> None:
    P, U = _data(4)
    split = get_scorer("normalized_sum").fn(P, U, directions=DIRS, seed=7, config=ScorerConfig())
    uc = split.fit_u_index[0]
    assert split.fit_p_index[0].size == 0
    np.testing.assert_array_equal(split.p_index, np.arange(len(P)))
    expected = np.zeros(len(P))
    for j in range(D):
        mu = np.mean(U[uc, j])
        sd = np.sqrt(np.sum((U[uc, j] - mu) ** 2) / (len(uc) - 1))
        expected += DIRS[j] * (P[:, j] - mu) / sd
    np.testing.assert_allclose(split.p_scores, expected, rtol=1e-12)


def test_normalized_sum_warns_without_directions_and_on_constant_indicator() -> None:
    P, U = _data(5)
    U[:, 2] = 1.0
    split = get_scorer("normalized_sum").fn(P, U, directions=None, seed=0, config=ScorerConfig())
    text = " ".join(split.notes)
    assert "no directions" in text and "[2]" in text
    assert np.all(np.isfinite(split.p_scores))


def test_auto_resolution() -> None:
    cfg = ScorerConfig(auto_max_features=8)
    assert resolve_auto(5, DIRS, cfg) == "normalized_sum"
    assert resolve_auto(5, None, cfg) == "control_split"
    assert resolve_auto(9, np.ones(9), cfg) == "control_split"
    P, U = _data(6)
    assert get_scorer("auto").fn(P, U, directions=DIRS, seed=0, config=cfg).scorer == "normalized_sum"
    assert get_scorer("auto").fn(P, U, directions=None, seed=0, config=cfg).scorer == "control_split"


def test_mean_loss_is_the_calibrated_loss_column_every_clip_tested() -> None:
    P, U = _data(8)
    keys = ("loss_mean", "resid:loss_mean", "resid:zlib", "zlib", "ppl")
    split = get_scorer("mean_loss").fn(P, U, directions=DIRS, seed=0, config=ScorerConfig(keys=keys))
    # the calibrated column wins over the raw one; lower loss = member, so the score is its negative
    np.testing.assert_array_equal(split.p_scores, -P[:, 1])
    np.testing.assert_array_equal(split.u_scores, -U[:, 1])
    assert split.p_index.tolist() == list(range(len(P))) and split.u_index.tolist() == list(range(len(U)))
    assert split.n_groups == 1 and split.fit_p_index[0].size == split.fit_u_index[0].size == 0
    raw = get_scorer("mean_loss").fn(P, U, directions=None, seed=0, config=ScorerConfig(keys=("zlib", "ppl", "x", "y", "z")))
    np.testing.assert_array_equal(raw.p_scores, -P[:, 1])  # no direction given: a loss is lower for members
    with pytest.raises(ValueError, match="mean-loss indicator"):
        get_scorer("mean_loss").fn(P, U, directions=DIRS, seed=0, config=ScorerConfig(keys=("a", "b", "c", "d", "e")))
    with pytest.raises(ValueError, match="mean-loss indicator.*unnamed"):
        get_scorer("mean_loss").fn(P, U, directions=DIRS, seed=0, config=ScorerConfig())
    with pytest.raises(ValueError, match="2 keys for 5"):
        get_scorer("mean_loss").fn(P, U, directions=DIRS, seed=0, config=ScorerConfig(keys=("loss_mean", "x")))


def test_mean_loss_p_value_is_scipys_welch_test_on_the_column() -> None:
    from scipy import stats

    from core.di import dataset_inference

    P, U = _data(9, n_p=37, n_u=61)
    res = dataset_inference(P, U, directions=DIRS, scorer="mean_loss", null_check=False, config=CFG)
    ref = stats.ttest_ind(-P[:, 1], -U[:, 1], equal_var=False, alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.n_tested_suspects == 37 and res.n_tested_nonmembers == 61


def test_pooled_sum_standardizes_on_every_clip_and_tests_every_clip() -> None:
    from scipy import stats

    from core.di import dataset_inference

    P, U = _data(10, n_p=33, n_u=52)
    split = get_scorer("pooled_sum").fn(P, U, directions=DIRS, seed=5, config=CFG)
    # a loop over the formula: z-scores over the pooled clips, direction-aligned, summed
    pooled = np.vstack([P, U])
    expected = np.zeros(len(pooled))
    for j in range(D):
        mu = sum(pooled[:, j]) / len(pooled)
        sd = np.sqrt(sum((v - mu) ** 2 for v in pooled[:, j]) / (len(pooled) - 1))
        expected += DIRS[j] * (pooled[:, j] - mu) / sd
    np.testing.assert_allclose(split.p_scores, expected[: len(P)], rtol=1e-12)
    np.testing.assert_allclose(split.u_scores, expected[len(P):], rtol=1e-12)
    assert split.p_index.tolist() == list(range(len(P))) and split.u_index.tolist() == list(range(len(U)))
    assert split.fit_p_index[0].size == split.fit_u_index[0].size == 0
    # no seeded split: any seed gives the same scores
    np.testing.assert_array_equal(get_scorer("pooled_sum").fn(P, U, directions=DIRS, seed=99, config=CFG).p_scores, split.p_scores)
    # labels unused: moving a clip from one side to the other leaves every clip's score unchanged
    moved = get_scorer("pooled_sum").fn(P[1:], np.vstack([U, P[:1]]), directions=DIRS, seed=0, config=CFG)
    np.testing.assert_allclose(np.r_[moved.u_scores[-1], moved.p_scores], split.p_scores, rtol=1e-12)
    # the p-value is scipy's Welch test on those scores
    res = dataset_inference(P, U, directions=DIRS, scorer="pooled_sum", null_check=False, config=CFG)
    ref = stats.ttest_ind(expected[: len(P)], expected[len(P):], equal_var=False, alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.n_tested_suspects == 33 and res.n_tested_nonmembers == 52


def test_pooled_sum_warns_without_directions_and_on_constant_indicator() -> None:
    P, U = _data(11)
    P[:, 3], U[:, 3] = 2.0, 2.0
    split = get_scorer("pooled_sum").fn(P, U, directions=None, seed=0, config=CFG)
    text = " ".join(split.notes)
    assert "no directions" in text and "[3]" in text
    assert np.all(np.isfinite(split.p_scores)) and np.all(np.isfinite(split.u_scores))


def test_auto_takes_the_calibrated_loss_for_calibrated_diffusion_runs_only() -> None:
    calibrated = ("loss@t10", "loss_mean", "resid:loss@t10", "resid:loss_mean")
    assert resolve_auto(4, np.full(4, -1.0), ScorerConfig(evidence="diffusion", keys=calibrated)) == "mean_loss"
    assert resolve_auto(2, np.full(2, -1.0), ScorerConfig(evidence="diffusion", keys=calibrated[:2])) == "control_split"
    assert resolve_auto(2, None, ScorerConfig(evidence="diffusion")) == "control_split"
    tokens = ("ppl", "zlib", "resid:ppl", "resid:zlib")
    assert resolve_auto(4, np.ones(4), ScorerConfig(evidence="tokens", keys=tokens)) == "normalized_sum"


def test_scorers_refuse_too_few_clips() -> None:
    P, U = _data(7, n_p=3, n_u=10)
    for name in ("control_split", "cross_fit"):
        with pytest.raises(ValueError, match="at least 4"):
            get_scorer(name).fn(P, U, directions=None, seed=0, config=ScorerConfig())



def test_the_scorer_comparison_script_runs_in_smoke_mode(capsys) -> None:
    import json

    from bench.measure_scorers import main

    assert main(["--smoke"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["synthetic"]
    assert set(out) == {"normalized_sum", "pooled_sum"}
    pooled = out["pooled_sum"]
    # pooled_sum draws no split: its one number is its median
    assert pooled["needed_seed0"] == pooled["needed_median"]
    assert all(0.0 <= r <= 1.0 for s in out.values() for r in s["null_rate"].values())
