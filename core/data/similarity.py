"""How close a generated clip is to an original one: the text-to-audio output metrics.

:func:`audio_similarity` compares a generation from a clip's caption with the clip
(:mod:`core.targets.outputs`; read by the ``mel_dist`` and ``chroma_sim`` indicator families of
:mod:`core.mia.outputs`, where a small distance / a high similarity means "member").

Both metrics cover the *common span*: the first ``L`` samples of both clips, with
``L = min(len(original), len(generated without its trailing silence))``. A generator that
writes less audio than asked for (a mel-patch diffusion model draws a fixed-size patch, an
autoregressive one may stop early) pads its output with silence; that padding is left out,
so a generation is judged on what it wrote rather than on the silence after it. Trailing
silence is every sample after the last one whose magnitude exceeds ``silence_db`` below the
generation's peak. An empty span (a silent generation, one with a non-finite sample, an
empty clip) gives NaN for both.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from core.data.spectral import log_mel

N_FFT = 1024
HOP = 256
N_MELS = 64
TOP_DB = 80.0
SILENCE_DB = -60.0


def generated_span(generated: NDArray[np.floating], *, silence_db: float = SILENCE_DB) -> int:
    """Samples of ``generated`` up to and including its last one louder than ``silence_db``
    below its peak (0 for a silent clip, and for one with a non-finite sample: nothing in it
    can be compared)."""
    y = np.abs(np.asarray(generated, dtype=np.float64).reshape(-1))
    peak = float(y.max()) if y.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return 0
    loud = np.flatnonzero(y > peak * 10 ** (silence_db / 20))
    return int(loud[-1]) + 1


def normalized_log_mel(audio: NDArray[np.floating], sr: int, *, n_fft: int = N_FFT, hop: int = HOP,
                       n_mels: int = N_MELS, top_db: float = TOP_DB) -> NDArray[np.float64]:
    """Per-utterance normalized log-mel, ``[n_mels, frames]``.

    The log-mel in dB (:func:`core.data.spectral.log_mel`: centered Hann frames, librosa mel
    filterbank) is floored at ``top_db`` below its maximum, then standardized by its own
    scalar mean and standard deviation over all bins and frames (so loudness and the
    generator's output gain do not count).
    """
    db = log_mel(np.asarray(audio, dtype=np.float32), sr=sr, n_fft=n_fft, hop=hop, n_mels=n_mels).astype(np.float64)
    db = np.maximum(db, db.max() - top_db)
    return (db - db.mean()) / max(float(db.std()), 1e-6)


def chroma_profile(audio: NDArray[np.floating], sr: int, *, n_fft: int = N_FFT, hop: int = HOP) -> NDArray[np.float64]:
    """Chroma energy profile, ``[12]``: librosa's chroma filterbank (``tuning=0``) applied to
    the STFT power of centered Hann frames, summed over frames (loud frames weigh more)."""
    import librosa
    import torch

    x = torch.as_tensor(np.ascontiguousarray(audio, dtype=np.float32))
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
    power = (spec.abs() ** 2).double().numpy()
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, hop_length=hop, tuning=0.0, norm=None)
    return chroma.sum(axis=1)


def _cosine(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else math.nan


def audio_similarity(original: NDArray[np.floating], generated: NDArray[np.floating], sr: int, *,
                     n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS,
                     silence_db: float = SILENCE_DB) -> dict[str, float]:
    """Distance and similarity of a generation to an original clip, over their common span.

    Parameters
    ----------
    original, generated : mono ``[n_samples]`` at ``sr`` (any lengths).
    sr : sample rate of both.
    n_fft, hop, n_mels : analysis settings (64 ms frames every 16 ms at 16 kHz).
    silence_db : level below the generation's peak that counts as its trailing silence.

    Returns
    -------
    dict
        ``mel_dist``: mean absolute difference of the two clips' per-utterance normalized
        log-mel spectrograms (:func:`normalized_log_mel`, each of the common span), frame by
        frame (time-aligned), over all ``n_mels`` bins and frames; 0 for identical audio,
        lower is closer. ``chroma_sim``: cosine similarity of the two chroma energy profiles
        (:func:`chroma_profile`) of the common span, in [0, 1]. Both NaN when the span is
        empty or a profile is all zero.
    """
    x = np.asarray(original, dtype=np.float32).reshape(-1)
    y = np.asarray(generated, dtype=np.float32).reshape(-1)
    n = min(x.shape[0], generated_span(y, silence_db=silence_db))
    if n == 0:
        return {"mel_dist": math.nan, "chroma_sim": math.nan}
    x, y = x[:n], y[:n]
    if not np.any(x):
        return {"mel_dist": math.nan, "chroma_sim": math.nan}
    a = normalized_log_mel(x, sr, n_fft=n_fft, hop=hop, n_mels=n_mels)
    b = normalized_log_mel(y, sr, n_fft=n_fft, hop=hop, n_mels=n_mels)
    return {
        "mel_dist": float(np.mean(np.abs(a - b))),
        "chroma_sim": _cosine(chroma_profile(x, sr, n_fft=n_fft, hop=hop), chroma_profile(y, sr, n_fft=n_fft, hop=hop)),
    }


__all__ = ["audio_similarity", "chroma_profile", "generated_span", "normalized_log_mel"]
