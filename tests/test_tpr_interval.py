"""TPR at a low FPR with its uncertainty: an exact (Clopper-Pearson) interval for the TPR and
how many non-members the threshold admits, checked against scipy and a direct count."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from core.stats.basic import clopper_pearson, tpr_at_fpr


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (7, 100), (50, 100), (99, 100), (100, 100), (3, 1000)])
def test_clopper_pearson_equals_scipys_exact_interval(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_tpr_at_low_fpr_carries_its_interval_and_the_non_members_it_rests_on():
    rng = np.random.default_rng(4)
    for _ in range(30):
        n1, n0 = int(rng.integers(20, 200)), int(rng.integers(100, 300))
        y = np.r_[np.ones(n1, int), np.zeros(n0, int)]
        s = np.r_[rng.normal(0.8, 1, n1), rng.normal(0, 1, n0)].round(2)  # ties included
        got = tpr_at_fpr(y, s, 0.01)
        # a direct count: the operating point admitting at most 1% of the non-members with
        # the most members, and among those the fewest non-members
        tp, fp = 0, 0
        for t in np.unique(s):
            f, p = int((s[y == 0] >= t).sum()), int((s[y == 1] >= t).sum())
            if f / n0 <= 0.01 + 1e-12 and (p, -f) > (tp, -fp):
                tp, fp = p, f
        assert got.tpr == pytest.approx(tp / n1) and got.n_positives == n1
        # the non-members it admits: as the achieved FPR says, never over the target
        assert got.n_false_positives == round(got.achieved_fpr * n0) and fp <= got.n_false_positives <= int(0.01 * n0 + 1e-9)
        assert got.tpr_ci == pytest.approx(clopper_pearson(tp, n1))
        assert got.tpr_ci[0] <= got.tpr <= got.tpr_ci[1]


def test_the_sentence_names_the_interval_and_the_non_members():
    y = np.r_[np.ones(100, int), np.zeros(100, int)]
    s = np.r_[np.linspace(0.0, 1.0, 100), np.linspace(-1.0, 0.95, 100)]
    text = tpr_at_fpr(y, s, 0.01).describe()
    assert text.startswith("TPR ") and "the threshold admits 1 of 100 non-members" in text and "[" in text
    assert "not measurable with 50 non-members" in tpr_at_fpr(np.r_[np.ones(50, int), np.zeros(50, int)], np.arange(100.0), 0.01).describe()
