"""The share used, debiased with a shadow of known membership (core/di/duci.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.di.duci import GAMMAS, debiased_share


def _slow_flag_rate(scores, calibration, gamma: float) -> float:
    """The conformal rule written out clip by clip: p = (1 + #{c >= s}) / (1 + n) <= gamma."""
    flags = [(1 + sum(c >= s for c in calibration)) / (1 + len(calibration)) <= gamma for s in scores]
    return sum(flags) / len(flags)


def _draw(rng, share: float, *, n_s: int = 40, n_c: int = 60, n_sh: int = 50, shift: float = 1.5):
    m = int(round(share * n_s))
    suspects = np.r_[rng.normal(shift, 1, m), rng.normal(0, 1, n_s - m)]
    return suspects, rng.normal(0, 1, n_c), rng.normal(shift, 1, n_sh), rng.normal(0, 1, n_c)


def test_the_estimate_is_the_debiasing_formula_at_the_shadows_best_level():
    rng = np.random.default_rng(1)
    s, c, si, sc = _draw(rng, 0.5)
    r = debiased_share(s, c, si, sc, n_boot=50)
    # the level: where the shadow's flag rate on its own clips exceeds its exact false-flag rate most
    gaps = {g: _slow_flag_rate(si, sc, g) - math.floor(g * (sc.size + 1)) / (sc.size + 1) for g in GAMMAS}
    best = max(gaps.values())
    assert r.gamma == min(g for g, v in gaps.items() if v == best)
    fpr = math.floor(r.gamma * (c.size + 1)) / (c.size + 1)
    assert r.fpr == pytest.approx(fpr) and r.tpr == pytest.approx(_slow_flag_rate(si, sc, r.gamma))
    assert r.flag_rate == pytest.approx(_slow_flag_rate(s, c, r.gamma))
    assert r.raw == pytest.approx((r.flag_rate - fpr) / (r.tpr - fpr))
    assert r.estimate == pytest.approx(min(1.0, max(0.0, r.raw)))
    lo, hi = r.interval
    assert 0.0 <= lo <= r.estimate <= hi <= 1.0
    assert "of the 40 suspects used" in r.sentence() and r.to_dict()["interval"] == [lo, hi]


def test_it_tracks_the_share_and_its_interval_covers_it_when_the_shadow_memorized_as_the_target():
    """Simulated audits where the assumption holds (the shadow's clips stand out as the
    target's members do): mean estimate near the truth, interval coverage near its level."""
    rng = np.random.default_rng(7)
    for share in (0.0, 0.5, 1.0):
        est, covered = [], 0
        for i in range(60):
            r = debiased_share(*_draw(rng, share), n_boot=200, seed=i)
            est.append(r.estimate)
            covered += r.interval[0] <= share <= r.interval[1]
        assert abs(np.mean(est) - share) < 0.12, (share, np.mean(est))
        assert covered / 60 >= 0.88, (share, covered)


def test_a_shadow_whose_clips_do_not_stand_out_gives_no_estimate():
    rng = np.random.default_rng(3)
    s, c, _, sc = _draw(rng, 0.5)
    r = debiased_share(s, c, rng.normal(0, 1, 50), sc, n_boot=50)
    assert r.estimate is None and r.interval is None
    assert "barely stand out" in r.sentence()


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="shadow_clips needs at least 2 finite scores"):
        debiased_share([1.0, 2.0], [0.0, 0.5, 0.2], [np.nan, 1.0], [0.0, 0.1])
    with pytest.raises(ValueError, match="too few to flag"):
        debiased_share([1.0, 2.0], [0.0, 0.5], [1.0, 3.0], [0.0, 0.1], gammas=(0.05,))


def test_the_measurement_script_runs_in_smoke_mode(capsys):
    import json

    from bench.measure_duci import SHARES, main

    assert main(["--smoke"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["share"] for r in out["rows"]] == list(SHARES) and all(r["draws"] == 3 for r in out["rows"])
