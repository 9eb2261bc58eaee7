"""Which of my clips and how much of my set (core.di.which), checked against independent
computations and by simulation on data with a known share of members.

- conformal p-values per fold equal a loop over the definition;
- the unused suspects' rank sums follow their law (uniform ranks, the Dirichlet-multinomial
  variance), and the lower bound equals a loop over its definition;
- the lower bound on the share covers the true share in >= 95% of draws at every share,
  for shifted and for extreme members, and is informative; Storey's estimate equals its
  formula;
- the flags' false discovery proportion averages <= q at every share (200 draws), and at
  share 0 nothing is flagged in >= 90% of draws;
- the planner's suspects equal a brute-force search over the normal power function;
- the CLI writes the per-clip CSV, and --json carries the flags.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from scipy.stats import t as t_dist

from core.di import dataset_inference
from core.di.which import (fold_pvalues, members_at_least, rank_sum_draws, share_bounds, required_tested,
                           which_and_how_much)


def test_fold_pvalues_follow_the_definition():
    rng = np.random.default_rng(0)
    p, u = rng.standard_normal(30), rng.standard_normal(24)
    gp, gu = rng.integers(0, 2, 30), np.repeat([0, 1], 12)
    got, folds = fold_pvalues(p, u, gp, gu)
    for i in range(30):
        calib = u[gu == gp[i]]
        assert got[i] == pytest.approx((1 + np.sum(calib >= p[i])) / (1 + calib.size))
    assert [n for _, n in folds] == [12, 12]


def _conformal(s: np.ndarray, calib: np.ndarray) -> np.ndarray:
    return np.array([(1 + np.sum(calib >= x)) / (1 + calib.size) for x in s])


def test_the_null_rank_sums_follow_their_law():
    """One unused suspect's rank is uniform on {0, 1/n, ..., 1}; k of them sum to k/2 on
    average, and the spread of m of them (which share one calibration set) equals that of
    the same law drawn another way: the calibration's Dirichlet spacings, the suspects
    multinomial in them."""
    n, m = 12, 9
    sims = rank_sum_draws(n, m, 40000, np.random.default_rng(2))
    one = np.round(sims[:, 1] * n).astype(int)
    np.testing.assert_allclose(np.bincount(one, minlength=n + 1) / one.size, np.full(n + 1, 1 / (n + 1)), atol=0.006)
    np.testing.assert_allclose(sims.mean(axis=0), np.arange(m + 1) / 2, atol=0.03)
    # the same law drawn another way: Dirichlet spacings of the calibration, suspects multinomial in them
    rng = np.random.default_rng(3)
    spacings = rng.dirichlet(np.ones(n + 1), size=40000)
    counts = np.stack([rng.multinomial(m, s) for s in spacings])  # [draws, n + 1]: suspects above c calibration scores
    other = (counts * np.arange(n + 1)).sum(axis=1) / n
    assert sims[:, m].var() == pytest.approx(other.var(), rel=0.04)


def _slow_members_at_least(p: np.ndarray, n_cal: int, alpha: float, draws: int, rng) -> int:
    """One fold, from the definition: the smallest member count m1 for which the observed
    rank sum, less m1, is below the (1 - alpha) quantile of m - m1 unused ranks (drawn from
    Dirichlet spacings and a multinomial)."""
    m = p.size
    total = np.sum(n_cal + 1 - (n_cal + 1) * p) / n_cal
    spacings = rng.dirichlet(np.ones(n_cal + 1), size=draws)
    for m1 in range(m + 1):
        sums = np.array([(rng.multinomial(m - m1, sp) * np.arange(n_cal + 1)).sum() / n_cal for sp in spacings])
        if total - m1 <= np.quantile(sums, 1 - alpha, method="higher") + 1e-9:
            return m1
    return m


def test_the_lower_bound_matches_a_loop_over_its_definition():
    rng = np.random.default_rng(4)
    for share in (0.0, 0.5, 1.0):
        s, calib, _ = _mixture(rng, 24, share, 20, shift=1.5)
        p = _conformal(s, calib)
        fast = members_at_least(p, [(np.arange(24), 20)], 0.05)
        slow = _slow_members_at_least(p, 20, 0.05, 4000, rng)
        assert abs(fast - slow) <= 1  # two simulations of one quantile


def _mixture(rng, m: int, share: float, n_cal: int, shift: float = 3.0):
    n1 = int(round(share * m))
    s = np.concatenate([rng.normal(shift, 1, n1), rng.normal(0, 1, m - n1)])
    return s, rng.normal(0, 1, n_cal), n1


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("members", ["shifted", "extreme"])
def test_the_lower_bound_covers_the_share_and_is_informative(share, members):
    """One fold (the default scorers test every suspect against one calibration set), skewed
    scores. Members shifted (per-clip AUC about 0.84, as diffusion-small's) or extreme
    (above every non-member: the placement the bound guards against)."""
    rng = np.random.default_rng(int(share * 100) + (members == "extreme"))
    m, n_cal, draws = 40, 60, 200
    covered, lows = 0, []
    for i in range(draws):
        n1 = int(round(share * m))
        s = rng.exponential(size=m)
        s[:n1] += 1.0 if members == "shifted" else 100.0
        p = _conformal(s, rng.exponential(size=n_cal))
        lo = members_at_least(p, [(np.arange(m), n_cal)], 0.05, seed=i, draws=1000)
        covered += lo <= n1
        lows.append(lo / m)
    assert covered / draws >= 0.95 - 2.5 * np.sqrt(0.05 * 0.95 / draws)
    if share == 1.0:
        assert np.mean(lows) >= (0.5 if members == "shifted" else 0.9)
    if share == 0.5 and members == "extreme":
        assert np.mean(lows) >= 0.3


def test_the_lower_bound_holds_across_cross_fitted_folds():
    """cross_fit's two folds share the sign of their chance differences (each model is fitted
    on the other fold): a bound that took them as independent covered share 0 in 89% of
    null draws. Per-fold bounds at alpha / 2 hold."""
    rng = np.random.default_rng(11)
    draws, covered = 300, 0
    for i in range(draws):
        X = rng.standard_normal((100, 8))
        res = dataset_inference(X[:40], X[40:], scorer="cross_fit", seed=i, null_check=False)
        covered += which_and_how_much(res, seed=i).share.members_at_least == 0
    assert covered / draws >= 0.95 - 2.5 * np.sqrt(0.05 * 0.95 / draws)


def test_storey_estimate_and_interval():
    rng = np.random.default_rng(3)
    s, calib, n1 = _mixture(rng, 60, 0.5, 50)
    p = _conformal(s, calib)
    b = share_bounds(p, [(np.arange(60), 50)])
    j = 51 // 2
    storey = 1 - (p > j / 51).sum() / (60 * (1 - j / 51))
    assert b.estimate == pytest.approx(np.clip(storey, b.lower, b.upper))
    assert b.lower <= b.estimate <= b.upper and b.lower <= n1 / 60 <= b.upper


def test_required_tested_matches_a_search_of_welchs_power():
    """Over G equal folds DI's statistic is one fold's Welch statistic (sum of differences
    over sum of standard errors), with that fold's degrees of freedom."""
    from scipy.stats import t as t_dist

    d, vp, vu, alpha = 0.4, 1.0, 1.3, 0.01
    for power in (0.5, 0.8):
        for groups in (1, 2):
            def reaches(n: int, n_u: int | None, power: float = power, groups: int = groups) -> bool:
                n_p, n_n = n / groups, (n if n_u is None else n_u) / groups
                if n_p < 2:
                    return False
                a, b = vp / n_p, vu / n_n
                df = (a + b) ** 2 / (a**2 / (n_p - 1) + b**2 / (n_n - 1))
                return bool(groups * d / (groups * np.sqrt(a + b)) >= t_dist.ppf(1 - alpha, df) + norm.ppf(power))

            for n_u in (None, 400):
                first = next(n for n in range(2, 100000) if reaches(n, n_u))
                assert required_tested(d, vp, vu, alpha, power, n_u=n_u, groups=groups) == first
    assert required_tested(d, vp, vu, alpha, 0.8, n_u=5) is None  # five non-members cannot carry the test
    assert required_tested(-0.1, vp, vu, alpha, 0.8) is None


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_flags_control_the_false_discovery_rate(share):
    rng = np.random.default_rng(7 + int(share * 10))
    q, draws, m, d = 0.1, 200, 40, 6
    fdp, none_flagged = [], 0
    for i in range(draws):
        n1 = int(share * m)
        P = rng.standard_normal((m, d))
        P[:n1] += 1.5
        U = rng.standard_normal((80, d))
        res = dataset_inference(P, U, scorer="cross_fit", seed=i, null_check=False)
        w = which_and_how_much(res, q=q, seed=i)
        flagged_rows = w.flags.index[w.flags.flagged]
        false = int((flagged_rows >= n1).sum())
        fdp.append(false / max(1, flagged_rows.size))
        none_flagged += flagged_rows.size == 0
    assert np.mean(fdp) <= q + 2.5 * np.std(fdp) / np.sqrt(draws)
    if share == 0:
        assert none_flagged / draws >= 0.9


