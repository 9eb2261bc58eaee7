"""Batched torch acoustic descriptors vs a per-clip librosa loop computing the same features.

Prints one JSON line: {"name": "acoustic_vs_librosa", "ratio": ..., "goal": 5, "detail": ...}
where ratio = (librosa seconds) / (batched seconds) on the same synthetic clips.

    .venv/bin/python bench/bench_acoustic.py [--clips 200] [--seconds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import librosa
import numpy as np
import torch

from core.blind.acoustic import AcousticConfig, acoustic_features, resolve_device


def synthetic_clips(n: int, seconds: float, sr: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = []
    for _ in range(n):
        f0 = rng.uniform(90, 250)
        y = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 20))
        env = np.clip(np.sin(2 * np.pi * rng.uniform(1, 3) * t), 0, None)
        y = 0.2 * y * env + 0.01 * rng.standard_normal(t.size)
        out.append(y.astype(np.float32))
    return out


def librosa_features(y: np.ndarray, cfg: AcousticConfig) -> np.ndarray:
    """The same descriptors, one clip at a time with librosa (one STFT shared)."""
    sr, kw = cfg.sr, dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length)
    S = np.abs(librosa.stft(y, **kw))
    mel = librosa.feature.melspectrogram(S=S**2, sr=sr, n_mels=cfg.n_mels)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.n_mfcc)
    spec = [
        librosa.feature.spectral_centroid(S=S, sr=sr).mean(),
        librosa.feature.spectral_bandwidth(S=S, sr=sr).mean(),
        librosa.feature.spectral_rolloff(S=S, sr=sr).mean(),
        librosa.feature.spectral_flatness(S=S).mean(),
    ]
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr).mean(1)
    rms = librosa.feature.rms(y=y, frame_length=cfg.n_fft, hop_length=cfg.hop_length)[0]
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=cfg.n_fft, hop_length=cfg.hop_length)[0]
    f0 = librosa.yin(y, fmin=cfg.fmin, fmax=cfg.fmax, sr=sr, frame_length=cfg.yin_frame_length,
                     hop_length=cfg.yin_hop_length)
    db = 20 * np.log10(np.maximum(rms, 1e-5))
    silent = db < db.max() - cfg.silence_top_db
    step = cfg.yin_hop_length // cfg.hop_length
    voiced = f0[~silent[::step]] if (~silent[::step]).any() else f0
    P = S**2
    ltas = P.mean(1)
    floor = np.percentile(P, cfg.bandwidth_floor_percentile, axis=1)
    above = 10 * np.log10((ltas + 1e-30) / (floor + 1e-30)) > cfg.bandwidth_margin_db
    freq = librosa.fft_frequencies(sr=sr, n_fft=cfg.n_fft)
    eff_bw = freq[np.flatnonzero(above)[-1]] if above.any() else freq[-1]
    rest = [
        rms.mean(), rms.std(), zcr.mean(), voiced.mean(), voiced.std(), voiced.size / f0.size,
        eff_bw, np.percentile(db, cfg.noise_floor_percentile), silent.mean(),
        np.mean(np.abs(y) >= cfg.clip_level), y.mean(),
    ]
    return np.concatenate([mfcc.mean(1), mfcc.std(1), spec, contrast, rest])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    args = ap.parse_args()
    if args.smoke:
        args.clips, args.seconds = 6, 1.0
    cfg = AcousticConfig()
    dev = resolve_device(args.device)
    clips = synthetic_clips(args.clips, args.seconds, cfg.sr)

    acoustic_features(clips[:4], device=dev, config=cfg)  # warm-up (allocations, kernels)
    librosa_features(clips[0], cfg)  # warm-up (numba compilation)

    t0 = time.perf_counter()
    for y in clips:
        librosa_features(y, cfg)
    t_lib = time.perf_counter() - t0

    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    acoustic_features(clips, device=dev, config=cfg)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_torch = time.perf_counter() - t0

    ratio = t_lib / t_torch
    detail = (
        f"{args.clips} clips x {args.seconds:g} s at {cfg.sr} Hz; librosa loop "
        f"{args.clips / t_lib:.1f} clips/s, batched torch on {dev.type} "
        f"({torch.get_num_threads()} threads) {args.clips / t_torch:.1f} clips/s"
    )
    print(json.dumps({
        "name": "acoustic_vs_librosa",
        "ratio": round(ratio, 3),
        "goal": 5,
        "librosa_clips_per_s": round(args.clips / t_lib, 2),
        "torch_clips_per_s": round(args.clips / t_torch, 2),
        "device": dev.type,
        "detail": detail,
    }))


if __name__ == "__main__":
    main()
