"""Coverage, level and power of the cross-validated AUCs, by simulation (the figures the
README quotes; the slow tests in ``tests/test_stats_cv.py`` assert the thresholds on the
same simulations).

    python bench/measure_stats_levels.py [--runs 150] [--gain-runs 1000] [--only gain|best]

``--only gain``: only the level of the calibration gain's test (``core.mia.calibration.auc_gain_test``),
against DeLong's paired test on the fixed out-of-fold scores, over ``--gain-runs`` simulated
audits whose two aggregates have the same expected AUC (``tests/test_mia_calibration_gain.py``
asserts it on 200).

``--only best``: the held-out best single indicator (``MIAResult.held_out_best``) beside the
logistic-regression aggregate, from the same ``run_mia`` calls: their level on null data,
and how often each finds (p < 0.05) a signal in one indicator of 30 (independent, or
sharing a factor as a loss read at several timesteps does) or spread over ten of 30;
100 clips each (``tests/test_stats_best_column.py`` asserts the level on 300 smaller runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_mia_calibration_gain import gain_p_values  # noqa: E402
from test_stats_cv import KEYS, _nested_speakers, _sim, _speaker_data, _table  # noqa: E402

from core.blind.diagnostics import numeric_pipeline  # noqa: E402
from core.mia.aggregate import mia_classifier, run_mia  # noqa: E402
from core.mia.registry import direction  # noqa: E402
from core.stats import PermutationConfig, cv_auc, make_folds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--power-runs", type=int, default=100)
    ap.add_argument("--gain-runs", type=int, default=1000)
    ap.add_argument("--only", choices=("gain", "best"), default=None,
                    help="only the calibration gain's level, or only the held-out best indicator's level and power")
    args = ap.parse_args()
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    if args.only == "best":
        print(json.dumps(best_against_aggregate(args.runs, args.power_runs) | {"seconds": round(time.perf_counter() - t0, 1)}, indent=1))
        return
    plain, widened = gain_p_values(args.gain_runs, seed=1)
    out |= {"calibration_gain_delong_fixed_scores_p_below_0.05": float((plain < 0.05).mean()),
            "calibration_gain_widened_p_below_0.05": float((widened < 0.05).mean())}
    if args.only == "gain":
        print(json.dumps(out | {"seconds": round(time.perf_counter() - t0, 1)}, indent=1))
        return
    cover = boot = reject = 0
    for s in range(args.runs):
        X, y = _sim(s, 0.0)
        r = run_mia(_table(X), y, n_boot=200, seed=s)
        cover += r.auc_ci[0] <= 0.5 <= r.auc_ci[1]
        lo, hi = r.inference["bootstrap_ci"]
        boot += lo <= 0.5 <= hi
        reject += r.auc_p_value < 0.05
    out |= {"mia_null_coverage": cover / args.runs, "mia_null_bootstrap_only_coverage": boot / args.runs,
            "mia_null_p_below_0.05": reject / args.runs}
    found = found_free = 0
    for s in range(args.power_runs):
        X, y = _sim(100 + s, 0.6)
        found += run_mia(_table(X), y, n_boot=100, seed=s).auc_p_value < 0.05
        free = cv_auc(X, y, estimator=mia_classifier(signed=False), folds=make_folds(y, seed=s), n_boot=50, seed=s)
        found_free += free.p_value < 0.05
    out |= {"mia_weak_signal_found": found / args.power_runs, "mia_weak_signal_found_unconstrained": found_free / args.power_runs}
    cover = reject = 0
    for s in range(args.runs):
        X, y = _sim(200 + s, 0.0)
        r = cv_auc(X[:, :20], y, estimator=numeric_pipeline(), folds=make_folds(y, seed=s), n_boot=200, seed=s)
        cover += r.ci[0] <= 0.5 <= r.ci[1]
        reject += r.p_value < 0.05
    out |= {"blind_null_coverage": cover / args.runs, "blind_null_p_below_0.05": reject / args.runs}
    grouped, ungrouped = [], []
    off = PermutationConfig(n_perm=0)
    for s in range(60):
        X, y, spk = _speaker_data(s)
        grouped.append(cv_auc(X, y, estimator=mia_classifier(1.0), folds=make_folds(y, groups=spk, grouping="speaker", seed=s), permutations=off, n_boot=10).auc)
        ungrouped.append(cv_auc(X, y, estimator=mia_classifier(1.0), folds=make_folds(y, seed=s), permutations=off, n_boot=10).auc)
    out |= {"speaker_null_mean_auc_grouped": float(np.mean(grouped)), "speaker_null_mean_auc_ungrouped": float(np.mean(ungrouped))}
    # one label per speaker, leave-one-speaker-out: where fold priors differ most
    nested, reject = [], 0
    for s in range(args.runs):
        X, y, spk = _nested_speakers(s)
        r = cv_auc(X, y, estimator=mia_classifier(1.0, signed=False), folds=make_folds(y, groups=spk, grouping="speaker", n_splits=10, seed=s),
                   permutations=PermutationConfig(n_perm=200), n_boot=10, seed=s)
        nested.append(r.auc)
        reject += r.p_value < 0.05
    out |= {"nested_speaker_null_mean_auc": float(np.mean(nested)), "nested_speaker_null_p_below_0.05": reject / args.runs,
            "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=1))


def _regime(seed: int, regime: str, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Aligned indicators ``[n, 30]`` and labels: ``null``; ``one``, independent indicators
    and members 0.6 SD higher on one; ``one_shared``, the same with a shared factor
    (correlation 0.5); ``spread``, independent indicators and members 0.3 SD higher on ten."""
    rng = np.random.default_rng([seed, 31])
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    if regime == "one_shared":
        X = rng.standard_normal((n, 1)) + rng.standard_normal((n, 30))
        X[:, 11] += 0.6 * np.sqrt(2.0) * y  # 0.6 SD of an indicator whose variance is 2
    elif regime == "one":
        X = rng.standard_normal((n, 30))
        X[:, 11] += 0.6 * y
    else:
        X = rng.standard_normal((n, 30))
        if regime == "spread":
            X[:, :10] += 0.3 * y[:, None]
    return X, y


def best_against_aggregate(runs: int, power_runs: int) -> dict[str, float]:
    """Rejection rates at 5% of the two estimates ``run_mia`` reports, per regime."""
    signs = np.array([direction(k) for k in KEYS])
    out: dict[str, float] = {}
    for regime, count in (("null", runs), ("one", power_runs), ("one_shared", power_runs), ("spread", power_runs)):
        agg = best = 0
        for s in range(count):
            X, y = _regime(s, regime)
            r = run_mia(_table(X * signs[None, :]), y, n_boot=50, seed=s)
            agg += r.auc_p_value < 0.05
            best += r.held_out_best["auc_p_value"] < 0.05
        out |= {f"{regime}_aggregate_p_below_0.05": agg / count, f"{regime}_held_out_best_p_below_0.05": best / count}
    return out


if __name__ == "__main__":
    main()
