"""Reference calibration on the demo: MIA and dataset inference with and without reference
models, the shifted-dataset gap, and the null check with references (200 draws).

usage: OVERHEARD_WORKSPACE=DIR .venv/bin/python -m bench.measure_calibration [--mode given|generated]
       [--calibration diff,resid,lira,rmia] [--n-perm B] [CASE ...]

A CASE is ``TARGET=REF1,REF2@DATASET`` (references may be zoo names or checkpoint folders);
``TARGET@DATASET`` audits a target alone (no reference, e.g. a base model). Default: the
cases of the README table. Prints one markdown row per case; for demo-speech-shifted the
row also gives the gap to the same case on demo-speech (run that case first).
"""
from __future__ import annotations

import argparse
import os

from core.mia.calibration import gain_text
from core.pipeline import MIAConfig, audit_mia, load_demo
from core.pipeline.di import DIRunConfig, audit_di
from core.records import needed_text
from core.runtime.store import Workspace

DEFAULT_CASES = (
    "zoo:lalm-large=zoo:lalm-ref@demo-speech",
    "zoo:lalm-large=zoo:lalm-ref@demo-speech-shifted",
    "zoo:ar-large=zoo:ar-ref@demo-sounds",
    "zoo:lalm-ft=zoo:lalm-base@demo-speech",
    "zoo:lalm-base@demo-speech",
    "zoo:lalm-large=zoo:lalm-small@demo-speech",
    "zoo:diffusion-large=zoo:diffusion-ref@demo-sounds",
)


def parse(case: str) -> tuple[str, tuple[str, ...], str]:
    left, _, dataset = case.rpartition("@")
    target, _, refs = left.partition("=")
    return target, tuple(r for r in refs.split(",") if r), dataset


def fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", default=list(DEFAULT_CASES))
    ap.add_argument("--mode", default="generated", choices=("given", "generated"))
    ap.add_argument("--n-perm", type=int, default=100)
    ap.add_argument("--calibration", default="", help="comma-separated calibrations (default: the run's default)")
    args = ap.parse_args()
    ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/calib-ws"))
    load_demo(ws)
    print("| target | reference(s) | dataset | MIA AUC uncal. [95% CI] | MIA AUC cal. [95% CI] | TPR@1%FPR uncal. / cal. "
          "| AUC gain [95% CI], p | DI p uncal. / cal. | suspects needed uncal. / cal. | null rate cal. (200 draws) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    aucs: dict[tuple[str, tuple[str, ...], str], tuple[float, float | None]] = {}
    for case in args.cases:
        target, refs, dataset = parse(case)
        cals = tuple(c for c in args.calibration.split(",") if c) if refs else ()
        _, mia = audit_mia(ws, dataset, target, MIAConfig(mode=args.mode, references=refs, n_perm=args.n_perm, calibrations=cals))
        _, di = audit_di(ws, dataset, target, DIRunConfig(mia_mode=args.mode, references=refs, null_resamples=200))
        unc = mia.get("uncalibrated", mia)
        dunc = di.get("uncalibrated", di)
        cal_auc = mia["auc"] if refs else None
        aucs[(target, refs, dataset)] = (unc["auc"], cal_auc)
        print(f"| {target} | {', '.join(refs) or '—'} | {dataset} | {unc['auc']:.3f} {[round(v, 3) for v in unc['auc_ci']]} | "
              + (f"{mia['auc']:.3f} {[round(v, 3) for v in mia['auc_ci']]}" if refs else "—")
              + f" | {fmt(unc['tpr_at_1pct_fpr'], '.0%')} / {fmt(mia['tpr_at_1pct_fpr'], '.0%') if refs else '—'} "
              f"| {gain_text(mia['calibration']['gain']) if refs else '—'} "
              f"| {dunc['p_value']:.2g} / {fmt(di['p_value'], '.2g') if refs else '—'} "
              f"| {needed_text(dunc['min_suspects'])} / {needed_text(di['min_suspects']) if refs else '—'} "
              f"| {fmt(di['null_rejection_rate'], '.1%')} |")
        if dataset.endswith("-shifted") and (target, refs, dataset.removesuffix("-shifted")) in aucs:
            base = aucs[(target, refs, dataset.removesuffix("-shifted"))]
            gap_u = unc["auc"] - base[0]
            gap_c = None if cal_auc is None or base[1] is None else cal_auc - base[1]
            print(f"<!-- shift gap (shifted minus unshifted AUC): uncalibrated {gap_u:+.3f}, calibrated {fmt(gap_c, '+.3f')} -->")
        for w in mia["warnings"]:
            print(f"<!-- {case}: {w} -->")


if __name__ == "__main__":
    main()
