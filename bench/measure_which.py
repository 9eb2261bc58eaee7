"""Which of my clips and how much, measured on the zoo with ground truth.

For each zoo target and access level, the demo dataset's MIA run gives every clip's
indicators; suspect sets mixing members and non-members at known shares are drawn from it
(``--draws`` per share): 60 known non-members, and 40 suspects mixing members with the
other 40 non-members. Per cell: the flags' mean false discovery proportion at q = 0.1, the
share of draws with no clip flagged, the coverage of the 95% lower bound on the share, its
mean, and the mean estimate. Then the planner: half of the demo as a pilot predicts the
suspects needed, compared with what the full demo's p-value curve measures.

usage: python -m bench.measure_which [--smoke] [--draws N] [--pilots K] [--planner-only] [--workspace DIR] [target[@access] ...]
       python -m bench.measure_which --ceiling [--draws N]   (the bound's best case on binormal scores)
(default: zoo:lalm-small, zoo:lalm-large, zoo:lalm-large with its reference, zoo:ar-small,
zoo:diffusion-small alone and with its reference, white-box; add @outputs for the outputs level)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
DEFAULT_CELLS = ("zoo:lalm-small", "zoo:lalm-large", "zoo:lalm-large+ref", "zoo:ar-small", "zoo:diffusion-small",
                 "zoo:diffusion-small+ref")
N_KNOWN, N_SUSPECTS, Q = 60, 40, 0.1


def mixtures(P, U, *, draws: int, shares=SHARES, seed: int = 0, scorer: str = "auto", n_known: int = N_KNOWN,
             n_suspects: int = N_SUSPECTS, directions=None, config=None) -> list[dict]:
    """Per share: FDP, no-flag rate, lower-bound coverage and means over ``draws`` mixtures
    of ``n_suspects`` suspects tested against ``n_known`` known non-members (``directions``
    and the scorer ``config`` as the MIA run's inputs give it: ``auto`` follows their
    evidence kind and keys)."""
    from core.di import ScorerConfig

    from core.di import dataset_inference
    from core.di.which import which_and_how_much

    rng = np.random.default_rng(seed)
    rows = []
    for share in shares:
        n1 = int(round(share * n_suspects))
        fdp, none, covered, lower, estimate = [], 0, 0, [], []
        for i in range(draws):
            u = rng.permutation(U.shape[0])
            known, pool = U[u[:n_known]], U[u[n_known:n_known + n_suspects - n1]]
            suspects = np.vstack([P[rng.choice(P.shape[0], n1, replace=False)], pool])
            res = dataset_inference(suspects, known, directions=directions, scorer=scorer, seed=i, null_check=False,
                                    config=config if config is not None else ScorerConfig())
            w = which_and_how_much(res, q=Q, seed=i)
            flagged = w.flags.index[w.flags.flagged]
            fdp.append(float((flagged >= n1).sum()) / max(1, flagged.size))
            none += flagged.size == 0
            members_tested = int((res.p_index < n1).sum())
            covered += w.share.members_at_least <= members_tested
            lower.append(w.share.lower)
            estimate.append(w.share.estimate)
        rows.append({"share": share, "draws": draws, "mean_fdp": float(np.mean(fdp)), "no_flag_rate": none / draws,
                     "lower_coverage": covered / draws, "mean_lower": float(np.mean(lower)), "mean_estimate": float(np.mean(estimate))})
    return rows


def planner_check(P, U, *, seed: int = 0, alpha: float = 0.01, scorer: str = "auto", directions=None,
                  config=None, pilots: int = 1) -> dict:
    """Half of the clips as a pilot: its predicted suspects (median p < alpha) for the
    full data's known non-members (the study it plans), against the full data's p-value
    curve (as ``overheard di`` measures it, with all of them).
    The pilot of ``seed`` is the headline; ``pilots`` > 1 draws more halves (seeds
    ``seed + 1``, ...) and reports the median prediction and the spread, since one pilot
    is one draw of its own noise."""
    from core.di import ScorerConfig, dataset_inference, pvalue_curve
    from core.di.which import plan

    cfg = config if config is not None else ScorerConfig()

    def pilot(s: int) -> dict:
        rng = np.random.default_rng(s)
        half_p, half_u = rng.permutation(P.shape[0])[: P.shape[0] // 2], rng.permutation(U.shape[0])[: U.shape[0] // 2]
        res = dataset_inference(P[half_p], U[half_u], directions=directions, scorer=scorer, alpha=alpha, seed=s, null_check=False,
                                config=cfg)
        return plan(res, nonmembers=U.shape[0])

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else max(a, b) / min(a, b)

    plans = [pilot(seed + i) for i in range(pilots)]
    predictions = [p["suspects_median"] for p in plans]
    ranges = [p["suspects_median_range"] for p in plans]
    predicted = predictions[0]
    measured = pvalue_curve(P, U, directions=directions, scorer=scorer, alpha=alpha, seed=seed, n_resamples=100, config=cfg).min_suspects
    out = {"predicted": predicted, "measured": measured, "ratio": ratio(predicted, measured), "range": ranges[0]}

    def covers(r: list) -> bool:  # the pilot's range of plans holds what the whole data measures
        lo, hi = r
        return measured is not None and lo is not None and lo <= measured and (hi is None or measured <= hi)

    out["range_covers"] = sum(covers(r) for r in ranges)
    if pilots > 1:
        # a pilot that saw no effect asks for infinitely many: it counts, at the top
        m = float(np.median([np.inf if p is None else p for p in predictions]))
        median = None if np.isinf(m) else m
        out |= {"pilots": predictions, "median_predicted": median, "median_ratio": ratio(median, measured),
                "within_1_5": sum(1 for p in predictions if (r := ratio(p, measured)) is not None and r <= 1.5)}
    return out


def binormal_ceiling(aucs=(0.84, 0.88, 0.92), sizes=((40, 60), (100, 100)), shares=(0.5, 1.0), *, draws: int = 100,
                     seed: int = 0) -> list[dict]:
    """The share bound's best case: a score fixed in advance (nothing fitted, every suspect
    tested against every known non-member, one fold) on binormal scores whose members
    separate at each AUC. Mean lower bound per (AUC, suspects, known non-members, share):
    what no scorer of evidence that weak can exceed."""
    from scipy.stats import norm

    from core.di.which import members_at_least
    from core.stats.conformal import conformal_pvalues

    rows = []
    for auc in aucs:
        d = float(np.sqrt(2) * norm.ppf(auc))
        for m, n in sizes:
            for share in shares:
                rng = np.random.default_rng([seed, m, n])
                m1, lower = int(round(share * m)), []
                for i in range(draws):
                    s = np.r_[rng.normal(d, 1.0, m1), rng.normal(0.0, 1.0, m - m1)]
                    p = conformal_pvalues(s, rng.normal(0.0, 1.0, n))
                    lower.append(members_at_least(p, [(np.arange(m), n)], 0.05, draws=2000, seed=i) / m)
                rows.append({"auc": auc, "suspects": m, "known": n, "share": share, "mean_lower": float(np.mean(lower))})
    return rows


def _inputs(ws, spec: str, access: str):
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.di import mia_run_inputs_both
    from core.targets.zoo.registry import get_zoo, reference_of

    name, _, ref = spec.partition("+")
    dataset = get_zoo(name.split(":", 1)[1]).dataset
    refs = (f"zoo:{reference_of(name.split(':', 1)[1])}",) if ref else ()
    default_mode = MIAConfig().mode

    def same(c: dict) -> bool:  # a run of this cell (default text mode) already in the workspace is read, not made again
        return (c.get("access", "white-box") == access and tuple(c.get("references") or ()) == refs
                and c.get("mode", default_mode) == default_mode and not c.get("target_options"))

    run = ws.latest_run("mia", dataset, name, where=same)
    run_id = run["id"] if run is not None else audit_mia(ws, dataset, name, MIAConfig(access=access, references=refs))[0]
    cal, uncal = mia_run_inputs_both(ws, ws.load_run(run_id))[0]
    inp = cal if cal is not None else uncal
    return inp.P, inp.U, inp.directions, inp.scorer_config()


def synthetic(n: int = 100, d: int = 8, shift: float = 1.2, seed: int = 0):
    """Stand-in indicators for the smoke run: members shifted in a few indicators."""
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n, d))
    P[:, :3] += shift
    return P, rng.standard_normal((n, d))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cells", nargs="*")
    ap.add_argument("--smoke", action="store_true", help="synthetic indicators, few draws: checks the script runs")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--workspace", default="/tmp/overheard-which")
    ap.add_argument("--pilots", type=int, default=1, help="pilot halves drawn for the planner (the first is the headline)")
    ap.add_argument("--planner-only", action="store_true", help="skip the mixtures: the planner's rows alone")
    ap.add_argument("--ceiling", action="store_true", help="the share bound's best case on binormal scores, by AUC and set size")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.smoke:
        P, U = synthetic()
        rows = mixtures(P, U, draws=3, shares=(0.0, 0.5))
        ceiling = binormal_ceiling(aucs=(0.9,), sizes=((20, 30),), draws=3)
        print(json.dumps({"bench": "which", "smoke": True, "cells": {"synthetic": rows}, "planner": planner_check(P, U, pilots=2),
                          "ceiling": ceiling, "seconds": round(time.perf_counter() - t0, 1)}))
        return 0
    if args.ceiling:
        print("| per-clip AUC | suspects | known non-members | true share | mean 95% lower bound |\n|---|---|---|---|---|")
        for r in binormal_ceiling(draws=args.draws):
            print(f"| {r['auc']:.2f} | {r['suspects']} | {r['known']} | {r['share']:.0%} | {r['mean_lower']:.0%} |", flush=True)
        return 0
    from core.pipeline import load_demo
    from core.runtime.store import Workspace

    ws = Workspace(args.workspace)
    load_demo(ws)
    out: dict = {"bench": "which", "draws": args.draws, "cells": {}, "planner": {}}
    print("| target | access | share | mean FDP (q=0.1) | no flag | lower-bound coverage | mean lower | mean estimate |")
    print("|---|---|---|---|---|---|---|---|")
    for cell in args.cells or DEFAULT_CELLS:
        spec, _, access = cell.partition("@")
        P, U, directions, config = _inputs(ws, spec, access or "white-box")
        rows = [] if args.planner_only else mixtures(P, U, draws=args.draws, directions=directions, config=config)
        out["cells"][cell] = rows
        out["planner"][cell] = planner_check(P, U, directions=directions, config=config, pilots=args.pilots)
        for r in rows:
            print(f"| {spec} | {access or 'white-box'} | {r['share']:.0%} | {r['mean_fdp']:.3f} | {r['no_flag_rate']:.0%} | "
                  f"{r['lower_coverage']:.1%} | {r['mean_lower']:.0%} | {r['mean_estimate']:.0%} |", flush=True)
    print("\n| target | planner (half the demo) | its range | measured (all of it) | ratio | median of the pilots [range] | its ratio "
          "| pilots within 1.5x | pilots whose range holds the measured |"
          "\n|---|---|---|---|---|---|---|---|---|")
    for cell, p in out["planner"].items():
        spread = [x for x in p.get("pilots", []) if x is not None]
        lo, hi = p["range"]
        print(f"| {cell} | {p['predicted']} | {lo}-{hi if hi is not None else 'any'} | {p['measured']} | {p['ratio'] and round(p['ratio'], 2)} | "
              f"{p.get('median_predicted')} [{min(spread, default=None)}, {max(spread, default=None)}] | "
              f"{p.get('median_ratio') and round(p['median_ratio'], 2)} | {p.get('within_1_5')}/{len(p.get('pilots', [1]))} | "
              f"{p['range_covers']}/{len(p.get('pilots', [1]))} |")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
