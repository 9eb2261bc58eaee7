"""Batched acoustic descriptors against librosa's own functions on synthetic signals."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from core.blind.acoustic import (
    ACOUSTIC_FEATURE_NAMES,
    AcousticConfig,
    acoustic_features,
    acoustic_frames,
    acoustic_table,
)

torch.set_num_threads(1)
SR = 16000
CFG = AcousticConfig()
F64 = AcousticConfig(precision="float64")
KW = dict(n_fft=CFG.n_fft, hop_length=CFG.hop_length)


def _signals(dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * SR)) / SR
    return {
        "chirp": (0.5 * librosa.chirp(fmin=100, fmax=6000, sr=SR, duration=1.0)).astype(dtype),
        "tone": (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(dtype),
        "noise": (0.1 * rng.standard_normal(int(0.7 * SR))).astype(dtype),
        "noisy_chirp": (
            0.5 * librosa.chirp(fmin=200, fmax=3000, sr=SR, duration=0.9)
            + 0.01 * rng.standard_normal(int(0.9 * SR))
        ).astype(dtype),
    }


def _librosa_frames(y: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "mfcc": librosa.feature.mfcc(y=y, sr=SR, n_mfcc=CFG.n_mfcc, n_mels=CFG.n_mels, **KW),
        "centroid": librosa.feature.spectral_centroid(y=y, sr=SR, **KW)[0],
        "bandwidth": librosa.feature.spectral_bandwidth(y=y, sr=SR, **KW)[0],
        "rolloff": librosa.feature.spectral_rolloff(y=y, sr=SR, **KW)[0],
        "flatness": librosa.feature.spectral_flatness(y=y, **KW)[0],
        "contrast": librosa.feature.spectral_contrast(y=y, sr=SR, **KW),
        "rms": librosa.feature.rms(y=y, frame_length=CFG.n_fft, hop_length=CFG.hop_length)[0],
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=CFG.n_fft, hop_length=CFG.hop_length)[0],
        "f0": librosa.yin(
            y, fmin=CFG.fmin, fmax=CFG.fmax, sr=SR, frame_length=CFG.yin_frame_length,
            hop_length=CFG.yin_hop_length,
        ),
    }


def _batch_frames(clips: list[np.ndarray], torch_dtype, cfg) -> dict[str, torch.Tensor]:
    L = max(c.size for c in clips)
    x = torch.zeros(len(clips), L, dtype=torch_dtype)
    for i, c in enumerate(clips):
        x[i, : c.size] = torch.from_numpy(c)
    return acoustic_frames(x, torch.tensor([c.size for c in clips]), cfg=cfg)


def test_frames_match_librosa_float64_exactly():
    """Same algorithm: in float64 every frame agrees with librosa to rounding error."""
    sig = _signals(np.float64)
    clips = list(sig.values())
    fr = _batch_frames(clips, torch.float64, F64)
    for i, y in enumerate(clips):
        T = 1 + y.size // CFG.hop_length
        assert int(fr["mask"][i].sum()) == T
        for k, ref in _librosa_frames(y).items():
            Tk = 1 + y.size // CFG.yin_hop_length if k == "f0" else T
            mine = fr[k][i].numpy()[..., :Tk]
            assert mine.shape == ref.shape, k
            tol = {"mfcc": 1e-6, "contrast": 1e-5, "f0": 1e-6}.get(k, 1e-8)
            np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=tol, err_msg=k)


def test_frames_match_librosa_float32_within_tolerance():
    """Default float32 path on signals with a noise floor (no spectral valleys at
    float32 rounding level): MFCC within 0.01, spectral Hz within 0.1%, contrast within
    0.05 dB, RMS/ZCR/flatness tight, YIN f0 within 0.01 Hz on voiced frames."""
    sig = _signals(np.float32)
    clips = [sig["noise"], sig["noisy_chirp"]]
    fr = _batch_frames(clips, torch.float32, CFG)
    for i, y in enumerate(clips):
        T = 1 + y.size // CFG.hop_length
        ref = _librosa_frames(y)
        get = lambda k, i=i, T=T: fr[k][i].numpy()[..., :T]  # noqa: E731
        np.testing.assert_allclose(get("mfcc"), ref["mfcc"], atol=1e-2)
        for k in ("centroid", "bandwidth"):
            np.testing.assert_allclose(get(k), ref[k], rtol=1e-3)
        # roll-off is a bin frequency: allow a one-bin flip in at most 1% of frames.
        assert np.mean(get("rolloff") != ref["rolloff"]) <= 0.01
        assert np.max(np.abs(get("rolloff") - ref["rolloff"])) <= SR / CFG.n_fft + 1e-6
        np.testing.assert_allclose(get("contrast"), ref["contrast"], atol=5e-2)
        np.testing.assert_allclose(get("flatness"), ref["flatness"], rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(get("rms"), ref["rms"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(get("zcr"), ref["zcr"].astype(np.float32))
    y = sig["noisy_chirp"]
    T = 1 + y.size // CFG.yin_hop_length
    voiced = fr["yin_trough"][1].numpy()[:T]
    assert voiced.mean() > 0.3
    np.testing.assert_allclose(fr["f0"][1].numpy()[:T][voiced], _librosa_frames(y)["f0"][voiced], atol=1e-2)


def test_aggregates_are_masked_means_of_librosa_frames():
    """Utterance means/stds equal numpy statistics of librosa's frames, whatever the
    padding the batch needed."""
    sig = _signals(np.float64)
    clips = [sig["tone"], sig["noise"], sig["chirp"]]
    feats = acoustic_features(clips, config=F64, device="cpu")
    col = {n: j for j, n in enumerate(ACOUSTIC_FEATURE_NAMES)}
    for i, y in enumerate(clips):
        ref = _librosa_frames(y)
        np.testing.assert_allclose(feats[i, col["mfcc_3_mean"]], ref["mfcc"][3].mean(), atol=1e-6)
        np.testing.assert_allclose(feats[i, col["mfcc_3_std"]], ref["mfcc"][3].std(), atol=1e-6)
        np.testing.assert_allclose(feats[i, col["spectral_centroid_hz"]], ref["centroid"].mean(), rtol=1e-9)
        np.testing.assert_allclose(feats[i, col["spectral_rolloff_hz"]], ref["rolloff"].mean(), rtol=1e-9)
        np.testing.assert_allclose(feats[i, col["spectral_contrast_2_db"]], ref["contrast"][2].mean(), atol=1e-5)
        np.testing.assert_allclose(feats[i, col["rms_mean"]], ref["rms"].mean(), rtol=1e-6)
        np.testing.assert_allclose(feats[i, col["rms_std"]], ref["rms"].std(), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(feats[i, col["zero_crossing_rate"]], ref["zcr"].mean(), rtol=1e-9)
        db = 20 * np.log10(np.maximum(ref["rms"], 1e-5))
        np.testing.assert_allclose(feats[i, col["noise_floor_db"]], np.percentile(db, 10), atol=1e-6)
        np.testing.assert_allclose(feats[i, col["dc_offset"]], y.mean(), atol=1e-9)
    # the 220 Hz + 440 Hz tone is fully voiced at 220 Hz
    assert feats[0, col["voiced_fraction"]] > 0.95
    assert abs(feats[0, col["f0_mean_hz"]] - 220.0) < 0.5
    # white noise has no pitch
    assert feats[1, col["voiced_fraction"]] < 0.1


def test_batch_invariance_and_streaming():
    sig = _signals(np.float32)
    clips = list(sig.values())
    together = acoustic_features(clips, device="cpu")
    alone = np.stack([acoustic_features([c], device="cpu")[0] for c in clips])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)
    small = acoustic_features(clips, device="cpu", config=AcousticConfig(max_batch_samples=20000))
    np.testing.assert_allclose(small, together, rtol=1e-4, atol=1e-4)
    table = acoustic_table(iter(clips), batch_size=3, device="cpu")
    assert list(table.columns) == list(ACOUSTIC_FEATURE_NAMES)
    np.testing.assert_allclose(table.to_numpy(), together, rtol=1e-4, atol=1e-4)


def test_channel_descriptors():
    """Effective bandwidth sees a resampling cut-off; clipping fraction, DC offset and
    silence ratio against direct numpy counts."""
    rng = np.random.default_rng(1)
    n = SR
    env = (np.arange(n) // 1600) % 2  # 100 ms bursts separated by digital silence
    full = (0.1 * rng.standard_normal(n) * env).astype(np.float32)
    narrow = librosa.resample(
        (0.1 * rng.standard_normal(n // 2) * env[::2]).astype(np.float32), orig_sr=8000, target_sr=SR
    )
    clipped = np.clip(3 * full, -0.5, 0.5) * 2 + 0.05
    feats = acoustic_features([full, narrow, clipped], device="cpu")
    col = {k: j for j, k in enumerate(ACOUSTIC_FEATURE_NAMES)}
    assert feats[0, col["effective_bandwidth_hz"]] >= 7500
    # the resampler's transition band and the +-250 Hz band smoothing blur the 4 kHz edge
    assert 3500 <= feats[1, col["effective_bandwidth_hz"]] <= 5000
    np.testing.assert_allclose(feats[2, col["clipping_fraction"]], np.mean(np.abs(clipped) >= 0.999), atol=1e-9)
    np.testing.assert_allclose(feats[2, col["dc_offset"]], clipped.mean(), atol=1e-6)
    rms = librosa.feature.rms(y=full, frame_length=CFG.n_fft, hop_length=CFG.hop_length)[0]
    db = 20 * np.log10(np.maximum(rms, 1e-5))
    expected = np.mean((db < db.max() - CFG.silence_top_db) | (db <= -100))
    np.testing.assert_allclose(feats[0, col["silence_ratio"]], expected, atol=1e-9)
    assert 0.2 < expected < 0.6


def test_empty_and_silent_clips_do_not_crash():
    feats = acoustic_features([np.zeros(0, np.float32), np.zeros(4000, np.float32)], device="cpu")
    col = {k: j for j, k in enumerate(ACOUSTIC_FEATURE_NAMES)}
    assert feats.shape == (2, len(ACOUSTIC_FEATURE_NAMES))
    assert np.isnan(feats[1, col["f0_mean_hz"]]) and feats[1, col["voiced_fraction"]] == 0
    assert feats[1, col["silence_ratio"]] == 1.0
    assert acoustic_features([], device="cpu").shape == (0, len(ACOUSTIC_FEATURE_NAMES))


def test_bad_precision_raises():
    with pytest.raises(ValueError, match="precision"):
        acoustic_features([np.zeros(100)], config=AcousticConfig(precision="float16"))
