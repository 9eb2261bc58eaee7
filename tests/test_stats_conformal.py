"""Conformal p-values against known non-members and Benjamini-Hochberg over them: checked
against a slow loop written from the definition and scipy's BH, and the false discovery
rate measured on simulated mixtures of members and non-members."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from core.stats.conformal import benjamini_hochberg, conformal_pvalues


def test_conformal_pvalues_follow_their_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        cal = rng.normal(size=int(rng.integers(1, 60))).round(1)  # ties included
        s = rng.normal(size=15).round(1)
        slow = [(1 + sum(c >= x for c in cal)) / (1 + len(cal)) for x in s]
        assert conformal_pvalues(s, cal) == pytest.approx(slow)
    with pytest.raises(ValueError):
        conformal_pvalues([0.0], [])


def test_bh_q_values_equal_scipys_and_flag_exactly_those_at_most_q():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 0.01, size=int(rng.integers(0, 10)))])
        flagged, qv = benjamini_hochberg(p, 0.1)
        assert qv == pytest.approx(false_discovery_control(p, method="bh"))
        # the step-up rule from its definition: the largest k with p_(k) <= k q / m
        order = np.sort(p)
        ks = [k for k in range(1, p.size + 1) if order[k - 1] <= k * 0.1 / p.size]
        want = p <= (order[max(ks) - 1] if ks else -1.0)
        assert (flagged == want).all()


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5])
def test_the_flagged_clips_false_discovery_proportion_averages_at_most_q(share):
    """200 draws of 80 suspects (a known share of members, shifted by 1.5 SD) against 100
    calibration non-members: the mean false discovery proportion stays at most q = 0.1
    (within binomial noise), and at share 0 nothing is flagged in at least 90% of draws."""
    rng = np.random.default_rng(7)
    q, fdp, none_flagged = 0.1, [], 0
    for _ in range(200):
        n_mem = int(round(share * 80))
        member = np.r_[np.ones(n_mem, bool), np.zeros(80 - n_mem, bool)]
        s = rng.normal(size=80) + 1.5 * member
        flagged, _ = benjamini_hochberg(conformal_pvalues(s, rng.normal(size=100)), q)
        fdp.append((flagged & ~member).sum() / max(1, flagged.sum()))
        none_flagged += not flagged.any()
    assert np.mean(fdp) <= q + 2 * np.sqrt(q * (1 - q) / 200)
    if share == 0.0:
        assert none_flagged >= 0.9 * 200
