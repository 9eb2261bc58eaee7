"""dataset_inference: result contents, warnings, null check wiring, verdict and JSON export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from core.di import DIConfig, clopper_pearson, dataset_inference, get_scorer, null_check, ScorerConfig

D = 4


def _data(seed: int, n_p: int, n_u: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, size=(n_p, D)), rng.normal(0.0, 1.0, size=(n_u, D))


def test_result_uses_the_scorers_held_out_scores() -> None:
    P, U = _data(0, 80, 100, 0.5)
    res = dataset_inference(P, U, scorer="control_split", seed=3, null_resamples=50)
    split = get_scorer("control_split").fn(P, U, directions=None, seed=3, config=ScorerConfig())
    np.testing.assert_array_equal(res.p_scores, split.p_scores)
    np.testing.assert_array_equal(res.u_index, split.u_index)
    ref = stats.ttest_ind(res.p_scores, res.u_scores, equal_var=False, alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.t_statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.rejected == (res.p_value < 0.01)
    assert res.n_suspects == 80 and res.n_nonmembers == 100
    assert res.n_tested_suspects == 40 and res.n_tested_nonmembers == 50
    assert res.rejected
    assert "evidence that it was used in training" in res.verdict()
    assert f"p = {res.p_value:.2g}" in res.verdict()


def test_null_check_runs_by_default_and_is_reported() -> None:
    P, U = _data(1, 50, 120, 0.0)
    res = dataset_inference(P, U, scorer="normalized_sum", directions=np.ones(D), null_resamples=100, seed=2)
    nc = res.null_check
    assert nc is not None and nc.n_resamples == 100
    assert nc.n_suspects == 50 and nc.n_nonmembers == 70
    assert "Null check:" in res.verdict() and f"{nc.rate:.1%}" in res.verdict()
    same = null_check(U, directions=np.ones(D), scorer="normalized_sum", n_suspects=50, n_resamples=100, alpha=0.01, seed=2)
    np.testing.assert_array_equal(same.p_values, nc.p_values)


def test_small_nonmember_set_skips_null_check_with_warning() -> None:
    P, U = _data(2, 30, 24, 0.0)
    res = dataset_inference(P, U, scorer="control_split")
    assert res.null_check is None
    text = " ".join(res.warnings)
    assert "null check not run" in text
    assert "fewer non-members (24) than suspects (30)" in text
    assert "only 12 clips tested" in text
    assert "No null check was run" in res.verdict()


def test_disabled_null_check_is_a_warning() -> None:
    P, U = _data(3, 40, 80, 0.0)
    res = dataset_inference(P, U, scorer="control_split", null_check=False)
    assert res.null_check is None and any("disabled" in w for w in res.warnings)
    assert not res.rejected
    assert "does not show that it was not" in res.verdict()


def test_null_check_limited_by_nonmembers_warns() -> None:
    P, U = _data(4, 60, 80, 0.0)
    res = dataset_inference(P, U, scorer="normalized_sum", directions=np.ones(D), null_resamples=20)
    assert res.null_check is not None and res.null_check.n_suspects == 40
    assert any("40 pseudo-suspects, fewer than the 60" in w for w in res.warnings)


@pytest.mark.parametrize("scorer", ["auto", "control_split", "normalized_sum", "cross_fit"])
def test_to_dict_is_json_safe_and_complete(scorer: str) -> None:
    P, U = _data(5, 30, 50, 0.2)
    res = dataset_inference(P, U, scorer=scorer, directions=np.ones(D), null_resamples=10)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    for key in ("p_value", "alpha", "rejected", "scorer", "p_scores", "u_scores", "n_suspects", "n_nonmembers", "warnings", "null_check", "config", "verdict"):
        assert key in d
    assert d["config"]["scorer"] == scorer
    assert d["scorer"] != "auto"
    assert len(d["p_scores"]) == res.n_tested_suspects


def test_inputs_are_validated() -> None:
    P, U = _data(6, 20, 20, 0.0)
    with pytest.raises(ValueError, match="indicators"):
        dataset_inference(P, U[:, :3])
    with pytest.raises(ValueError, match="directions"):
        dataset_inference(P, U, directions=[1, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        bad = P.copy()
        bad[3, 1] = np.nan
        dataset_inference(bad, U)
    with pytest.raises(KeyError, match="valid"):
        dataset_inference(P, U, scorer="bogus")
    with pytest.raises(ValueError, match="alpha"):
        DIConfig(alpha=1.5)


def test_one_dimensional_features_are_one_indicator() -> None:
    rng = np.random.default_rng(7)
    res = dataset_inference(rng.normal(1, 1, 60), rng.normal(0, 1, 60), scorer="normalized_sum", directions=[1], null_check=False)
    assert res.rejected


def test_clopper_pearson_matches_scipy() -> None:
    for k, n in [(0, 200), (2, 200), (17, 400), (400, 400)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        lo, hi = clopper_pearson(k, n)
        assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)


def test_config_is_hashable_and_serializable() -> None:
    cfg = DIConfig(scorer="cross_fit", scorer_config=ScorerConfig(C=0.3))
    assert hash(cfg) == hash(DIConfig(scorer="cross_fit", scorer_config=ScorerConfig(C=0.3)))
    assert json.loads(json.dumps(cfg.to_dict()))["scorer_config"]["C"] == 0.3
