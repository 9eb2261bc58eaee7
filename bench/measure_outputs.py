"""Output-only audits on the demo: MIA and dataset inference of each zoo target from what it
returns alone, beside the same model read white-box.

usage: OVERHEARD_WORKSPACE=DIR .venv/bin/python -m bench.measure_outputs [--n-perm B]
       [--levels outputs,white-box] [--remote DROP] [TARGET@DATASET ...]

Prints one markdown row per target and access level: MIA AUC [95% CI] and its permutation
p, the best single indicator, the DI p-value, the suspects needed and the null check's
rejection rate over 200 draws (non-members against held-out non-members), and the seconds
the MIA run took (evidence included; a second run reads the cache).

``--remote DROP`` also serves each audio-language target on loopback through the
transcription API (``core.targets.http_serve``, dropping that fraction of the requests) and
audits the URL as a remote target: one more row, plus the server's request counts and
whether every clip's answer equals the local model's.
"""
from __future__ import annotations

import argparse
import os
import time

from core.pipeline import MIAConfig, audit_mia, load_demo
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.stages import at_access
from core.stats import format_p
from core.targets import load_target
from core.targets.http_serve import TranscriptionServer, serve_in_thread
from core.targets.registry import target_family

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
    ap.add_argument("--remote", type=float, default=None, metavar="DROP")
    args = ap.parse_args()
    ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/outputs-ws"))
    load_demo(ws)
    print("| target | dataset | access | MIA AUC [95% CI] | p | best indicator (AUC) | DI p | suspects needed | null rate (200 draws) | MIA seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for case in args.cases:
        target, _, dataset = case.rpartition("@")
        for access in args.levels.split(","):
            _row(ws, dataset, target, access, access, args.n_perm)
        if args.remote is not None and target_family(target) == "audio-language":
            server = TranscriptionServer(load_target(target), drop=args.remote, seed=0)
            serve_in_thread(server)
            try:
                remote_id = _row(ws, dataset, server.base_url, "outputs", f"outputs, over HTTP ({args.remote:.0%} dropped)", args.n_perm,
                                 shown=target, options=(("backoff", 0.05),))
            finally:
                server.shutdown()
                server.server_close()
            local = ws.latest_run("mia", dataset, target, where=at_access("outputs"))
            same = (local is not None and ws.run_table(ws.load_run(remote_id), "clips")["decoded"].to_dict()
                    == ws.run_table(local, "clips")["decoded"].to_dict())
            notes.append(f"{target} over HTTP: {server.counts}; every answer equal to the local model's: {same}")
    for note in notes:
        print(f"\n{note}")


def _row(ws: Workspace, dataset: str, target: str, access: str, label: str, n_perm: int, *, shown: str = "",
         options: tuple = ()) -> str:
    t0 = time.perf_counter()
    run_id, mia = audit_mia(ws, dataset, target, MIAConfig(access=access, n_perm=n_perm, target_options=options))
    seconds = time.perf_counter() - t0
    _, di = audit_di(ws, dataset, target, DIRunConfig(mia_access=access, null_resamples=200))
    lo, hi = mia["auc_ci"]
    p = mia.get("auc_p_value")
    nr = di.get("null_rejection_rate")
    print(f"| {shown or target} | {dataset} | {label} | {mia['auc']:.3f} [{lo:.2f}, {hi:.2f}] | {'n/a' if p is None else f'{p:.2g}'} "
          f"| {mia['best_indicator']} ({mia['best_indicator_auc']:.3f}) | {format_p(di['p_value'])} "
          f"| {di['min_suspects'] or 'not reached'} | {'n/a' if nr is None else f'{nr:.1%}'} | {seconds:.0f} |", flush=True)
    return run_id


if __name__ == "__main__":
    main()
