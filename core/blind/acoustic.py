"""Batched utterance-level acoustic descriptors for the blind baseline.

The descriptors follow the acoustic blind baseline of the LALM membership-inference
paper (MFCCs, spectral statistics, pitch, energy, zero-crossing rate), plus channel
descriptors that expose recording and preprocessing artifacts: effective bandwidth
(resampling and lossy codecs cut the spectrum), noise floor, silence ratio, clipping
and DC offset.

All clips of a batch are zero-padded to a common length and processed together with
``torch.stft``; a per-clip frame mask keeps padding out of every statistic. Each
frame-level quantity reproduces the corresponding librosa function (same ``n_fft``,
``hop_length``, periodic Hann window, ``center=True``): ``librosa.feature.mfcc``,
``spectral_centroid``, ``spectral_bandwidth``, ``spectral_rolloff``,
``spectral_flatness``, ``spectral_contrast``, ``rms``, ``zero_crossing_rate`` and
``librosa.yin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import librosa
import numpy as np
import scipy.fft
import torch
from numpy.typing import NDArray

from core.config import Config
from core.runtime.device import resolve_device

__all__ = [
    "ACOUSTIC_FEATURE_NAMES",
    "AcousticConfig",
    "acoustic_features",
    "acoustic_frames",
    "acoustic_table",
    "resolve_device",
]


@dataclass(frozen=True)
class AcousticConfig(Config):
    """Analysis parameters of :func:`acoustic_features`.

    Attributes
    ----------
    sr : analysis sample rate in Hz (clips must already be at this rate).
    n_fft, hop_length : STFT size and hop in samples (Hann window of ``n_fft``).
    n_mels, n_mfcc : mel bands (Slaney filterbank over 0..sr/2) and cepstral coefficients.
    top_db : dynamic range kept by the dB conversion (librosa's ``power_to_db``).
    contrast_fmin, contrast_bands : lowest octave edge and number of octave bands.
    rolloff_percent : energy fraction for the spectral roll-off.
    yin_frame_length, yin_hop_length, fmin, fmax, trough_threshold : YIN pitch tracker
        parameters; the YIN hop is a multiple of ``hop_length`` (pitch statistics do not
        need 10 ms resolution, and YIN dominates the cost).
    silence_top_db : a frame is silent when its RMS is this far below the clip's loudest.
    noise_floor_percentile : percentile of frame energies (dB) reported as noise floor.
    bandwidth_floor_percentile, bandwidth_margin_db : each frequency band's noise floor is
        this percentile of its power over frames; the effective bandwidth is the highest
        frequency whose long-term level exceeds its floor by the margin.
    bandwidth_top_db : bands further than this below the loudest band do not count
        (resamplers and codecs leave residues 50-100 dB down).
    clip_level : absolute sample value counted as clipped.
    max_batch_samples : padded samples processed at once (bounds peak memory).
    precision : "float32" (default) or "float64"; float64 reproduces librosa to
        rounding error even in spectral valleys at the level of float32 noise.
    """

    sr: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    n_mfcc: int = 20
    top_db: float = 80.0
    contrast_fmin: float = 200.0
    contrast_bands: int = 6
    rolloff_percent: float = 0.85
    yin_frame_length: int = 1024
    yin_hop_length: int = 320
    fmin: float = 60.0
    fmax: float = 500.0
    trough_threshold: float = 0.1
    silence_top_db: float = 40.0
    noise_floor_percentile: float = 10.0
    bandwidth_floor_percentile: float = 10.0
    bandwidth_margin_db: float = 10.0
    bandwidth_top_db: float = 50.0
    clip_level: float = 0.999
    max_batch_samples: int = 1_600_000
    precision: str = "float32"

    def feature_names(self) -> list[str]:
        names = [f"mfcc_{i}_mean" for i in range(self.n_mfcc)]
        names += [f"mfcc_{i}_std" for i in range(self.n_mfcc)]
        names += [
            "spectral_centroid_hz",
            "spectral_bandwidth_hz",
            "spectral_rolloff_hz",
            "spectral_flatness",
        ]
        names += [f"spectral_contrast_{k}_db" for k in range(self.contrast_bands + 1)]
        names += [
            "rms_mean",
            "rms_std",
            "zero_crossing_rate",
            "f0_mean_hz",
            "f0_std_hz",
            "voiced_fraction",
            "effective_bandwidth_hz",
            "noise_floor_db",
            "silence_ratio",
            "clipping_fraction",
            "dc_offset",
        ]
        return names


DEFAULT_CONFIG = AcousticConfig()
ACOUSTIC_FEATURE_NAMES: tuple[str, ...] = tuple(DEFAULT_CONFIG.feature_names())

_AMIN = 1e-10
_RMS_FLOOR_DB = -100.0


def _contrast_bands(cfg: AcousticConfig) -> list[tuple[NDArray[np.int64], int]]:
    """Bin indices and quantile count of each octave band, as librosa selects them."""
    freq = librosa.fft_frequencies(sr=cfg.sr, n_fft=cfg.n_fft)
    octa = np.zeros(cfg.contrast_bands + 2)
    octa[1:] = cfg.contrast_fmin * (2.0 ** np.arange(0, cfg.contrast_bands + 1))
    if np.any(octa[:-1] >= 0.5 * cfg.sr):
        raise ValueError("contrast bands exceed Nyquist: lower contrast_fmin or contrast_bands")
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        current = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == cfg.contrast_bands:
            current[idx[-1] + 1 :] = True
        sel = np.flatnonzero(current)
        if k < cfg.contrast_bands:
            sel = sel[:-1]
        assert np.all(np.diff(sel) == 1), "octave bands are contiguous bin ranges"
        q = int(max(np.rint(0.02 * current.sum()), 1))
        bands.append((sel, q))
    return bands


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis of ``x [..., T]`` where ``mask [B, T]`` (broadcast)."""
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(1)
    return (x * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def _masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mu = _masked_mean(x, mask)
    return _masked_mean((x - mu.unsqueeze(-1)) ** 2, mask).sqrt()


def _db_top(x_db: torch.Tensor, mask: torch.Tensor, top_db: float) -> torch.Tensor:
    """Clamp ``x_db [B, K, T]`` at each clip's maximum over valid frames minus ``top_db``."""
    neg = torch.finfo(x_db.dtype).min
    peak = x_db.masked_fill(~mask[:, None, :], neg).amax(dim=(1, 2), keepdim=True)
    return torch.maximum(x_db, peak - top_db)


def _yin(
    x: torch.Tensor, cfg: AcousticConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN f0 per frame ``[B, T]`` and whether a trough fell below the threshold."""
    fl, hop = cfg.yin_frame_length, cfg.yin_hop_length
    if cfg.yin_hop_length % cfg.hop_length:
        raise ValueError("yin_hop_length must be a multiple of hop_length")
    if cfg.sr / cfg.fmin >= fl - 1:
        raise ValueError("fmin too low for yin_frame_length")
    if cfg.fmax > cfg.sr / 2 or cfg.fmin >= cfg.fmax:
        raise ValueError("need 0 < fmin < fmax <= sr/2")
    xp = torch.nn.functional.pad(x, (fl // 2, fl // 2))
    frames = xp.unfold(-1, fl, hop)  # [B, T, fl]
    min_p = int(np.floor(cfg.sr / cfg.fmax))
    max_p = min(int(np.ceil(cfg.sr / cfg.fmin)), fl - 1)
    # Lags up to max_p only need an FFT of fl + max_p points to avoid circular wrap.
    n_pad = scipy.fft.next_fast_len(fl + max_p + 1, real=True)
    spec = torch.fft.rfft(frames, n=n_pad, dim=-1)
    acf = torch.fft.irfft(spec.real**2 + spec.imag**2, n=n_pad, dim=-1)[..., : max_p + 1]
    head = frames[..., :max_p]
    energy = torch.cumsum(head * head, dim=-1)
    d = torch.empty_like(acf)
    d[..., 0] = 0.0
    d[..., 1:] = 2.0 * (acf[..., :1] - acf[..., 1:]) - energy
    k = torch.arange(1, max_p + 1, device=x.device, dtype=x.dtype)
    cmean = torch.cumsum(d[..., 1:], dim=-1) / k
    num = d[..., min_p : max_p + 1]
    den = cmean[..., min_p - 1 : max_p]
    yin = num / (den + torch.finfo(x.dtype).tiny)  # [B, T, P]

    a = yin[..., 2:] + yin[..., :-2] - 2.0 * yin[..., 1:-1]
    b = (yin[..., 2:] - yin[..., :-2]) / 2.0
    inner = torch.where(b.abs() >= a.abs(), torch.zeros_like(a), -b / a)
    shifts = torch.nn.functional.pad(inner, (1, 1))

    trough = torch.zeros_like(yin, dtype=torch.bool)
    trough[..., 1:-1] = (yin[..., 1:-1] < yin[..., :-2]) & (yin[..., 1:-1] <= yin[..., 2:])
    trough[..., -1] = yin[..., -1] < yin[..., -2]
    trough[..., 0] = yin[..., 0] < yin[..., 1]
    below = trough & (yin < cfg.trough_threshold)
    has = below.any(dim=-1)
    first = below.to(torch.uint8).argmax(dim=-1)
    period = torch.where(has, first, yin.argmin(dim=-1))
    shift = torch.gather(shifts, -1, period.unsqueeze(-1)).squeeze(-1)
    f0 = cfg.sr / (min_p + period.to(x.dtype) + shift)
    return f0, has


def acoustic_frames(
    x: torch.Tensor, lengths: torch.Tensor, *, cfg: AcousticConfig = DEFAULT_CONFIG
) -> dict[str, torch.Tensor]:
    """Frame-level descriptors of a zero-padded batch.

    Parameters
    ----------
    x : torch.Tensor [shape=(B, L)]
        Clips at ``cfg.sr``, zero-padded to a common length ``L``.
    lengths : torch.Tensor [shape=(B,)]
        True length of each clip in samples.

    Returns
    -------
    dict of torch.Tensor
        ``mask [B, T]`` (valid frames: ``T = 1 + L // hop``, clip ``i`` has
        ``1 + lengths[i] // hop``), ``mfcc [B, n_mfcc, T]``, ``centroid``,
        ``bandwidth``, ``rolloff``, ``flatness``, ``rms``, ``zcr`` ``[B, T]``, ``f0`` and
        ``yin_trough`` ``[B, 1 + L // yin_hop_length]``, ``contrast [B, bands + 1, T]`` and the
        power spectrogram ``P [B, T, n_fft // 2 + 1]``.
    """
    dev, dt = x.device, x.dtype
    n_fft, hop = cfg.n_fft, cfg.hop_length
    B, L = x.shape
    T = 1 + L // hop
    mask = torch.arange(T, device=dev)[None, :] < (1 + lengths // hop)[:, None]

    window = torch.hann_window(n_fft, periodic=True, device=dev, dtype=dt)
    stft = torch.stft(
        x, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window,
        center=True, pad_mode="constant", return_complex=True,
    )
    # Frequency last: every per-frame reduction below runs over contiguous memory.
    S = stft.transpose(1, 2).abs()  # [B, T, F]
    P = S * S
    freq = torch.as_tensor(librosa.fft_frequencies(sr=cfg.sr, n_fft=n_fft), device=dev, dtype=dt)

    mel = torch.as_tensor(
        librosa.filters.mel(sr=cfg.sr, n_fft=n_fft, n_mels=cfg.n_mels), device=dev, dtype=dt
    )
    dct = torch.as_tensor(
        scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc],
        device=dev, dtype=dt,
    )
    mel_db = 10.0 * torch.log10(torch.matmul(P, mel.T).clamp_(min=_AMIN))  # [B, T, M]
    mel_db = _db_top(mel_db.transpose(1, 2), mask, cfg.top_db)
    mfcc = torch.matmul(dct, mel_db)  # [B, n_mfcc, T]

    tot = S.sum(-1, keepdim=True)
    tiny = torch.finfo(dt).tiny
    # librosa leaves all-zero frames unnormalized (their spectrum stays zero).
    Sn = S / torch.where(tot > tiny, tot, torch.ones_like(tot))
    centroid = torch.matmul(Sn, freq)
    bandwidth = (Sn * (freq - centroid[..., None]) ** 2).sum(-1).sqrt()
    cums = torch.cumsum(S, dim=-1)
    reached = cums >= cfg.rolloff_percent * cums[..., -1:]
    rolloff = freq[reached.to(torch.uint8).argmax(dim=-1)]
    Pt = P.clamp(min=_AMIN)
    flatness = torch.exp(torch.log(Pt).mean(-1)) / Pt.mean(-1)

    peaks, valleys = [], []
    for sel, q in _contrast_bands(cfg):
        band = S[..., int(sel[0]) : int(sel[-1]) + 1]
        if q == 1:  # the usual case at speech rates; a max is far cheaper than a top-k
            valleys.append(band.amin(-1))
            peaks.append(band.amax(-1))
        else:
            valleys.append(torch.topk(band, q, dim=-1, largest=False, sorted=False).values.mean(-1))
            peaks.append(torch.topk(band, q, dim=-1, largest=True, sorted=False).values.mean(-1))
    peak_db = _db_top(10.0 * torch.log10(torch.stack(peaks, 1).clamp(min=_AMIN)), mask, 80.0)
    valley_db = _db_top(10.0 * torch.log10(torch.stack(valleys, 1).clamp(min=_AMIN)), mask, 80.0)
    contrast = peak_db - valley_db

    # Energy sums over frames via a float64 cumulative sum: exact frame windows without
    # materializing [B, T, n_fft] and without float32 cancellation.
    half = n_fft // 2
    starts = torch.arange(T, device=dev) * hop
    sq = torch.nn.functional.pad(x.double() ** 2, (half, half))
    csq = torch.nn.functional.pad(torch.cumsum(sq, dim=-1), (1, 0))
    rms = ((csq[:, starts + n_fft] - csq[:, starts]) / n_fft).clamp(min=0).sqrt().to(dt)

    # librosa pads with edge values before framing, which adds no crossings, and never
    # counts the first sample of a frame.
    neg = x < -1e-10
    cross = torch.zeros_like(x, dtype=torch.int32)
    cross[:, 1:] = neg[:, 1:] != neg[:, :-1]
    cross[:, lengths.min().item():] *= (
        torch.arange(lengths.min().item(), L, device=dev)[None, :] < lengths[:, None]
    )
    cp = torch.nn.functional.pad(cross, (half, half))
    ccs = torch.nn.functional.pad(torch.cumsum(cp, dim=-1), (1, 0))
    zcr = (ccs[:, starts + n_fft] - ccs[:, starts + 1]).to(dt) / n_fft

    f0, trough = _yin(x, cfg)

    return {
        "mask": mask, "mfcc": mfcc, "centroid": centroid, "bandwidth": bandwidth,
        "rolloff": rolloff, "flatness": flatness, "contrast": contrast, "rms": rms,
        "zcr": zcr, "f0": f0, "yin_trough": trough, "P": P,
    }


def _effective_bandwidth(
    P: torch.Tensor, mask: torch.Tensor, cfg: AcousticConfig
) -> torch.Tensor:
    """Highest frequency (Hz) carrying energy above the clip's stationary noise floor.

    The noise floor of each frequency band is a low percentile of its power over frames
    (minimum statistics): steady background noise sits at it, while speech, music or
    events rise above it in some frames. Bands are smoothed over ``2 * 8 + 1`` bins so
    that a noise-only band's mean stays within ~2 dB of its floor. A band counts when its
    long-term mean exceeds the floor by ``bandwidth_margin_db`` and lies within
    ``bandwidth_top_db`` of the loudest band (which excludes residues above a resampling
    or codec cut-off). A fully stationary clip has no such band; its bandwidth is then
    the highest frequency within ``bandwidth_top_db`` of the loudest band.
    """
    dt = P.dtype
    F = P.shape[-1]
    k = 8
    Ps = torch.nn.functional.avg_pool1d(
        P.reshape(-1, 1, F), 2 * k + 1, stride=1, padding=k, count_include_pad=False
    ).reshape(P.shape)  # [B, T, F]
    m = mask.to(dt)
    ltas = torch.matmul(m[:, None, :], Ps)[:, 0, :] / m.sum(-1, keepdim=True).clamp(min=1.0)
    nan = torch.tensor(float("nan"), device=P.device, dtype=dt)
    floor = torch.nanquantile(
        torch.where(mask[:, :, None], Ps, nan), cfg.bandwidth_floor_percentile / 100.0, dim=1
    )
    level = 10.0 * torch.log10(ltas.clamp(min=1e-30))
    floor_db = 10.0 * torch.log10(floor.clamp(min=1e-30))
    audible = level > level.amax(-1, keepdim=True) - cfg.bandwidth_top_db
    above = (level - floor_db > cfg.bandwidth_margin_db) & audible
    freq = torch.as_tensor(librosa.fft_frequencies(sr=cfg.sr, n_fft=cfg.n_fft), device=P.device, dtype=dt)

    def highest(b: torch.Tensor) -> torch.Tensor:
        return freq[(F - 1) - b.flip(-1).to(torch.uint8).argmax(-1)]

    return torch.where(above.any(-1), highest(above), highest(audible))


def _features_padded(
    x: torch.Tensor, lengths: torch.Tensor, cfg: AcousticConfig
) -> torch.Tensor:
    fr = acoustic_frames(x, lengths, cfg=cfg)
    mask = fr["mask"]
    dt = x.dtype
    B, L = x.shape
    cols: list[torch.Tensor] = [
        _masked_mean(fr["mfcc"], mask).T,
        _masked_std(fr["mfcc"], mask).T,
    ]
    cols += [_masked_mean(fr[k], mask)[None] for k in ("centroid", "bandwidth", "rolloff", "flatness")]
    cols.append(_masked_mean(fr["contrast"], mask).T)
    rms = fr["rms"]
    cols += [_masked_mean(rms, mask)[None], _masked_std(rms, mask)[None], _masked_mean(fr["zcr"], mask)[None]]

    rms_db = 20.0 * torch.log10(rms.clamp(min=10 ** (_RMS_FLOOR_DB / 20)))
    nan = torch.tensor(float("nan"), device=x.device, dtype=dt)
    db_valid = torch.where(mask, rms_db, nan)
    peak_db = db_valid.nan_to_num(nan=-np.inf).amax(-1, keepdim=True)
    silent = (rms_db < peak_db - cfg.silence_top_db) | (rms_db <= _RMS_FLOOR_DB)
    n_valid = mask.sum(-1).to(dt)

    step = cfg.yin_hop_length // cfg.hop_length
    voiced = fr["yin_trough"] & ~silent[:, ::step] & mask[:, ::step]
    n_valid_yin = mask[:, ::step].sum(-1).to(dt)
    nv = voiced.sum(-1).to(dt)
    f0 = fr["f0"]
    f0_mean = (f0 * voiced).sum(-1) / nv.clamp(min=1)
    f0_std = (((f0 - f0_mean[:, None]) ** 2) * voiced).sum(-1).div(nv.clamp(min=1)).sqrt()
    f0_mean = torch.where(nv > 0, f0_mean, nan)
    f0_std = torch.where(nv > 0, f0_std, nan)
    cols += [f0_mean[None], f0_std[None], (nv / n_valid_yin)[None]]

    eff_bw = _effective_bandwidth(fr["P"], mask, cfg)
    noise_floor = torch.nanquantile(db_valid, cfg.noise_floor_percentile / 100.0, dim=-1)
    silence_ratio = (silent & mask).sum(-1).to(dt) / n_valid
    smask = torch.arange(L, device=x.device)[None, :] < lengths[:, None]
    n_samp = lengths.to(dt).clamp(min=1)
    clipping = ((x.abs() >= cfg.clip_level) & smask).sum(-1).to(dt) / n_samp
    dc = (x * smask).sum(-1) / n_samp
    cols += [eff_bw[None], noise_floor[None], silence_ratio[None], clipping[None], dc[None]]
    return torch.cat(cols, 0).T


def acoustic_features(
    batch_audio: Sequence[NDArray[np.floating]],
    *,
    sr: int = 16000,
    device: str | torch.device | None = None,
    config: AcousticConfig | None = None,
) -> NDArray[np.float64]:
    """Utterance-level acoustic descriptors of a batch of clips.

    A pure function of the samples (and the config), so results can be cached per clip
    content hash.

    Parameters
    ----------
    batch_audio : sequence of np.ndarray [shape=(n_i,)]
        Mono clips at ``sr`` Hz (any lengths; empty clips are treated as one zero sample).
    sr : int
        Sample rate of the clips; overrides ``config.sr``.
    device : {"cpu", "cuda", None}
        Where to compute; ``None`` picks CUDA when available.
    config : AcousticConfig, optional
        Analysis parameters (defaults: :class:`AcousticConfig`).

    Returns
    -------
    np.ndarray [shape=(B, F)]
        One row per clip, columns in ``config.feature_names()`` order
        (:data:`ACOUSTIC_FEATURE_NAMES` for the default config). ``f0_mean_hz`` and
        ``f0_std_hz`` are NaN for clips with no voiced frame.
    """
    cfg = config or DEFAULT_CONFIG
    if cfg.precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {cfg.precision!r}")
    if cfg.sr != sr:
        cfg = AcousticConfig(**{**cfg.to_dict(), "sr": int(sr)})
    dev = resolve_device(device)
    np_dt = np.dtype(cfg.precision)
    clips = [np.asarray(a, dtype=np_dt).reshape(-1) for a in batch_audio]
    clips = [c if c.size else np.zeros(1, np_dt) for c in clips]
    n_feat = len(cfg.feature_names())
    out = np.empty((len(clips), n_feat), dtype=np.float64)
    if not clips:
        return out
    # Sorting by length keeps padding small inside each memory-bounded chunk.
    order = np.argsort([c.size for c in clips], kind="stable")
    start = 0
    with torch.inference_mode():
        while start < len(order):
            stop = start + 1
            while stop < len(order) and clips[order[stop]].size * (stop - start + 1) <= cfg.max_batch_samples:
                stop += 1
            idx = order[start:stop]
            L = clips[idx[-1]].size
            buf = np.zeros((idx.size, L), dtype=np_dt)
            for r, i in enumerate(idx):
                buf[r, : clips[i].size] = clips[i]
            x = torch.from_numpy(buf).to(dev)
            lengths = torch.as_tensor([clips[i].size for i in idx], device=dev)
            out[idx] = _features_padded(x, lengths, cfg).double().cpu().numpy()
            start = stop
    return out


def acoustic_table(
    audio: Iterable[NDArray[np.floating]] | Iterable[Sequence[NDArray[np.floating]]],
    *,
    sr: int = 16000,
    device: str | torch.device | None = None,
    config: AcousticConfig | None = None,
    batch_size: int = 64,
    batched: bool = False,
    index: Sequence | None = None,
):
    """Acoustic feature table of a stream of clips, never holding more than a batch.

    Parameters
    ----------
    audio : iterable of np.ndarray, or of batches (lists of np.ndarray) if ``batched``
    batch_size : clips per batch when ``audio`` yields single clips.
    index : optional row labels (one per clip).

    Returns
    -------
    pandas.DataFrame [shape=(n_clips, F)]
    """
    import pandas as pd

    cfg = config or DEFAULT_CONFIG
    rows = [
        acoustic_features(b, sr=sr, device=device, config=cfg)
        for b in (audio if batched else _chunks(audio, batch_size))
    ]
    names = cfg.feature_names()
    data = np.concatenate(rows, 0) if rows else np.empty((0, len(names)))
    return pd.DataFrame(data, columns=names, index=index)


def _chunks(it: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in it:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
