"""The token targets' dataset-inference scorers side by side: ``normalized_sum`` (the
audio-generative DI paper's, ``auto``'s choice for token evidence: z-scores from a control
half of the non-members, which are then not tested) against ``pooled_sum`` (z-scores over
every clip, labels unused, every clip tested).

Per cell: the DI p-value; suspects needed on the audit's split (seed 0) and, for the split
scorer, the median and 10-90% range over ``--seeds`` seeds of its control/test split (a
single split is luck: ``pooled_sum`` draws no split, so its one number is its every
number); the null check's rejection rate at alpha 1% and 5% over ``--draws`` draws of 50
pseudo-suspects from the known non-members.

usage: python -m bench.measure_scorers [--smoke] [--draws N] [--seeds S] [--workspace DIR] [target[@access] ...]
       python -m bench.measure_scorers --runs --workspace DIR --dataset D --target T
(default cells: zoo:lalm-small, zoo:lalm-large, zoo:lalm-large with its reference, zoo:ar-small,
zoo:ar-large, white-box, and zoo:ar-small@outputs; ``--runs`` reads every MIA run of T on D
already in DIR, newest per set of references and calibrations, e.g. a shadow comparison's.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

SCORERS = ("normalized_sum", "pooled_sum")
DEFAULT_CELLS = ("zoo:lalm-small", "zoo:lalm-large", "zoo:lalm-large+ref", "zoo:ar-small", "zoo:ar-large", "zoo:ar-small@outputs")


def compare(P, U, directions, config, *, seeds: int, draws: int, n_resamples: int = 100) -> dict:
    """Both scorers on one set of indicators (see the module docstring)."""
    from core.di import dataset_inference, needed_over_splits, null_check, pvalue_curve

    out = {}
    for scorer in SCORERS:
        kw = dict(directions=directions, scorer=scorer, n_resamples=n_resamples, config=config)
        spread = needed_over_splits(P, U, splits=seeds, **kw)  # None for a scorer that draws no split
        own = spread["needed"][0] if spread else pvalue_curve(P, U, **kw).min_suspects
        p = dataset_inference(P, U, directions=directions, scorer=scorer, seed=0, null_check=False, config=config).p_value
        nulls = {}
        for alpha in (0.01, 0.05):
            nc = null_check(U, directions=directions, scorer=scorer, n_suspects=min(50, len(U) // 2), n_resamples=draws,
                            alpha=alpha, seed=11, config=config)
            nulls[f"{alpha:g}"] = nc.rejections / draws
        out[scorer] = {"p": float(p), "needed_seed0": own, "needed_median": spread["median"] if spread else own,
                       "needed_p10_p90": [spread["p10"], spread["p90"]] if spread else [own, own], "null_rate": nulls}
    return out


def _row(label: str, res: dict) -> str:
    from core.records import needed_text as n

    a, b = res["normalized_sum"], res["pooled_sum"]
    return (f"| {label} | {a['p']:.2g} | {n(a['needed_seed0'])} | {n(a['needed_median'])} "
            f"[{n(a['needed_p10_p90'][0])}, {n(a['needed_p10_p90'][1])}] | {a['null_rate']['0.01']:.2%} / {a['null_rate']['0.05']:.1%} | "
            f"{b['p']:.2g} | {n(b['needed_seed0'])} | {b['null_rate']['0.01']:.2%} / {b['null_rate']['0.05']:.1%} |")


HEADER = ("| cell | normalized_sum p | suspects needed, split 0 | median [10%, 90%] over splits | null at 1% / 5% | "
          "pooled_sum p | suspects needed | null at 1% / 5% |\n|---|---|---|---|---|---|---|---|")


def run_cells(ws, dataset: str, target: str):
    """Every MIA run of ``target`` on ``dataset`` in ``ws``, the newest per (references,
    calibrations, text mode): ``(label, P, U, directions, scorer config)``."""
    from core.pipeline.di import mia_run_inputs_both
    from core.viz.report import reference_names

    newest: dict = {}
    for rid in list(ws.runs("mia", dataset, target)["id"])[::-1]:  # oldest first: the newest stays
        run = ws.load_run(rid)
        c = run["config"]
        newest[(tuple(c.get("references") or ()), tuple(c.get("calibrations") or ()), c.get("mode"))] = run
    for (refs, cals, mode), run in newest.items():
        cal, uncal = mia_run_inputs_both(ws, run)[0]
        inp = cal if cal is not None else uncal
        label = f"{mode}, references: {reference_names(refs) or 'none'}" + (f" ({'+'.join(cals)})" if cals else "")
        yield label, inp.P, inp.U, inp.directions, inp.scorer_config()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", nargs="*")
    ap.add_argument("--smoke", action="store_true", help="synthetic indicators, few draws: checks the script runs")
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--workspace", default="/tmp/overheard-which")
    ap.add_argument("--runs", action="store_true", help="read the MIA runs of --target on --dataset already in the workspace")
    ap.add_argument("--dataset")
    ap.add_argument("--target")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.smoke:
        from bench.measure_which import synthetic
        from core.di import ScorerConfig

        P, U = synthetic(n=60, shift=0.3)
        res = compare(P, U, np.ones(P.shape[1]), ScorerConfig(evidence="tokens"), seeds=3, draws=20, n_resamples=20)
        print(json.dumps({"bench": "scorers", "smoke": True, "synthetic": res, "seconds": round(time.perf_counter() - t0, 1)}))
        return 0
    from core.runtime.store import Workspace

    ws = Workspace(args.workspace)
    if args.runs:
        if not (args.dataset and args.target):
            ap.error("--runs needs --dataset and --target")
        cells = list(run_cells(ws, args.dataset, args.target))
    else:
        from bench.measure_which import _inputs
        from core.pipeline import load_demo

        load_demo(ws)
        cells = [(cell, *_inputs(ws, cell.partition("@")[0], cell.partition("@")[2] or "white-box"))
                 for cell in args.cells or DEFAULT_CELLS]
    print(HEADER, flush=True)
    results = {}
    for label, P, U, directions, config in cells:
        res = compare(P, U, directions, config, seeds=args.seeds, draws=args.draws)
        results[label] = res
        print(_row(label, res), flush=True)
    print(json.dumps({"bench": "scorers", "cells": results, "seconds": round(time.perf_counter() - t0, 1)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
