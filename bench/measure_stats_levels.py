"""Coverage, level and power of the cross-validated AUCs, by simulation (the figures the
README quotes; the slow tests in ``tests/test_stats_cv.py`` assert the thresholds on the
same simulations).

    python bench/measure_stats_levels.py [--runs 150] [--gain-runs 1000] [--only gain]

``--only gain``: only the level of the calibration gain's test (``core.mia.calibration.auc_gain_test``),
against DeLong's paired test on the fixed out-of-fold scores, over ``--gain-runs`` simulated
audits whose two aggregates have the same expected AUC (``tests/test_mia_calibration_gain.py``
asserts it on 200).
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
from test_stats_cv import _nested_speakers, _sim, _speaker_data, _table  # noqa: E402

from core.blind.diagnostics import numeric_pipeline  # noqa: E402
from core.mia.aggregate import mia_classifier, run_mia  # noqa: E402
from core.stats import PermutationConfig, cv_auc, make_folds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--power-runs", type=int, default=100)
    ap.add_argument("--gain-runs", type=int, default=1000)
    ap.add_argument("--only", choices=("gain",), default=None, help="only the calibration gain's level")
    args = ap.parse_args()
    out: dict[str, float] = {}
    t0 = time.perf_counter()
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


if __name__ == "__main__":
    main()
