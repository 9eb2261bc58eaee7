"""Output-only audits on the demo: MIA and dataset inference of each zoo target from what it
returns alone, beside the same model read white-box.

usage: OVERHEARD_WORKSPACE=DIR .venv/bin/python -m bench.measure_outputs [--n-perm B]
       [--levels outputs,white-box] [TARGET@DATASET ...]

Prints one markdown row per target and access level: MIA AUC [95% CI] and its permutation
p, the best single indicator, the DI p-value, the suspects needed and the null check's
rejection rate over 200 draws (non-members against held-out non-members), and the seconds
the MIA run took (evidence included; a second run reads the cache).
"""
from __future__ import annotations

import argparse
import os
import time

from core.pipeline import MIAConfig, audit_mia, load_demo
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace

DEFAULT_CASES = (
    "zoo:lalm-small@demo-speech",
    "zoo:lalm-large@demo-speech",
    "zoo:lalm-ft@demo-speech",
    "zoo:lalm-base@demo-speech",
    "zoo:ar-small@demo-sounds",
    "zoo:ar-large@demo-sounds",
    "zoo:diffusion-small@demo-sounds",
    "zoo:diffusion-large@demo-sounds",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", default=list(DEFAULT_CASES))
    ap.add_argument("--n-perm", type=int, default=100)
    ap.add_argument("--levels", default="outputs,white-box")
    args = ap.parse_args()
    ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/outputs-ws"))
    load_demo(ws)
    print("| target | dataset | access | MIA AUC [95% CI] | p | best indicator (AUC) | DI p | suspects needed | null rate (200 draws) | MIA seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        target, _, dataset = case.rpartition("@")
        for access in args.levels.split(","):
            t0 = time.perf_counter()
            _, mia = audit_mia(ws, dataset, target, MIAConfig(access=access, n_perm=args.n_perm))
            seconds = time.perf_counter() - t0
            _, di = audit_di(ws, dataset, target, DIRunConfig(mia_access=access, null_resamples=200))
            lo, hi = mia["auc_ci"]
            p = mia.get("auc_p_value")
            nr = di.get("null_rejection_rate")
            print(f"| {target} | {dataset} | {access} | {mia['auc']:.3f} [{lo:.2f}, {hi:.2f}] | {'n/a' if p is None else f'{p:.2g}'} "
                  f"| {mia['best_indicator']} ({mia['best_indicator_auc']:.3f}) | {di['p_value']:.2g} "
                  f"| {di['min_suspects'] or 'not reached'} | {'n/a' if nr is None else f'{nr:.1%}'} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
