"""Welch's one-sided test: scalar and batch forms against scipy, and the grouped combination."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from core.di import grouped_welch, welch_pvalue, welch_pvalue_batch
from core.di.welch import combine_groups


def _scipy_p(p: np.ndarray, u: np.ndarray) -> float:
    return float(stats.ttest_ind(p, u, equal_var=False, alternative="greater").pvalue)


def test_welch_equals_scipy_on_many_draws() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n_p, n_u = rng.integers(2, 80, size=2)
        p = rng.normal(rng.normal(0, 1), rng.uniform(0.1, 5), size=n_p)
        u = rng.normal(rng.normal(0, 1), rng.uniform(0.1, 5), size=n_u)
        assert welch_pvalue(p, u) == pytest.approx(_scipy_p(p, u), rel=1e-10, abs=1e-300)


def test_welch_deep_tail_and_skewed_data() -> None:
    rng = np.random.default_rng(1)
    p = rng.exponential(1.0, size=400) + 1.5
    u = rng.exponential(3.0, size=37)
    ref = _scipy_p(p, u)
    assert welch_pvalue(p, u) == pytest.approx(ref, rel=1e-9)
    a, b = rng.normal(3, 1, 300), rng.normal(0, 1, 300)
    far = welch_pvalue(a, b)
    assert 0.0 < far < 1e-100
    assert far == pytest.approx(_scipy_p(a, b), rel=1e-8)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_welch_degenerate_variances_match_scipy() -> None:
    cases = [([1.0, 1, 1], [1.0, 1]), ([2.0, 2, 2], [1.0, 1]), ([0.0, 0, 0], [1.0, 1]), ([1.0, 2, 3], [1.0, 1])]
    with np.errstate(all="ignore"):
        for p, u in cases:
            ref = _scipy_p(np.array(p), np.array(u))
            got = welch_pvalue(p, u)
            assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref, rel=1e-12)


def test_batch_equals_scalar_rows_and_broadcast_u() -> None:
    rng = np.random.default_rng(2)
    P = rng.normal(0.2, 1.0, size=(50, 17))
    U = rng.normal(0.0, 2.0, size=(50, 9))
    batch = welch_pvalue_batch(P, U)
    assert batch.shape == (50,)
    np.testing.assert_allclose(batch, [welch_pvalue(P[r], U[r]) for r in range(50)], rtol=1e-12)
    shared = welch_pvalue_batch(P, U[0])
    np.testing.assert_allclose(shared, [_scipy_p(P[r], U[0]) for r in range(50)], rtol=1e-10)


def test_batch_rejects_too_few_scores() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        welch_pvalue_batch(np.ones((3, 1)), np.ones((3, 5)))


def test_grouped_welch_one_group_is_welch() -> None:
    rng = np.random.default_rng(3)
    p, u = rng.normal(0.3, 1, 40), rng.normal(0, 1.5, 55)
    res = grouped_welch(p, u)
    ref = stats.ttest_ind(p, u, equal_var=False, alternative="greater")
    assert res.n_groups == 1
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.t == pytest.approx(ref.statistic, rel=1e-12)
    assert res.df == pytest.approx(ref.df, rel=1e-12)


def test_grouped_welch_two_groups_from_the_formula() -> None:
    rng = np.random.default_rng(4)
    p = rng.normal(0.2, 1, 31)
    u = rng.normal(0, 1, 40)
    gp = (np.arange(31) >= 15).astype(int)
    gu = (np.arange(40) >= 22).astype(int)
    d, se, df = [], [], []
    for g in (0, 1):
        a, b = p[gp == g], u[gu == g]
        r = stats.ttest_ind(a, b, equal_var=False)
        d.append(a.mean() - b.mean())
        se.append(d[-1] / r.statistic)
        df.append(r.df)
    t = sum(d) / sum(se)
    res = grouped_welch(p, u, p_group=gp, u_group=gu)
    assert res.n_groups == 2
    assert res.t == pytest.approx(t, rel=1e-10)
    assert res.df == pytest.approx(min(df), rel=1e-10)
    assert res.p_value == pytest.approx(stats.t.sf(t, min(df)), rel=1e-9)


def test_combine_groups_is_conservative_for_independent_groups() -> None:
    # Two independent null groups: sd(d_A + d_B) = sqrt(2) se < 2 se, so the combined
    # statistic has standard deviation about 1/sqrt(2).
    rng = np.random.default_rng(5)
    diff = rng.normal(0, 1, size=(20000, 2))
    t, _, p = combine_groups(diff, np.ones((20000, 2)), np.full((20000, 2), 1e6))
    assert np.std(t) == pytest.approx(1 / np.sqrt(2), rel=0.03)
    assert np.mean(p < 0.05) < 0.03


def test_grouped_welch_needs_two_per_group() -> None:
    with pytest.raises(ValueError, match="group 1"):
        grouped_welch([1.0, 2, 3], [0.0, 1, 2], p_group=[0, 0, 1], u_group=[0, 0, 1])


def test_a_p_value_that_underflowed_reads_as_a_bound_not_zero() -> None:
    from core.stats import format_p, p_clause

    assert format_p(0.0) == "< 1e-300" and format_p(3.3e-36) == "3.3e-36" and format_p(0.0123) == "0.012"
    assert p_clause(0.0) == "p < 1e-300" and p_clause(0.0123) == "p = 0.012"  # in a sentence, never "p = < 1e-300"
