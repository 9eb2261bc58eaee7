"""Benchmarks of evidence extraction on audio-language targets, all ratios in one process.

- ``batched_vs_naive``: a per-clip Hugging Face loop as public MIA scripts write it (one
  clip, one ``generate``, one teacher-forced forward, Python-level per-token statistics)
  divided by our batched extraction plus indicators, same model, same clips.
- ``scoring_overhead``: our extraction divided by the bare model work on the same batches
  (greedy generate + one teacher-forced forward, no statistics): the physical floor.
- ``cache_cold_vs_warm``: first extraction through the evidence cache divided by reopening
  the same clips from the cache.

Two models: the zoo ``lalm-small`` and a random-weight Whisper-tiny-sized config
(d_model 384, 4+4 layers) sharing its tokenizer and feature extractor.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.mia.indicators import compute_indicators  # noqa: E402
from core.runtime.cache import EvidenceCache, cached_evidence  # noqa: E402
from core.targets.base import ClipInput, EvidenceConfig  # noqa: E402
from core.targets.seq2seq import Seq2SeqTarget  # noqa: E402
from core.recipes.zoo.data import demo_clips  # noqa: E402
from core.targets.zoo.registry import zoo_dir  # noqa: E402

N_CLIPS = 32
BATCH = 16
MAX_NEW = 48


def whisper_sized(tmp: Path) -> Path:
    """Random-weight Whisper-tiny-sized model with the zoo's tokenizer and features."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    src = zoo_dir() / "lalm-small"
    dst = tmp / "whisper-sized"
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in ("model.safetensors", "config.json", "card.json"):
            shutil.copy(f, dst / f.name)
    base = json.loads((src / "config.json").read_text())
    cfg = WhisperConfig(**{**{k: v for k, v in base.items() if k not in ("architectures", "transformers_version")},
                          "d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6,
                          "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536})
    torch.manual_seed(0)
    WhisperForConditionalGeneration(cfg).save_pretrained(dst, safe_serialization=True)
    return dst


def naive_loop(folder: Path, clips: list[ClipInput]) -> list[dict]:
    """What a typical public script does, clip by clip."""
    from transformers import AutoFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(folder, use_safetensors=True).eval()
    fe = AutoFeatureExtractor.from_pretrained(folder)
    out = []
    for clip in clips:
        feats = fe(clip.audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            seq = model.generate(feats, max_new_tokens=MAX_NEW, do_sample=False, num_beams=1)
            logits = model(input_features=feats, decoder_input_ids=seq[:, :-1]).logits[0]
        target = seq[0, 1:]
        lp, ent = [], []
        for i in range(target.shape[0]):
            logp = torch.log_softmax(logits[i], -1)
            lp.append(float(logp[target[i]]))
            ent.append(float(-(logp.exp() * logp).sum()))
        s = sorted(lp)
        out.append({"ppl": math.exp(-sum(lp) / len(lp)), "entropy": sum(ent) / len(ent), "min_k@0.2": sum(s[: max(1, len(s) // 5)]) / max(1, len(s) // 5)})
    return out


def ours(target: Seq2SeqTarget, clips: list[ClipInput]) -> list[dict]:
    evs = target.evidence(clips, EvidenceConfig(), batch_size=BATCH)
    return [compute_indicators(ev.tokens, ev.text) for ev in evs]


def bare(target: Seq2SeqTarget, clips: list[ClipInput]) -> None:
    """Generate + one teacher-forced forward per batch: the model work alone."""
    for start in range(0, len(clips), BATCH):
        batch = clips[start : start + BATCH]
        notes: list[list[str]] = [[] for _ in batch]
        feats = target._encode(batch, notes)
        labels = target._generate(feats, notes)
        n = max(len(l) for l in labels)
        dec = torch.full((len(labels), n), target.pad_id, dtype=torch.long)
        for b, l in enumerate(labels):
            dec[b, 0] = target.decoder_start_id
            dec[b, 1 : len(l)] = torch.tensor(l[:-1], dtype=torch.long)
        with torch.inference_mode():
            target.model(input_features=feats, decoder_input_ids=dec, use_cache=False).logits.sum()


def timed(fn, *a, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*a)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    smoke = ap.parse_args().smoke
    n_clips = 4 if smoke else N_CLIPS
    torch.set_num_threads(2)
    clips = demo_clips("demo-speech", "member")[: n_clips // 2] + demo_clips("demo-speech", "nonmember")[: n_clips // 2]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = {"zoo:lalm-small": zoo_dir() / "lalm-small"}
        if not smoke:
            folders["whisper-tiny-sized (random)"] = whisper_sized(tmp)
        results = []
        for name, folder in folders.items():
            target = Seq2SeqTarget(folder, device="cpu", max_new_tokens=MAX_NEW)
            ours(target, clips[:4])  # warm-up
            t_naive = timed(naive_loop, folder, clips)
            t_ours = timed(ours, target, clips, repeat=2)
            t_bare = timed(bare, target, clips, repeat=2)
            results.append({"name": "batched_vs_naive", "ratio": round(t_naive / t_ours, 2), "goal": 5,
                            "detail": f"{name}: naive per-clip loop {t_naive:.2f} s vs batched {t_ours:.2f} s for {len(clips)} clips (batch {BATCH}, CPU)"})
            results.append({"name": "scoring_overhead", "ratio": round(t_ours / t_bare, 3), "goal": 1.15, "goal_op": "<=",
                            "detail": f"{name}: extraction+indicators {t_ours:.2f} s vs bare generate+forward {t_bare:.2f} s"})
            cache = EvidenceCache(tmp / f"cache-{len(results)}")
            hashes = [c.clip_hash for c in clips]

            def run_cached(cache=cache, target=target, hashes=hashes):
                return cached_evidence(cache, target.fingerprint, hashes, EvidenceConfig().to_dict(), 16000,
                                       lambda idx, target=target: target.evidence([clips[i] for i in idx], EvidenceConfig()), batch_size=BATCH)

            t_cold = timed(run_cached)
            t_warm = timed(run_cached, repeat=3)
            results.append({"name": "cache_cold_vs_warm", "ratio": round(t_cold / t_warm, 1), "goal": 50,
                            "detail": f"{name}: cold {t_cold:.2f} s, warm {t_warm * 1000:.1f} ms for {len(clips)} clips"})
            target.unload()
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
