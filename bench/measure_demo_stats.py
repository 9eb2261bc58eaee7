"""Blind, MIA and DI numbers on the built-in demo, and what the statistics cost per run.

Runs the CLI in a fresh workspace: the blind baseline of each demo dataset, then MIA and
DI of each reference target on its dataset. Every MIA command runs twice; the second run
reads the evidence cache, so its time is the statistics alone. Prints a JSON object
(one entry per run) that the README tables are made from::

    python bench/measure_demo_stats.py [--workspace DIR] [--out results.json]

It only uses CLI flags that exist in every version, so the same script times an older
checkout (run it with that checkout first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PAIRS = [
    ("demo-speech", "zoo:lalm-small"), ("demo-speech", "zoo:lalm-large"),
    ("demo-sounds", "zoo:ar-small"), ("demo-sounds", "zoo:ar-large"),
    ("demo-sounds", "zoo:diffusion-small"), ("demo-sounds", "zoo:diffusion-large"),
]
DATASETS = ("demo-speech", "demo-speech-shifted", "demo-sounds")


def cli(ws: str, *args: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core.cli", *args, "--workspace", ws, "--json"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"overheard {' '.join(args)} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace")
    ap.add_argument("--out")
    ap.add_argument("--skip-di", action="store_true")
    args = ap.parse_args()
    ws = args.workspace or tempfile.mkdtemp(prefix="overheard-bench-")
    cli(ws, "demo")
    rows: dict[str, dict] = {}
    for d in DATASETS:
        res, sec = cli(ws, "blind", "--dataset", d)
        rows[f"blind {d}"] = {"seconds": round(sec, 1), "auc": res["auc"], "auc_ci": res["auc_ci"],
                              "auc_p_value": res.get("auc_p_value"), "verdict": (res.get("verdict") or {}).get("all", {}).get("level")}
        print(f"blind {d}: {sec:.1f} s", file=sys.stderr, flush=True)
    for d, t in PAIRS:
        _, cold = cli(ws, "mia", "--dataset", d, "--target", t)
        res, warm = cli(ws, "mia", "--dataset", d, "--target", t)
        rows[f"mia {t}"] = {"seconds_with_evidence": round(cold, 1), "seconds_warm": round(warm, 1), "auc": res["auc"],
                            "auc_ci": res["auc_ci"], "auc_p_value": res.get("auc_p_value"),
                            "grouping": ((res.get("inference") or {}).get("folds") or {}).get("grouping"),
                            "tpr_at_1pct_fpr": res.get("tpr_at_1pct_fpr")}
        print(f"mia {t}: cold {cold:.1f} s, warm {warm:.1f} s", file=sys.stderr, flush=True)
        if not args.skip_di:
            res, sec = cli(ws, "di", "--dataset", d, "--target", t)
            rows[f"di {t}"] = {"seconds": round(sec, 1), "scorer": res.get("scorer"), "p_value": res.get("p_value"),
                               "min_suspects": res.get("min_suspects"), "min_suspects_equal": res.get("min_suspects_equal"),
                               "null_rejection_rate": res.get("null_rejection_rate")}
    text = json.dumps(rows, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
