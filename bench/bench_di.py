"""Benchmark: vectorized DI p-value curve against a per-resample scipy loop.

Both paths use the same inputs, the same fitted scorer and the same index draws, in the
same process; the loop runs one ``scipy.stats.ttest_ind`` per (size, resample). Prints one
JSON line ``{"name": "di_curve_vs_loop", "ratio": loop_time / curve_time, "goal": 20, ...}``.

Usage: ``python bench/bench_di.py [--n 3000] [--d 8] [--sizes 50] [--resamples 200]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import stats

from core.di import ScorerConfig, get_scorer, pvalue_curve


def loop_curve(P: np.ndarray, U: np.ndarray, *, scorer: str, sizes: np.ndarray, R: int, seed: int) -> np.ndarray:
    """p-values ``[S, R]`` with the curve's documented draws, one scipy test per resample."""
    split = get_scorer(scorer).fn(P, U, directions=None, seed=seed, config=ScorerConfig())
    rng = np.random.default_rng(seed)
    perm = rng.permuted(np.tile(np.arange(split.p_scores.size), (R, 1)), axis=1)
    out = np.empty((len(sizes), R))
    for i, n in enumerate(sizes):
        for r in range(R):
            out[i, r] = stats.ttest_ind(
                split.p_scores[perm[r, :n]], split.u_scores, equal_var=False, alternative="greater"
            ).pvalue
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000, help="suspects and non-members each")
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--sizes", type=int, default=50)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.sizes, args.resamples, args.repeats = 200, 5, 20, 1

    rng = np.random.default_rng(0)
    P = rng.normal(0.05, 1.0, size=(args.n, args.d))
    U = rng.normal(0.0, 1.0, size=(args.n, args.d))
    scorer, seed, R = "control_split", 0, args.resamples
    pool = get_scorer(scorer).fn(P, U, directions=None, seed=seed, config=ScorerConfig()).p_scores.size
    sizes = np.unique(np.round(np.geomspace(5, pool, args.sizes)).astype(int))

    curve_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        curve = pvalue_curve(P, U, scorer=scorer, sizes=sizes, n_resamples=R, seed=seed)
        curve_times.append(time.perf_counter() - t0)
    t_curve = min(curve_times)

    t0 = time.perf_counter()
    slow = loop_curve(P, U, scorer=scorer, sizes=sizes, R=R, seed=seed)
    t_loop = time.perf_counter() - t0

    med = np.median(slow, axis=1)
    agree = float(np.max(np.abs(curve.p_median - med) / np.maximum(med, 1e-300)))
    print(
        json.dumps(
            {
                "name": "di_curve_vs_loop",
                "ratio": round(t_loop / t_curve, 1),
                "goal": 20,
                "detail": {
                    "curve_s": round(t_curve, 4),
                    "loop_s": round(t_loop, 3),
                    "sizes": int(sizes.size),
                    "resamples": R,
                    "suspects": args.n,
                    "nonmembers": args.n,
                    "tested_pool": int(pool),
                    "indicators": args.d,
                    "scorer": scorer,
                    "both_include_one_scorer_fit": True,
                    "max_rel_diff_median_p": agree,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
