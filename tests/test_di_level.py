"""DI keeps its false-positive rate under H0 and has power under a shifted alternative.

Null draws: suspects and non-members are drawn independently from the same distribution
(correlated, skewed indicators). Over 400 draws at alpha = 0.05 the number of rejections
must lie in the central 99.9% binomial interval of Binomial(400, 0.05).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.di import ScoredSplit, ScorerConfig, dataset_inference, null_check, register_scorer, scorer_names
from core.di import registry as di_registry

D = 6
DIRS = np.ones(D)
CFG = ScorerConfig(keys=("loss_mean",) + tuple(f"x{i}" for i in range(1, D)))  # mean_loss reads the first column
N_NULL = 400
ALPHA = 0.05
LO, HI = stats.binom.ppf(0.0005, N_NULL, ALPHA), stats.binom.isf(0.0005, N_NULL, ALPHA)


def features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Indicators ``[n, D]``: two correlated normals, a normal, two skewed; ``shift`` on the first 3."""
    z = rng.normal(size=(n, D))
    z[:, 1] = 0.6 * z[:, 0] + 0.8 * z[:, 1]
    z[:, 4] = rng.gamma(2.0, 1.0, size=n)
    z[:, 5] = rng.exponential(1.0, size=n)
    z[:, :3] += shift
    return z


def _null_pvalues(scorer: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array(
        [
            dataset_inference(
                features(rng, 60), features(rng, 80), directions=DIRS, scorer=scorer, alpha=ALPHA, seed=i, null_check=False, config=CFG
            ).p_value
            for i in range(N_NULL)
        ]
    )


@pytest.mark.parametrize("scorer", scorer_names())
def test_null_rejection_rate_is_alpha(scorer: str) -> None:
    p = _null_pvalues(scorer, seed=11)
    k = int(np.sum(p < ALPHA))
    assert LO <= k <= HI, f"{scorer}: {k}/{N_NULL} null rejections, expected within [{LO}, {HI}]"
    # p-values under H0 are roughly uniform, not only at alpha
    assert 0.35 < np.median(p) < 0.65


@pytest.mark.parametrize("scorer", scorer_names())
def test_power_on_a_shifted_alternative(scorer: str) -> None:
    rng = np.random.default_rng(12)
    p = np.array(
        [
            dataset_inference(
                features(rng, 150, shift=0.5), features(rng, 200), directions=DIRS, scorer=scorer, seed=i, null_check=False, config=CFG
            ).p_value
            for i in range(40)
        ]
    )
    assert np.mean(p < 0.01) >= 0.85


@pytest.mark.parametrize("scorer", scorer_names())
def test_null_check_rate_is_alpha_for_every_scorer(scorer: str) -> None:
    U = features(np.random.default_rng(13), 160)
    nc = null_check(U, directions=DIRS, scorer=scorer, n_suspects=60, n_resamples=N_NULL, alpha=ALPHA, seed=1, config=CFG)
    assert nc.n_nonmembers == 100 and nc.p_values.shape == (N_NULL,)
    assert LO <= nc.rejections <= HI
    assert not nc.over_rejects


def _naive_pooled_cross_fit_pvalue(P: np.ndarray, U: np.ndarray, rng: np.random.Generator) -> float:
    """Two-fold cross-fitting with the folds' scores pooled into one Welch test."""
    ph = np.array_split(rng.permutation(len(P)), 2)
    uh = np.array_split(rng.permutation(len(U)), 2)
    zp, zu = [], []
    for g in (0, 1):
        X = np.vstack([P[ph[1 - g]], U[uh[1 - g]]])
        y = np.r_[np.ones(len(ph[1 - g])), np.zeros(len(uh[1 - g]))]
        m = make_pipeline(StandardScaler(), LogisticRegression(solver="newton-cholesky")).fit(X, y)
        a, b = m.decision_function(P[ph[g]]), m.decision_function(U[uh[g]])
        zp.append((a - b.mean()) / b.std(ddof=1))
        zu.append((b - b.mean()) / b.std(ddof=1))
    return float(stats.ttest_ind(np.concatenate(zp), np.concatenate(zu), equal_var=False, alternative="greater").pvalue)


def test_naive_pooled_cross_fit_over_rejects_and_ours_does_not() -> None:
    # Why cross_fit combines folds with the dependence-robust statistic: with many
    # indicators, both fold models fit the same chance difference and the pooled test
    # rejects about twice as often as alpha.
    rng = np.random.default_rng(21)
    naive, ours = [], []
    for i in range(N_NULL):
        P, U = rng.normal(size=(60, 10)), rng.normal(size=(60, 10))
        naive.append(_naive_pooled_cross_fit_pvalue(P, U, rng))
        ours.append(dataset_inference(P, U, scorer="cross_fit", seed=i, null_check=False).p_value)
    assert np.sum(np.array(naive) < ALPHA) > HI
    assert LO <= np.sum(np.array(ours) < ALPHA) <= HI


def test_null_check_catches_a_leaky_scorer() -> None:
    # A scorer fitted on the very clips it tests overfits noise; the null check must flag it.
    name = "_leaky_for_test"

    def leaky(P, U, *, directions, seed, config):  # type: ignore[no-untyped-def]
        X = np.vstack([P, U])
        y = np.r_[np.ones(len(P)), np.zeros(len(U))]
        m = make_pipeline(StandardScaler(), LogisticRegression(C=100.0)).fit(X, y)
        ip, iu = np.arange(len(P)), np.arange(len(U))
        return ScoredSplit(
            "leaky", m.decision_function(P), m.decision_function(U), ip, iu,
            np.zeros(len(P), dtype=np.int64), np.zeros(len(U), dtype=np.int64), (ip,), (iu,),
        )

    register_scorer(name)(leaky)
    try:
        U = np.random.default_rng(22).normal(size=(120, 12))
        nc = null_check(U, scorer=name, n_suspects=40, n_resamples=50, alpha=0.01, seed=0)
        assert nc.over_rejects and nc.rate > 0.5
        res = dataset_inference(U[:40], U[40:], scorer=name, null_resamples=50)
        assert any("null check rejected" in w for w in res.warnings)
        assert "not reliable" in res.verdict()
    finally:
        if name in di_registry._REGISTRY:
            di_registry._REGISTRY.remove(name)
