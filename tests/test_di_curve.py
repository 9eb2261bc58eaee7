"""p-value curves against a slow per-resample scipy loop, and the min_suspects rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from core.di import ScorerConfig, dataset_inference, get_scorer, pvalue_curve
from core.di.curve import allocate, default_sizes, min_suspects_from

D = 4


def _data(seed: int, n_p: int = 48, n_u: int = 60, shift: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, size=(n_p, D)), rng.normal(0.0, 1.0, size=(n_u, D))


def _slow_curve(P, U, *, scorer, sizes, R, seed, directions=None, refit=False):  # type: ignore[no-untyped-def]
    """The documented draw procedure, one scipy t-test per resample and fold."""
    fn = get_scorer(scorer).fn
    rng = np.random.default_rng(seed)
    if refit:
        seeds = rng.integers(0, 2**31 - 1, size=R)
        splits = [fn(P, U, directions=directions, seed=int(s), config=ScorerConfig()) for s in seeds]
    else:
        splits = [fn(P, U, directions=directions, seed=seed, config=ScorerConfig())] * R
    G = splits[0].n_groups
    m = [int(np.sum(splits[0].p_group == g)) for g in range(G)]
    perms = [rng.permuted(np.tile(np.arange(mg), (R, 1)), axis=1) for mg in m]
    out = np.empty((len(sizes), R))
    for i, n in enumerate(sizes):
        k = [n] if G == 1 else [n * mg // sum(m) for mg in m]
        if G > 1:
            # largest remainder, ties to the first fold
            rem = [n * mg / sum(m) - kg for mg, kg in zip(m, k)]
            for j in sorted(range(G), key=lambda j: -rem[j])[: n - sum(k)]:
                k[j] += 1
        for r in range(R):
            sp = splits[r]
            if G == 1:
                out[i, r] = stats.ttest_ind(sp.p_scores[perms[0][r, :n]], sp.u_scores, equal_var=False, alternative="greater").pvalue
                continue
            num = den = 0.0
            dfs = []
            for g in range(G):
                a = sp.p_scores[sp.p_group == g][perms[g][r, : k[g]]]
                b = sp.u_scores[sp.u_group == g]
                res = stats.ttest_ind(a, b, equal_var=False)
                num += a.mean() - b.mean()
                den += (a.mean() - b.mean()) / res.statistic
                dfs.append(res.df)
            out[i, r] = stats.t.sf(num / den, min(dfs))
    return out


@pytest.mark.parametrize(
    "scorer,refit,directions",
    [
        ("control_split", False, None),
        ("normalized_sum", False, np.ones(D)),
        ("control_split", True, None),
        ("cross_fit", False, None),
    ],
)
def test_curve_equals_slow_loop(scorer: str, refit: bool, directions: np.ndarray | None) -> None:
    P, U = _data(0)
    sizes = [4, 7, 12, 20]
    R = 25
    curve = pvalue_curve(P, U, scorer=scorer, sizes=sizes, n_resamples=R, seed=9, refit=refit, directions=directions)
    slow = _slow_curve(P, U, scorer=scorer, sizes=sizes, R=R, seed=9, directions=directions, refit=refit)
    lo, med, hi = np.percentile(slow, [10, 50, 90], axis=1)
    np.testing.assert_allclose(curve.p_median, med, rtol=1e-10)
    np.testing.assert_allclose(curve.p_lo, lo, rtol=1e-10)
    np.testing.assert_allclose(curve.p_hi, hi, rtol=1e-10)
    np.testing.assert_allclose(curve.rejection_rate, np.mean(slow < 0.01, axis=1))
    np.testing.assert_array_equal(curve.n, sizes)
    assert curve.scorer == scorer and curve.n_resamples == R


@pytest.mark.parametrize("scorer", ["control_split", "normalized_sum", "cross_fit"])
def test_full_size_reproduces_dataset_inference(scorer: str) -> None:
    P, U = _data(1)
    res = dataset_inference(P, U, scorer=scorer, directions=np.ones(D), seed=4, null_check=False)
    curve = pvalue_curve(P, U, scorer=scorer, directions=np.ones(D), seed=4, n_resamples=30)
    assert curve.n[-1] == res.n_tested_suspects
    assert curve.n_tested_nonmembers == res.n_tested_nonmembers
    # at full size every resample tests the whole held-out pool: no band left
    assert curve.p_lo[-1] == pytest.approx(res.p_value, rel=1e-10)
    assert curve.p_hi[-1] == pytest.approx(res.p_value, rel=1e-10)


def test_default_grid_is_log_spaced_from_five_to_the_pool() -> None:
    g = default_sizes(1000, 1)
    assert g[0] == 5 and g[-1] == 1000 and np.all(np.diff(g) > 0)
    ratios = g[1:] / g[:-1]
    assert ratios.max() < 1.5
    assert default_sizes(3, 1).tolist() == [2, 3]
    assert default_sizes(100, 2)[0] == 5


def test_min_suspects_rule() -> None:
    n = np.array([5, 10, 20, 40, 80])
    assert min_suspects_from(n, [0.5, 0.2, 0.05, 0.004, 0.0001], 0.01) == 40
    # a dip below alpha followed by a size above it does not count
    assert min_suspects_from(n, [0.5, 0.005, 0.02, 0.004, 0.001], 0.01) == 40
    assert min_suspects_from(n, [0.005, 0.004, 0.003, 0.002, 0.001], 0.01) == 5
    assert min_suspects_from(n, [0.5, 0.2, 0.005, 0.004, 0.02], 0.01) is None
    assert min_suspects_from(n, [0.5] * 5, 0.01) is None


def test_min_suspects_on_a_real_curve() -> None:
    P, U = _data(2, n_p=400, n_u=400, shift=0.4)
    curve = pvalue_curve(P, U, scorer="control_split", n_resamples=100, seed=0)
    m = curve.min_suspects
    assert m is not None
    i = int(np.flatnonzero(curve.n == m)[0])
    assert np.all(curve.p_median[i:] < 0.01)
    assert i == 0 or curve.p_median[i - 1] >= 0.01
    assert np.all(curve.p_lo <= curve.p_median) and np.all(curve.p_median <= curve.p_hi)
    # power rises with the number of suspects
    assert curve.rejection_rate[-1] > curve.rejection_rate[0]
    json.dumps(curve.to_dict())


def test_null_curve_does_not_reach_significance() -> None:
    P, U = _data(3, n_p=300, n_u=300, shift=0.0)
    curve = pvalue_curve(P, U, scorer="normalized_sum", directions=np.ones(D), n_resamples=100, seed=1)
    assert curve.min_suspects is None
    assert np.all(curve.rejection_rate <= 0.2)


def test_allocate_is_proportional_and_exact() -> None:
    assert allocate(10, [24, 24]).tolist() == [5, 5]
    assert allocate(11, [24, 24]).tolist() == [6, 5]
    assert allocate(7, [30, 10]).tolist() == [5, 2]
    for n in range(4, 49):
        assert allocate(n, [24, 25]).sum() == n


def test_sizes_are_validated() -> None:
    P, U = _data(4)
    with pytest.raises(ValueError, match="sizes must lie"):
        pvalue_curve(P, U, scorer="control_split", sizes=[5, 48], n_resamples=5)
    with pytest.raises(ValueError, match="sizes must lie"):
        pvalue_curve(P, U, scorer="cross_fit", sizes=[3, 10], n_resamples=5)


def test_needed_over_splits_redraws_the_split_and_takes_order_statistics() -> None:
    from core.di import needed_over_splits

    P, U = _data(21, n_p=60, n_u=60, shift=0.35)
    d = np.ones(D)
    out = needed_over_splits(P, U, directions=d, scorer="normalized_sum", seed=3, n_resamples=40, splits=12)
    loop = [pvalue_curve(P, U, directions=d, scorer="normalized_sum", seed=3 + i, n_resamples=40).min_suspects
            for i in range(12)]
    assert out is not None and out["needed"] == loop and out["splits"] == 12 and out["seed"] == 3
    assert len(set(loop)) > 1  # the split moves the number: the reason this exists
    ranked = sorted(n if n is not None else 10**9 for n in loop)  # "not reached" above every size
    for key, q in (("median", 0.5), ("p10", 0.1), ("p90", 0.9)):
        v = ranked[int(np.floor(q * (len(ranked) - 1)))]  # numpy's "lower" order statistic
        assert out[key] == (None if v == 10**9 else v)
    # a scorer that draws no split has one number, and nothing to spread
    assert needed_over_splits(P, U, directions=d, scorer="pooled_sum", n_resamples=20, splits=3) is None
    # "not reached" on every split reads as None throughout
    Z = _data(22, n_p=30, n_u=30, shift=0.0)
    flat = needed_over_splits(*Z, directions=d, scorer="normalized_sum", n_resamples=20, splits=5)
    assert flat is not None and flat["needed"] == [None] * 5 and flat["median"] is None and flat["p10"] is None


def test_needed_over_splits_reuses_the_runs_own_curve_as_its_first_split() -> None:
    from core.di import needed_over_splits

    P, U = _data(23, n_p=50, n_u=50, shift=0.4)
    d = np.ones(D)
    own = pvalue_curve(P, U, directions=d, scorer="normalized_sum", seed=4, n_resamples=30)
    kw = dict(directions=d, scorer="normalized_sum", seed=4, n_resamples=30, splits=4)
    assert needed_over_splits(P, U, first=own, **kw) == needed_over_splits(P, U, **kw)
