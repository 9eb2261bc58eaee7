"""What PIA costs: diffusion evidence with ``EvidenceConfig.pia`` divided by the same
evidence without it, same model, same clips, one process.

PIA adds one model call per clip at ``t = 0`` and one per timestep beside the
``2 * n_noise + 2`` each timestep already takes (conditional and unconditional losses, the
SecMI round trip), so the expected ratio from call counts is
``1 + (T + 1) / (T * (2 * n_noise + 2))``: 1.114 at the defaults (seven timesteps, four
noise draws). The JSON line carries that figure beside the measured one.

Model: the zoo's ``diffusion-small`` on the first ``demo-sounds`` members.

Usage: python bench/bench_pia.py [--n-clips 32] [--reps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.recipes.zoo.data import demo_clips  # noqa: E402
from core.targets.base import EvidenceConfig  # noqa: E402
from core.targets.diffusion_audio import DEFAULT_TIMESTEPS, load_mel_diffusion  # noqa: E402
from core.targets.zoo.registry import zoo_dir  # noqa: E402


def expected_ratio(n_timesteps: int, n_noise: int) -> float:
    """The ratio of model rows with PIA to those without (see the module docstring)."""
    return 1 + (n_timesteps + 1) / (n_timesteps * (2 * n_noise + 2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-clips", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    args = ap.parse_args()
    if args.smoke:
        args.n_clips, args.reps = 4, 1
    torch.set_num_threads(args.threads)
    target = load_mel_diffusion(zoo_dir() / "diffusion-small", device="cpu")
    clips = demo_clips("demo-sounds", "member")[: args.n_clips]
    plain, with_pia = EvidenceConfig(), EvidenceConfig(pia=True)
    target.evidence(clips[:2], with_pia)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.reps):
        for cfg in (plain, with_pia):  # interleaved, so drift in the machine's load hits both
            t0 = time.perf_counter()
            target.evidence(clips, cfg)
            times[cfg.pia].append(time.perf_counter() - t0)
    base, pia = float(np.median(times[False])), float(np.median(times[True]))
    print(json.dumps({
        "name": "pia_cost",
        "ratio": round(pia / base, 3),
        "goal": round(expected_ratio(len(DEFAULT_TIMESTEPS), plain.n_noise) * 1.1, 3),
        "goal_op": "<=",
        "detail": {"with_pia_s": round(pia, 4), "without_s": round(base, 4), "clips": len(clips), "reps": args.reps,
                   "expected_from_calls": round(expected_ratio(len(DEFAULT_TIMESTEPS), plain.n_noise), 3)},
    }), flush=True)


if __name__ == "__main__":
    main()
