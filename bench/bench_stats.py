"""Benchmark: the cross-validated aggregate's refits (``core.stats.cv``) against the
solver they replaced (``bench/baseline_solver.py``), on cached-evidence-sized audits.

Synthetic audits: ``n`` clips x 89 correlated indicators (one shared factor, ten
speaker-like groups with their own offsets, noise) and a weak member shift on ten of them;
speaker-grouped folds, 200 label permutations (all of them: no early stop). Each run is a
fresh process with one BLAS thread, so its peak RSS is its own and both solvers run alike.
Prints JSON lines:

- ``stats_mia_vs_baseline``: CPU seconds inside ``cv_auc`` (the fits and refits of
  ``run_mia``'s aggregate; its held-out best indicator, which fits no model, counts in the
  whole run's time only) with the baseline solver / with the current one, at
  ``--ratio-n`` clips (goal 20; CPU time, as the machine may be shared: wall-clock ratios
  and whole-``run_mia`` ratios are in the detail);
- ``stats_blind_vs_baseline``: the same for ``run_blind`` (one numeric group: its own
  and the combined model, unconstrained);
- ``stats_mia_large_seconds``: ``run_mia`` at the largest size (goal <= 30 s), with its
  peak RSS and the growth factor from the ``--ratio-n`` size (goal <= 12 for 10x clips);
- ``stats_small_vs_baseline``: small designs (100 clips x 30 independent indicators, the
  level and power simulations of ``tests/test_stats_cv.py``): CPU seconds of ``run_mia``
  on a few simulated null audits (default permutations, early stop included), baseline /
  current, both in this process, alternating (goal >= 1: no slower); the blind
  baseline's numeric model (``cv_auc``, 20 of the indicators) is in the detail.

``same_auc`` compares each run's AUC to 4 decimals, ``same_p`` its p-value exactly.

Usage: ``python bench/bench_stats.py [--sizes 200,2000,20000] [--ratio-n 2000] [--baseline-large]``
(``--baseline-large`` also times the baseline at the largest size on 50 permutations and
extrapolates to 200: about ten minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.mia.indicators import token_indicator_keys  # noqa: E402
from core.mia.registry import direction  # noqa: E402

N_INDICATORS = 89
N_SPEAKERS = 10


def synthetic_audit(n: int, *, seed: int = 0, shift: float = 0.15) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(indicator table ``[n, 89]``, labels ``[n]``, speaker ``[n]``): one shared factor
    (indicators correlate about 0.7, as variants of one statistic do), a per-speaker offset
    and noise per indicator; members shifted by ``shift`` SD in the member direction on the
    first ten indicators."""
    rng = np.random.default_rng(seed)
    keys = list(token_indicator_keys())[:N_INDICATORS]
    y = rng.permutation(np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)])
    spk = rng.integers(0, N_SPEAKERS, n)
    X = 1.5 * rng.standard_normal(n)[:, None] + 0.5 * rng.standard_normal((N_SPEAKERS, len(keys)))[spk] + rng.standard_normal((n, len(keys)))
    X[:, :10] += shift * y[:, None]
    signs = np.array([direction(k) for k in keys])
    index = pd.Index([f"c{i}" for i in range(n)], name="clip_hash")
    return pd.DataFrame(X * signs, columns=keys, index=index), y, spk


def small_designs(seeds: int = 8, repeats: int = 3) -> dict:
    """CPU seconds of audits of 100 clips x 30 independent indicators, null data (``seeds``
    of them): ``run_mia``, and ``cv_auc`` of the blind numeric model on 20 of the
    indicators, with either solver: alternating, the best of ``repeats``, in this
    process."""
    import core.mia.aggregate as aggregate
    import core.stats.cv as cv
    from bench.baseline_solver import BaselineDesign
    from core.blind.diagnostics import numeric_pipeline

    keys = list(token_indicator_keys())[:30]
    audits = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        y = np.r_[np.ones(50, int), np.zeros(50, int)]
        X = rng.standard_normal((100, len(keys)))
        audits.append((pd.DataFrame(X, columns=keys, index=pd.Index([f"c{i}" for i in range(100)], name="clip_hash")), y))
    current = cv._SharedDesign
    best: dict[str, float] = {}
    out: dict[str, list] = {}
    try:
        for _ in range(repeats):
            for solver in ("baseline", "current"):
                cv._SharedDesign = BaselineDesign if solver == "baseline" else current  # type: ignore[misc,assignment]
                for what in ("mia", "blind"):
                    c, res = time.process_time(), []
                    for s, (table, y) in enumerate(audits):
                        if what == "mia":
                            r = aggregate.run_mia(table, y, n_boot=200, seed=s)
                            res.append((round(r.auc, 4), r.auc_p_value))
                        else:
                            b = cv.cv_auc(table.to_numpy()[:, :20], y, estimator=numeric_pipeline(), folds=cv.make_folds(y, seed=s), n_boot=200, seed=s)
                            res.append((round(b.auc, 4), b.p_value))
                    key = f"{what}_{solver}"
                    best[key] = min(best.get(key, np.inf), time.process_time() - c)
                    out[key] = res
    finally:
        cv._SharedDesign = current  # type: ignore[misc]
    return {"seconds": {key: round(v, 3) for key, v in best.items()},
            "same_auc": all(out[f"{w}_baseline"] == out[f"{w}_current"] for w in ("mia", "blind"))}


