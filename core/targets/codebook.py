"""Tokenizers for the built-in text-to-audio reference targets.

* :func:`log_mel`: log-mel frames from ``torch.stft`` and a ``librosa`` mel filterbank.
* :class:`Codebook`: an audio tokenizer, log-mel frames quantized to the nearest centroid of
  a k-means codebook (a stand-in for the neural codecs of MusicGen / AudioGen).
* :class:`CharVocab`: a character-level caption tokenizer shared by the autoregressive and
  the diffusion reference targets.

The codebook is stored as safetensors (centroids and normalization) plus a JSON config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from core.config import Config

CODEBOOK_WEIGHTS = "codebook.safetensors"
CODEBOOK_CONFIG = "codebook.json"


@dataclass(frozen=True)
class MelConfig(Config):
    """Log-mel analysis settings.

    Frames are ``sr / hop_length`` per second (25 Hz with the defaults).
    ``log(mel_power + floor)`` is returned, natural log.
    """

    sr: int = 16000
    n_fft: int = 1024
    hop_length: int = 640
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float = 8000.0
    floor: float = 1e-5


_FILTERS: dict[MelConfig, torch.Tensor] = {}


def mel_filters(config: MelConfig) -> torch.Tensor:
    """The (cached) librosa mel filterbank of ``config``, ``[n_mels, n_fft // 2 + 1]``."""
    if config not in _FILTERS:
        import librosa

        fb = librosa.filters.mel(
            sr=config.sr, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
        )
        _FILTERS[config] = torch.from_numpy(np.asarray(fb, dtype=np.float32))
    return _FILTERS[config]


def log_mel(audio: NDArray[np.floating] | torch.Tensor, *, config: MelConfig = MelConfig()) -> torch.Tensor:
    """Log-mel spectrogram of a mono clip.

    Parameters
    ----------
    audio : shape ``[n_samples]``, at ``config.sr``.
    config : analysis settings.

    Returns
    -------
    torch.Tensor
        float32, shape ``[n_frames, n_mels]`` with ``n_frames = 1 + n_samples // hop_length``
        (centered frames; clips shorter than one window are zero-padded first).
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).flatten()
    n = x.shape[0]
    if n < config.n_fft:
        # reflect padding needs more than n_fft / 2 samples; the frame count still follows n
        x = torch.nn.functional.pad(x, (0, config.n_fft - n))
    window = torch.hann_window(config.n_fft, dtype=torch.float32)
    spec = torch.stft(
        x, n_fft=config.n_fft, hop_length=config.hop_length, window=window, center=True,
        pad_mode="reflect", return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # [F, frames]
    mel = mel_filters(config) @ power
    out = torch.log(mel + config.floor).T.contiguous()
    return out[: 1 + n // config.hop_length]


class Codebook:
    """k-means codebook over standardized log-mel frames.

    Attributes
    ----------
    mel : analysis settings.
    centroids : float32 ``[n_codes, n_mels]`` in standardized space.
    mean, std : float32 ``[n_mels]`` frame standardization fitted with the centroids.
    """

    def __init__(self, mel: MelConfig, centroids: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel = mel
        self.centroids = centroids.float()
        self.mean = mean.float()
        self.std = std.float()

    @property
    def n_codes(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def frame_rate(self) -> float:
        return self.mel.sr / self.mel.hop_length

    @classmethod
    def fit(
        cls,
        clips: Sequence[NDArray[np.floating]],
        *,
        n_codes: int = 128,
        mel: MelConfig = MelConfig(),
        n_iter: int = 25,
        seed: int = 0,
        max_frames: int = 40000,
    ) -> "Codebook":
        """Fit the codebook with k-means++ initialization and Lloyd iterations.

        Parameters
        ----------
        clips : mono clips at ``mel.sr``, each ``[n_samples]``.
        n_codes : codebook size.
        n_iter : Lloyd iterations.
        seed : seeds the frame subsample and the k-means++ draws.
        max_frames : frames are subsampled (seeded) to at most this many.
        """
        frames = torch.cat([log_mel(c, config=mel) for c in clips], dim=0)
        gen = torch.Generator().manual_seed(seed)
        if frames.shape[0] > max_frames:
            frames = frames[torch.randperm(frames.shape[0], generator=gen)[:max_frames]]
        if frames.shape[0] < n_codes:
            raise ValueError(f"{frames.shape[0]} frames cannot fit {n_codes} codes")
        mean = frames.mean(0)
        std = frames.std(0).clamp_min(1e-3)
        z = ((frames - mean) / std).double()
        # k-means++: each new centroid drawn with probability proportional to squared distance
        c = [z[torch.randint(z.shape[0], (1,), generator=gen)].squeeze(0)]
        d2 = ((z - c[0]) ** 2).sum(1)
        for _ in range(1, n_codes):
            i = torch.multinomial((d2 / d2.sum()).float(), 1, generator=gen)
            c.append(z[i].squeeze(0))
            d2 = torch.minimum(d2, ((z - c[-1]) ** 2).sum(1))
        cent = torch.stack(c)
        for _ in range(n_iter):
            assign = torch.cdist(z, cent).argmin(1)
            sums = torch.zeros_like(cent).index_add_(0, assign, z)
            counts = torch.bincount(assign, minlength=n_codes).double()
            empty = counts == 0
            cent = torch.where(empty[:, None], cent, sums / counts.clamp_min(1)[:, None])
        return cls(mel, cent.float(), mean, std)

    def encode(self, audio: NDArray[np.floating]) -> NDArray[np.int64]:
        """Code ids of a clip's frames, shape ``[n_frames]`` (see :func:`log_mel`)."""
        z = (log_mel(audio, config=self.mel) - self.mean) / self.std
        return torch.cdist(z.double(), self.centroids.double()).argmin(1).numpy().astype(np.int64)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        save_file(
            {"centroids": self.centroids.contiguous(), "mean": self.mean.contiguous(), "std": self.std.contiguous()},
            str(folder / CODEBOOK_WEIGHTS),
        )
        (folder / CODEBOOK_CONFIG).write_text(json.dumps({"mel": self.mel.to_dict(), "n_codes": self.n_codes}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Codebook":
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg = json.loads((folder / CODEBOOK_CONFIG).read_text())
        t = load_file(str(folder / CODEBOOK_WEIGHTS))
        return cls(MelConfig(**cfg["mel"]), t["centroids"], t["mean"], t["std"])


# Lower-case letters, digits, space and common punctuation; anything else maps to UNK.
DEFAULT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'-()/&"


@dataclass(frozen=True)
class CharVocab(Config):
    """Character-level caption tokenizer.

    Ids: 0 = PAD, 1 = UNK, 2 = BOS, 3 = EOS (end of caption; also SEP before audio tokens),
    then one id per character of ``chars``. Captions are lower-cased and truncated to
    ``max_chars`` characters.
    """

    chars: str = DEFAULT_CHARS
    max_chars: int = 96

    PAD = 0
    UNK = 1
    BOS = 2
    EOS = 3
    N_SPECIAL = 4

    def __len__(self) -> int:
        return self.N_SPECIAL + len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text`` (no BOS/EOS), at most ``max_chars`` of them."""
        index = {ch: i + self.N_SPECIAL for i, ch in enumerate(self.chars)}
        return [index.get(ch, self.UNK) for ch in text.lower()[: self.max_chars]]
