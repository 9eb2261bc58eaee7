"""Infilling Score cost relative to Min-K%++ on 256-token sequences.

Builds a small random-weight GPT-2 from a config (no download), times
``infilling_token_scores`` (m = 5, the paper's setting for long sequences) and the
Min-K%++ path (one forward pass + token statistics + indicator) on the same sequences,
and prints one JSON line with the ratio of the median times.

Usage: python bench/bench_infilling.py [--n-seq 5] [--length 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from core.mia.indicators import compute_indicators
from core.targets.infilling import infilling_token_scores
from core.targets.token_stats import token_stats_from_logits


def min_k_pp_score(model: GPT2LMHeadModel, ids: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(input_ids=ids[None], attention_mask=torch.ones(1, ids.numel(), dtype=torch.long)).logits[0]
        stats = token_stats_from_logits(logits[:-1], ids[1:])
    return compute_indicators(stats)["min_k_pp@0.2"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-seq", type=int, default=5)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    args = ap.parse_args()
    if args.smoke:
        args.n_seq, args.length, args.m = 1, 32, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8192, n_positions=512)
    model = GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, cfg.vocab_size, (args.length,), generator=g) for _ in range(args.n_seq)]

    min_k_pp_score(model, seqs[0])  # warm-up
    infilling_token_scores(model, seqs[0], args.m)
    t_mk, t_inf = [], []
    for ids in seqs:
        t0 = time.perf_counter()
        min_k_pp_score(model, ids)
        t_mk.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        infilling_token_scores(model, ids, args.m)
        t_inf.append(time.perf_counter() - t0)
    mk, inf = float(np.median(t_mk)), float(np.median(t_inf))
    print(
        json.dumps(
            {
                "name": "infilling_vs_minkpp",
                "ratio": round(inf / mk, 3),
                "goal": 10,
                "goal_op": "<=",
                "detail": {
                    "infilling_s": round(inf, 5),
                    "min_k_pp_s": round(mk, 5),
                    "length": args.length,
                    "m": args.m,
                    "n_seq": args.n_seq,
                    "threads": args.threads,
                    "model": "GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8192), random weights",
                    "device": "cpu",
                    "torch": torch.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