def test_the_planner_and_the_flags_read_a_result():
    res = SimpleNamespace(p_scores=np.array([2.0, 2.5, 3.0, 0.1, 2.2, 2.9]), u_scores=np.array([0.0, 0.3, -0.2, 0.5, 0.1, -0.4]),
                          p_group=np.array([0, 0, 0, 1, 1, 1]), u_group=np.array([0, 0, 0, 1, 1, 1]),
                          p_index=np.arange(6), alpha=0.05, n_suspects=6, n_nonmembers=6)
    w = which_and_how_much(res, q=0.5).to_dict()
    assert w["flags"]["p"][0] == pytest.approx(1 / 4) and w["plan"]["suspects_median"] >= 2
    assert "suspects were used" in w["sentence"] and "suspects" in w["plan_sentence"]


def test_the_measurement_script_runs_in_smoke_mode():
    from bench.measure_which import main

    assert main(["--smoke"]) == 0


def test_the_cli_writes_every_suspects_p_and_q(tmp_path, monkeypatch, capsys):
    from core.cli import main
    from core.data.ingest import ingest_path
    from core.runtime.store import Workspace
    from test_pipeline_di import TARGET, save_mia, write_corpus

    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, write_corpus(tmp_path / "c"), "synth")
    save_mia(ws, "synth", shift=1.0)
    csv = tmp_path / "flags.csv"
    assert main(["di", "--dataset", "synth", "--target", TARGET, "--workspace", str(ws.root), "--n-resamples", "20",
                 "--null-resamples", "20", "--clips-csv", str(csv), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    table = pd.read_csv(csv, index_col="clip_hash")
    assert list(table.columns) == ["path", "score", "p", "q", "flagged"] and len(table) == out["n_tested_suspects"]
    assert table["flagged"].sum() == out["which"]["flags"]["n_flagged"] and table["q"].is_monotonic_increasing
    assert set(out["which"]["flagged_clips"]) == set(table.index[table["flagged"]])
    assert out["which"]["share"]["lower"] <= out["which"]["share"]["estimate"]


@pytest.mark.slow
def test_on_the_zoo_the_flags_and_the_share_hold_with_ground_truth(tmp_path):
    """lalm-small on half the demo (its evidence computed here): suspect sets at known
    shares drawn from the run's indicators, 100 draws per share."""
    from bench.measure_which import mixtures
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.di import mia_run_inputs_both
    from tests.conftest import demo_workspace

    ws = demo_workspace(tmp_path, 50)
    run_id, _ = audit_mia(ws, "speech", "zoo:lalm-small", MIAConfig(n_perm=0, n_boot=20))
    inp = mia_run_inputs_both(ws, ws.load_run(run_id))[0][1]
    rows = {r["share"]: r for r in mixtures(inp.P, inp.U, draws=100, shares=(0.0, 0.5, 1.0), n_known=30, n_suspects=20,
                                            directions=inp.directions, config=inp.scorer_config())}
    assert rows[0.0]["no_flag_rate"] >= 0.9 and all(r["mean_fdp"] <= 0.1 + 0.05 for r in rows.values())
    assert all(r["lower_coverage"] >= 0.95 - 0.05 for r in rows.values())
    assert rows[1.0]["mean_lower"] >= 0.5 and rows[0.5]["mean_lower"] >= 0.1  # informative even at 15 calibration clips a fold


def test_the_planner_never_asks_for_fewer_suspects_than_dataset_inference_tests():
    from core.di.curve import SMALLEST_DEFAULT_SIZE
    from core.di.which import plan, plan_sentence

    rng = np.random.default_rng(3)

    def result(shift: float) -> SimpleNamespace:
        p, u = rng.normal(shift, 1.0, 60), rng.normal(0.0, 1.0, 60)
        return SimpleNamespace(p_scores=p, u_scores=u, p_group=np.zeros(60, int), u_group=np.zeros(60, int),
                               alpha=0.01, n_suspects=60, n_nonmembers=60)

    strong_res = result(4.0)
    strong = plan(strong_res)
    raw = required_tested(*_moments_of(strong_res), 0.01, 0.5, n_u=60)
    assert raw is not None and raw < SMALLEST_DEFAULT_SIZE  # Welch alone would ask for fewer
    assert strong["suspects_median"] == SMALLEST_DEFAULT_SIZE and "suspects_median" in strong["below_smallest"]
    assert f"raised to {SMALLEST_DEFAULT_SIZE}" in plan_sentence(strong)
    weak_res = result(0.5)
    weak = plan(weak_res)
    assert weak["below_smallest"] == [] and "raised" not in plan_sentence(weak)
    assert weak["suspects_median"] == required_tested(*_moments_of(weak_res), 0.01, 0.5, n_u=60) > SMALLEST_DEFAULT_SIZE


def test_the_planners_range_follows_the_interval_of_the_effect_and_holds_the_truth_at_its_rate():
    """The range of plans: the suspects needed at the two ends of the effect's 80% normal
    interval (the estimate plus and minus 1.2816 standard errors); and over pilots drawn from
    one population, it holds the plan the true effect gives in about 80% of them."""
    from core.di.which import plan, plan_sentence

    def result(rng: np.random.Generator, n: int) -> SimpleNamespace:
        p, u = rng.normal(0.6, 1.0, n), rng.normal(0.0, 1.0, n)
        return SimpleNamespace(p_scores=p, u_scores=u, p_group=np.zeros(n, int), u_group=np.zeros(n, int),
                               alpha=0.01, n_suspects=n, n_nonmembers=n)

    res = result(np.random.default_rng(2), 50)
    got = plan(res)
    d, vp, vu = _moments_of(res)
    se = np.sqrt(vp / 50 + vu / 50)
    lo, hi = (required_tested(d + k * 1.2815515655446004 * se, vp, vu, 0.01, 0.5, n_u=50) for k in (1, -1))
    assert got["suspects_median_range"] == [max(lo, 5), None if hi is None else max(hi, 5)]
    assert got["suspects_median_range"][0] <= got["suspects_median"] <= got["suspects_median_range"][1]
    assert "80% interval supports" in plan_sentence(got)
    # the plan of the true effect (0.6, unit spreads, 50 non-members) is held by ~80% of pilots
    truth = required_tested(0.6, 1.0, 1.0, 0.01, 0.5, n_u=50)
    rng = np.random.default_rng(9)
    held = 0
    for _ in range(300):
        a, b = plan(result(rng, 50))["suspects_median_range"]
        held += a is not None and a <= truth and (b is None or truth <= b)  # None at the low end: no effect at all
    assert 0.72 <= held / 300 <= 0.88, held


def _moments_of(res: SimpleNamespace) -> tuple[float, float, float]:
    return (float(res.p_scores.mean() - res.u_scores.mean()), float(res.p_scores.var(ddof=1)), float(res.u_scores.var(ddof=1)))


def test_the_planner_plans_for_the_non_members_of_the_study():
    """``nonmembers``: the suspects needed with that many known non-members in all, of which
    the run's tested share is tested (the Welch condition solved with that count); the
    run's own count gives the default answer, more non-members never ask for more
    suspects, and the sentence says which count it planned for."""
    from core.di.which import plan, plan_sentence

    rng = np.random.default_rng(5)
    p, u = rng.normal(1.5, 1.0, 40), rng.normal(0.0, 1.5, 30)
    # a split scorer: 40 of 80 suspects and 30 of 60 non-members tested
    res = SimpleNamespace(p_scores=p, u_scores=u, p_group=np.zeros(40, int), u_group=np.zeros(30, int),
                          alpha=0.01, n_suspects=80, n_nonmembers=60)
    assert plan(res, nonmembers=60)["suspects_median"] == plan(res)["suspects_median"]
    d, vp, vu = _moments_of(res)
    for total in (20, 60, 200):  # with 20, no number of suspects is enough
        got = plan(res, nonmembers=total)
        tested = round(total * 30 / 60)
        # the smallest n tested suspects whose median Welch statistic clears the one-sided
        # critical value, found by walking n up (the formula written out)
        def clears(n: int, tested: int = tested) -> bool:
            a, b = vp / n, vu / tested
            df = (a + b) ** 2 / (a * a / (n - 1) + b * b / (tested - 1))
            return bool(d / np.sqrt(a + b) >= t_dist.ppf(0.99, df))

        n = next((n for n in range(2, 5000) if clears(n)), None)
        expected = None if n is None else max(5, int(np.ceil(n / 0.5)))
        assert got["suspects_median"] == expected, total
        assert got["nonmembers"] == total and f"with {total} known non-members" in plan_sentence(got)
    assert plan(res, nonmembers=20)["suspects_median"] is None
    assert plan(res, nonmembers=200)["suspects_median"] <= plan(res, nonmembers=60)["suspects_median"]
    assert "with the non-members at hand" in plan_sentence(plan(res))
    with pytest.raises(ValueError, match="at least 2"):
        plan(res, nonmembers=1)


def test_a_scorer_fixed_in_advance_bounds_the_share_on_every_suspect_and_non_member():
    """mean_loss fits nothing: one fold, every suspect tested against every non-member, and
    the share bound is higher than the learned control split's on the same sets (which
    tests half of each), with coverage kept."""
    from core.di import ScorerConfig

    cfg = ScorerConfig(keys=("resid:loss_mean", "resid:loss@t10", "zlib"))
    d = np.sqrt(2) * norm.ppf(0.92)  # members at AUC 0.92 on the mean loss (lower = member)
    rng = np.random.default_rng(5)
    fixed, learned = [], []
    for i in range(30):
        m1 = 20
        loss_p = np.r_[rng.normal(-d, 1, m1), rng.normal(0, 1, 20)]
        P = np.column_stack([loss_p, loss_p + rng.normal(0, 1, 40), rng.normal(0, 1, 40)])
        loss_u = rng.normal(0, 1, 60)
        U = np.column_stack([loss_u, loss_u + rng.normal(0, 1, 60), rng.normal(0, 1, 60)])
        dirs = np.array([-1.0, -1.0, 1.0])
        res = dataset_inference(P, U, directions=dirs, scorer="mean_loss", seed=i, null_check=False, config=cfg)
        w = which_and_how_much(res, seed=i)
        assert w.flags.n_calibration == (60,) and w.flags.index.tolist() == list(range(40))
        assert w.share.members_at_least <= m1 + 5  # (coverage is checked over many draws above)
        fixed.append(w.share.lower)
        split = dataset_inference(P, U, directions=dirs, scorer="control_split", seed=i, null_check=False, config=cfg)
        learned.append(which_and_how_much(split, seed=i).share.lower)
    assert np.mean(fixed) >= 0.2 and np.mean(fixed) > np.mean(learned) + 0.05
