"""Spectral helpers on CPU or GPU alike: ``torch.stft`` with librosa's mel filterbank.

(torchaudio is not used: its PyPI wheels are CUDA builds that fail to import beside a CPU
torch.)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> NDArray[np.float32]:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def log_mel(audio: NDArray[np.float32], *, sr: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 64, device: str | None = None) -> NDArray[np.float32]:
    """Log-mel spectrogram in dB, shape ``[n_mels, frames]`` (centered frames, Hann window)."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(audio, dtype=np.float32), device=device or "cpu")
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft, device=x.device), center=True, return_complex=True)
    power = spec.abs() ** 2
    mel = torch.as_tensor(mel_filterbank(sr, n_fft, n_mels), device=x.device) @ power
    return (10.0 * torch.log10(mel.clamp_min(1e-10))).cpu().numpy()
