"""Scaling of ingestion and blind featurization: time and peak memory from 1k to 20k clips.

usage: .venv/bin/python bench/scale_ingest_blind.py [N ...] [--seconds S] [--out FILE]

For each N a synthetic dataset of N WAV clips (half members, half non-members; tones and
noise of random pitch and level, S seconds each) is written, then ingested into a fresh
workspace and blind-featurized (metadata, text and acoustic groups, CV AUC) in a child
process, whose peak resident memory is read from ``getrusage``. Each line printed is one
JSON object; the last one compares seconds per clip at the largest N with the smallest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_corpus(root: Path, n: int, seconds: float, seed: int = 0) -> int:
    """N small WAV clips under members/ and nonmembers/; returns bytes written."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    total = 0
    for i in range(n):
        label = "members" if i % 2 == 0 else "nonmembers"
        f0 = rng.uniform(80, 2000)
        audio = 0.3 * rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * f0 * t) + rng.uniform(0.001, 0.05) * rng.standard_normal(t.size)
        path = root / label / f"clip_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio.astype(np.float32), SR, subtype="PCM_16")
        total += path.stat().st_size
    return total


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.runtime.store import Workspace
corpus, ws_dir = sys.argv[1], sys.argv[2]
ws = Workspace(Path(ws_dir))
t0 = time.perf_counter()
rep = ingest_path(ws, corpus, "scale")
t1 = time.perf_counter()
rss_ingest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
_, res = audit_blind(ws, "scale", BlindRunConfig(groups=("metadata", "text", "acoustic"), n_boot=200))
t2 = time.perf_counter()
print(json.dumps({"ingested": rep.clips, "rejected": len(rep.rejected), "ingest_s": t1 - t0, "blind_s": t2 - t1,
                  "peak_rss_mb_after_ingest": rss_ingest,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "blind_auc": res["auc"].get("all")}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="*", type=int, default=[1000, 5000, 20000])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for n in sorted(args.n):
        tmp = Path(tempfile.mkdtemp(prefix=f"scale{n}-"))
        try:
            t0 = time.perf_counter()
            nbytes = write_corpus(tmp / "corpus", n, args.seconds)
            gen_s = time.perf_counter() - t0
            proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "corpus"), str(tmp / "ws")],
                                  capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(name="scale_ingest_blind", n=n, corpus_mb=round(nbytes / 1e6, 1), generate_s=round(gen_s, 1),
                       ingest_ms_per_clip=round(1000 * row["ingest_s"] / n, 2), blind_ms_per_clip=round(1000 * row["blind_s"] / n, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        summary = {"name": "scale_linearity", "from_n": lo["n"], "to_n": hi["n"],
                   "ingest_per_clip_ratio": round(hi["ingest_ms_per_clip"] / lo["ingest_ms_per_clip"], 2),
                   "blind_per_clip_ratio": round(hi["blind_ms_per_clip"] / lo["blind_ms_per_clip"], 2),
                   "peak_rss_ratio": round(hi["peak_rss_mb"] / lo["peak_rss_mb"], 2),
                   "audio_bytes_ratio": round(hi["corpus_mb"] / lo["corpus_mb"], 2)}
        rows.append(summary)
        print(json.dumps(summary), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