def one_run(what: str, n: int, solver: str, n_perm: int, repeats: int = 1) -> dict:
    """Time one audit in this process, the best of ``repeats``: in all and inside
    ``cv_auc`` (the permutation refits), wall-clock and CPU; the peak RSS is this
    process's."""
    import core.mia.aggregate as aggregate
    import core.stats as stats
    import core.stats.cv as cv
    from bench.baseline_solver import BaselineDesign
    from core.blind import run_blind

    table, y, spk = synthetic_audit(n)
    perm = stats.PermutationConfig(n_perm=n_perm, min_perm=n_perm)
    in_cv = [0.0, 0.0]  # wall, CPU

    def timed_cv_auc(*args: object, **kwargs: object) -> object:
        if isinstance(kwargs.get("estimator"), cv.BestSingleColumn):  # the held-out best indicator: no solver; in the run's time only
            return cv.cv_auc(*args, **kwargs)  # type: ignore[arg-type]
        t, c = time.perf_counter(), time.process_time()
        try:
            return cv.cv_auc(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            in_cv[0] += time.perf_counter() - t
            in_cv[1] += time.process_time() - c

    saved = (cv._SharedDesign, aggregate.cv_auc, stats.cv_auc)
    if solver == "baseline":
        cv._SharedDesign = BaselineDesign  # type: ignore[misc,assignment]
    aggregate.cv_auc = stats.cv_auc = timed_cv_auc  # type: ignore[assignment]
    best: dict[str, float] = {}
    try:
        for _ in range(repeats):
            in_cv[:] = [0.0, 0.0]
            t0, c0 = time.perf_counter(), time.process_time()
            if what == "mia":
                r = aggregate.run_mia(table, y, groups=spk, grouping="speaker", permutations=perm)
                auc, p = r.auc, r.auc_p_value
            else:
                b = run_blind({"indicators": table}, y, groups=spk, grouping="speaker", permutations=perm)
                auc, p = b.auc["all"], b.auc_p_value["all"]
            times = {"seconds": time.perf_counter() - t0, "cv_seconds": in_cv[0], "cpu_seconds": time.process_time() - c0, "cv_cpu_seconds": in_cv[1]}
            best = {key: min(v, best.get(key, np.inf)) for key, v in times.items()}
    finally:
        cv._SharedDesign, aggregate.cv_auc, stats.cv_auc = saved  # type: ignore[misc]
    return {"what": what, "n": n, "solver": solver, "n_perm": n_perm, "repeats": repeats, **{key: round(v, 3) for key, v in best.items()},
            "auc": round(float(auc), 4), "p_value": p, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def measure(what: str, n: int, solver: str, n_perm: int, *, fresh: bool = True) -> dict:
    """``one_run`` in a fresh process (its own peak RSS), or here (``fresh=False``): the
    best of three for the current solver at up to 2,000 clips (a run of a second or two
    on a shared machine), one run otherwise."""
    repeats = 3 if solver == "current" and n <= 2000 else 1
    if not fresh:
        return one_run(what, n, solver, n_perm, repeats)
    # one BLAS thread for both solvers (the current one limits itself inside its fits
    # anyway): the ratio is the algorithms', not how threads fare on a busy machine
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", what, str(n), solver, str(n_perm), str(repeats)],
                         capture_output=True, text=True, cwd=ROOT, check=True, env=env)
    row: dict = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"measured": row}), file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200,2000,20000")
    ap.add_argument("--ratio-n", type=int, default=2000)
    ap.add_argument("--n-perm", type=int, default=200)
    ap.add_argument("--baseline-large", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    ap.add_argument("--one", nargs=5, metavar=("WHAT", "N", "SOLVER", "N_PERM", "REPEATS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        what, n, solver, n_perm, repeats = args.one
        print(json.dumps(one_run(what, int(n), solver, int(n_perm), int(repeats))))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.smoke:
        sizes, args.ratio_n, args.n_perm = [200], 200, 20
    large = sizes[-1]
    rows: list[dict] = []
    for what in ("mia", "blind"):
        for n in sizes:
            rows.append(measure(what, n, "current", args.n_perm, fresh=not args.smoke))
            if n <= args.ratio_n:
                rows.append(measure(what, n, "baseline", args.n_perm, fresh=not args.smoke))
    if args.baseline_large and large > args.ratio_n:
        # the baseline at the largest size: observed fits alone, then with 50 permutations;
        # 200 permutations cost the observed fits plus four times the 50-permutation part
        t0 = measure("mia", large, "baseline", 0)
        t50 = measure("mia", large, "baseline", 50)
        rows.append({**t50, "n_perm": args.n_perm, "extrapolated_from_50": True,
                     **{key: round(t0[key] + (t50[key] - t0[key]) * args.n_perm / 50, 1) for key in ("seconds", "cv_seconds", "cpu_seconds", "cv_cpu_seconds")}})

    def pick(what: str, n: int, solver: str) -> dict:
        return next(r for r in rows if r["what"] == what and r["n"] == n and r["solver"] == solver and r["n_perm"] == args.n_perm)

    table = [{"what": r["what"], "n": r["n"], "solver": r["solver"], "seconds": r["seconds"], "cv_seconds": r["cv_seconds"], "cpu_seconds": r["cpu_seconds"],
              "cv_cpu_seconds": r["cv_cpu_seconds"], "peak_rss_mb": r["peak_rss_mb"],
              "auc": r["auc"], **({"extrapolated_from_50": True} if r.get("extrapolated_from_50") else {})} for r in rows if r["n_perm"] == args.n_perm]
    common = {"indicators": N_INDICATORS, "speakers": N_SPEAKERS, "permutations": args.n_perm, "folds": "speaker-grouped, 10"}
    for what in ("mia", "blind"):
        old, new = pick(what, args.ratio_n, "baseline"), pick(what, args.ratio_n, "current")
        print(json.dumps({"name": f"stats_{what}_vs_baseline", "ratio": round(old["cv_cpu_seconds"] / new["cv_cpu_seconds"], 1), "goal": 20,
                          "detail": {"clips": args.ratio_n, "measured": "CPU seconds inside cv_auc (every fold's fit and refits), one BLAS thread",
                                     "baseline_cv_cpu_s": old["cv_cpu_seconds"], "current_cv_cpu_s": new["cv_cpu_seconds"],
                                     "wall_ratio": round(old["cv_seconds"] / new["cv_seconds"], 1),
                                     f"run_{what}_cpu_ratio": round(old["cpu_seconds"] / new["cpu_seconds"], 1),
                                     "same_auc": old["auc"] == new["auc"], "same_p": old["p_value"] == new["p_value"], **common,
                                     "runs": [{key: v for key, v in r.items() if key != "what"} for r in table if r["what"] == what]}}))
    big, mid = pick("mia", large, "current"), pick("mia", args.ratio_n, "current")
    print(json.dumps({"name": "stats_mia_large_seconds", "ratio": big["seconds"], "goal": 30, "goal_op": "<=",
                      "detail": {"clips": large, "peak_rss_mb": big["peak_rss_mb"], "peak_rss_goal_mb": 2048,
                                 f"growth_vs_{mid['n']}": round(big["seconds"] / mid["seconds"], 2), "growth_goal": 12,
                                 "indicators": N_INDICATORS, "permutations": args.n_perm}}))
    small = small_designs(seeds=2 if args.smoke else 8, repeats=1 if args.smoke else 3)
    sec = small["seconds"]
    print(json.dumps({"name": "stats_small_vs_baseline", "ratio": round(sec["mia_baseline"] / sec["mia_current"], 2), "goal": 1,
                      "detail": {"clips": 100, "indicators": 30, "audits": 2 if args.smoke else 8,
                                 "measured": "CPU seconds of run_mia on null audits (default permutations), best of 3, alternating",
                                 "baseline_cpu_s": sec["mia_baseline"], "current_cpu_s": sec["mia_current"],
                                 "blind_ratio": round(sec["blind_baseline"] / sec["blind_current"], 2),
                                 "blind_baseline_cpu_s": sec["blind_baseline"], "blind_current_cpu_s": sec["blind_current"],
                                 "same_auc": small["same_auc"]}}))


if __name__ == "__main__":
    main()
