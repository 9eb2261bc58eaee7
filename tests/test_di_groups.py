"""Grouped fit/test splits of the DI scorers: no speaker (or source) is on both sides.

On null data whose speakers each have as many member-labelled as non-member clips, a
learned scorer split clip by clip meets in each speaker's test clips the opposite of the
chance imbalance it fitted on that speaker's fit clips, so its t statistic is biased
towards "not used"; split by whole speakers it is centred.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.di import dataset_inference, get_scorer, pvalue_curve, split_grouping
from core.di.registry import ScorerConfig
from core.di.scorers import encode_groups

N_SPK, PER_SPK, D = 20, 10, 5


def speaker_null(seed: int, effect: float = 2.0):
    """Label-balanced speakers (5 member-labelled + 5 non-member clips each), no signal."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(N_SPK), PER_SPK)
    X = rng.normal(scale=effect, size=(N_SPK, D))[spk] + rng.normal(size=(spk.size, D))
    lab = np.tile(np.r_[np.ones(PER_SPK // 2, bool), np.zeros(PER_SPK // 2, bool)], N_SPK)
    return X[lab], X[~lab], spk[lab].astype(str), spk[~lab].astype(str)


@pytest.mark.parametrize("scorer", ["control_split", "cross_fit"])
def test_no_group_on_both_sides_of_any_split(scorer: str) -> None:
    P, U, gp, gu = speaker_null(0)
    g = encode_groups(gp, gu, len(P), len(U))
    for seed in range(10):
        split = get_scorer(scorer).score(P, U, directions=None, seed=seed, config=ScorerConfig(), groups=g)
        assert not split.notes
        for k in range(split.n_groups):
            fit = set(g[0][split.fit_p_index[k]]) | set(g[1][split.fit_u_index[k]])
            tested = set(g[0][split.p_index[split.p_group == k]]) | set(g[1][split.u_index[split.u_group == k]])
            assert fit and tested and not fit & tested
        # every clip is either fitted on or tested in each group, never both
        assert np.intersect1d(split.fit_p_index[0], split.p_index[split.p_group == 0]).size == 0


@pytest.mark.parametrize("scorer", ["control_split", "cross_fit"])
def test_grouped_split_removes_the_bias_of_a_clip_split(scorer: str) -> None:
    t_plain, t_grouped, rejected = [], [], 0
    for k in range(60):
        P, U, gp, gu = speaker_null(k)
        kw = dict(scorer=scorer, directions=np.ones(D), seed=k, null_check=False)
        t_plain.append(dataset_inference(P, U, **kw).t_statistic)
        r = dataset_inference(P, U, groups=(gp, gu), **kw)
        t_grouped.append(r.t_statistic)
        rejected += r.p_value < 0.05
    assert np.mean(t_plain) < -0.6  # measured about -1.0: the bias the grouping removes
    assert abs(np.mean(t_grouped)) < 0.3  # measured about -0.06
    assert rejected / 60 <= 0.08


def test_too_few_groups_falls_back_to_a_clip_split_with_a_note() -> None:
    rng = np.random.default_rng(1)
    P, U = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    r = dataset_inference(P, U, scorer="control_split", null_check=False, groups=(["a"] * 30, ["a"] * 30))
    assert any("too few groups" in w for w in r.warnings)
    assert r.n_tested_suspects > 0


def test_normalized_sum_ignores_groups_and_curves_accept_them() -> None:
    P, U, gp, gu = speaker_null(3)
    kw = dict(scorer="normalized_sum", directions=np.ones(D), null_check=False)
    a, b = dataset_inference(P, U, **kw), dataset_inference(P, U, groups=(gp, gu), **kw)
    assert a.p_value == b.p_value
    c = pvalue_curve(P, U, directions=np.ones(D), scorer="control_split", n_resamples=8, refit=True, groups=(gp, gu))
    assert c.n.max() >= 10 and np.all((c.p_median >= 0) & (c.p_median <= 1))
    with pytest.raises(ValueError, match="both suspects and non-members"):
        encode_groups(gp, None, len(P), len(U))
    with pytest.raises(ValueError, match="entries for"):
        encode_groups(gp[:-1], gu, len(P), len(U))
    assert "whole speaker groups" in split_grouping("control_split", "speaker")
    assert "fits nothing" in split_grouping("normalized_sum", "speaker")
    assert "clip by clip" in split_grouping("cross_fit", "none")
