"""DeLong's paired difference of two AUCs on the same clips (:func:`core.stats.paired_auc_difference`):
checked against a loop over every member/non-member pair written from the 1988 paper's
formulas and scikit-learn's AUCs, and its interval and level measured on simulated scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from core.stats import paired_auc_difference


def delong_by_pairs(y, a, b):
    """The paper's formulas, one pair at a time: psi(x, z) = 1, 1/2, 0; V10 per member,
    V01 per non-member; S = covariances over members and non-members (ddof 1)."""
    y, a, b = np.asarray(y), np.asarray(a, float), np.asarray(b, float)
    comps = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        psi = [[1.0 if x > z else 0.5 if x == z else 0.0 for z in neg] for x in pos]
        psi = np.array(psi)
        comps.append((psi.mean(axis=1), psi.mean(axis=0), psi.mean()))
    (a10, a01, auc_a), (b10, b01, auc_b) = comps
    s10, s01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
    c = np.array([1.0, -1.0])
    var = c @ (s10 / len(a10) + s01 / len(a01)) @ c
    return auc_a - auc_b, float(np.sqrt(var))


def correlated_scores(rng, n1, n0, d_a, d_b, rho):
    """Two unit-variance normal scores with correlation ``rho`` in each class, members shifted
    by ``d_a`` and ``d_b``: the AUCs are Phi(d / sqrt 2)."""
    def draw(n, da, db):
        z = rng.standard_normal((n, 2))
        return np.column_stack([z[:, 0], rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]]) + [da, db]

    s = np.vstack([draw(n1, d_a, d_b), draw(n0, 0.0, 0.0)])
    return np.r_[np.ones(n1, int), np.zeros(n0, int)], s[:, 0], s[:, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_difference_and_its_se_equal_the_pairwise_formulas(seed):
    rng = np.random.default_rng(seed)
    y, a, b = correlated_scores(rng, 40, 25, 0.8, 0.4, 0.6)
    a = np.round(a, 1)  # ties count one half
    res = paired_auc_difference(y, a, b)
    diff, se = delong_by_pairs(y, a, b)
    assert res.auc_a == pytest.approx(roc_auc_score(y, a)) and res.auc_b == pytest.approx(roc_auc_score(y, b))
    assert res.diff == pytest.approx(diff) and res.se == pytest.approx(se, rel=1e-10)
    z = res.diff / res.se
    assert res.p_value == pytest.approx(2 * norm.sf(abs(z)))
    assert res.ci == pytest.approx((res.diff - 1.959964 * res.se, res.diff + 1.959964 * res.se), abs=1e-6)


def test_the_same_score_twice_differs_by_nothing_and_a_monotone_map_changes_nothing():
    rng = np.random.default_rng(3)
    y, a, b = correlated_scores(rng, 30, 30, 1.0, 0.5, 0.3)
    same = paired_auc_difference(y, a, np.exp(a))
    assert same.diff == 0 and same.se == 0 and same.p_value == 1.0 and same.ci == (0.0, 0.0)
    flipped = paired_auc_difference(y, b, a)
    ref = paired_auc_difference(y, a, b)
    assert flipped.diff == pytest.approx(-ref.diff) and flipped.se == pytest.approx(ref.se)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="differ in length"):
        paired_auc_difference([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="two members and two non-members"):
        paired_auc_difference([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="NaN"):
        paired_auc_difference([1, 0, 1, 0], [0.1, np.nan, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])


def test_the_interval_holds_its_coverage_and_the_test_its_level():
    """Coverage of the true difference with different AUCs, and the rejection rate at 5% with
    equal ones, over 2,000 simulated audits of 100 members and 50 non-members (the shadow
    comparisons' split); binomial 99% ranges around 95% and 5% are about +-1.3 points."""
    rng = np.random.default_rng(11)
    truth = norm.cdf(0.9 / np.sqrt(2)) - norm.cdf(0.5 / np.sqrt(2))
    covered = rejected = 0
    n = 2000
    for _ in range(n):
        y, a, b = correlated_scores(rng, 100, 50, 0.9, 0.5, 0.7)
        lo, hi = paired_auc_difference(y, a, b).ci
        covered += lo <= truth <= hi
        y, a, b = correlated_scores(rng, 100, 50, 0.6, 0.6, 0.7)
        rejected += paired_auc_difference(y, a, b).p_value < 0.05
    assert 0.935 <= covered / n <= 0.963, covered / n
    assert 0.037 <= rejected / n <= 0.065, rejected / n
