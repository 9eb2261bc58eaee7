"""Audio from the built-in text-to-audio targets: sampling and log-mel inversion.

* :func:`sample_mel_patches`: DDIM samples of a mel-patch diffusion model
  (:class:`core.targets.diffusion_audio.MelDiffusionTarget`) with classifier-free guidance.
* :func:`mel_to_audio`: a waveform whose mel power follows a log-mel spectrogram (the
  filterbank's pseudo-inverse and seeded Griffin-Lim), shared by the diffusion and the
  autoregressive targets (whose codes are log-mel centroids).
* :func:`fit_length`: cut, or pad with silence, to a length.

Everything is seeded per generation, so a generation never depends on the batch it is drawn in
(up to float rounding of batched matrix products).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from core.config import DEFAULT_GEN_STEPS
from core.targets.codebook import MelConfig, mel_filters

if TYPE_CHECKING:
    from core.targets.diffusion_audio import MelDiffusionTarget

DEFAULT_STEPS = DEFAULT_GEN_STEPS
DEFAULT_GUIDANCE = 3.0
GRIFFIN_LIM_ITERS = 32
SYNTH_HOP = 256


def fit_length(audio: NDArray[np.floating], n: int) -> NDArray[np.float32]:
    """``audio`` as float32 mono, exactly ``n`` samples: cut, or padded with zeros at the end."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.shape[0] >= n:
        return audio[:n]
    return np.pad(audio, (0, n - audio.shape[0]))


def check_requests(captions: Sequence[str], n_samples: Sequence[int], seeds: Sequence[int]) -> None:
    """Refuse a ``generate`` call whose captions, lengths and seeds are not one each per generation."""
    if not len(captions) == len(n_samples) == len(seeds):
        raise ValueError(f"{len(captions)} captions, {len(n_samples)} lengths and {len(seeds)} seeds: one each per generation")


def log_mel_to_clip(log_mel_power: NDArray[np.floating], mel: MelConfig, *, n_native: int, n_samples: int, sr: int,
                    seed: int) -> NDArray[np.float32]:
    """A generated log-mel as the clip ``generate`` returns: :func:`mel_to_audio` ``n_native``
    samples long at the model's rate, resampled to ``sr`` and fitted to ``n_samples``."""
    from core.data.audio import to_analysis

    audio = mel_to_audio(log_mel_power, mel, n_samples=n_native, seed=seed)
    return fit_length(to_analysis(audio[:, None], mel.sr, sr), n_samples)


def mel_to_audio(log_mel_power: NDArray[np.floating], mel: MelConfig, *, n_samples: int, seed: int, hop: int = SYNTH_HOP,
                 n_iter: int = GRIFFIN_LIM_ITERS) -> NDArray[np.float32]:
    """Waveform whose mel power follows ``log_mel_power`` (``[n_mels, frames]``, natural log of
    power + ``mel.floor`` at ``mel.hop_length``), ``n_samples`` long at ``mel.sr``.

    The mel frames are interpolated linearly onto a ``hop``-sample grid (the analysis hop
    may exceed the window), inverted to a linear magnitude by the filterbank's pseudo-inverse
    (clipped at zero) and phased by Griffin-Lim seeded with ``seed``. The result is scaled to
    a peak of 0.5 (silence stays silence).
    """
    import librosa

    power = np.maximum(np.exp(np.asarray(log_mel_power, dtype=np.float64)) - mel.floor, 0.0)
    n_frames = power.shape[1]
    src = np.arange(n_frames) * mel.hop_length
    dst = np.arange(1 + n_samples // hop) * hop
    fine = np.stack([np.interp(dst, src, row) for row in power]).astype(np.float32)
    mag = np.sqrt(np.maximum(np.linalg.pinv(mel_filters(mel).numpy()) @ fine, 0.0))
    audio = librosa.griffinlim(mag, n_iter=n_iter, hop_length=hop, win_length=mel.n_fft, n_fft=mel.n_fft,
                               length=n_samples, random_state=np.random.RandomState(seed % 2**32))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / peak * 0.5 if peak > 0 else audio).astype(np.float32)


def sample_mel_patches(target: MelDiffusionTarget, captions: Sequence[str], *, seeds: Sequence[int], steps: int,
                       guidance: float) -> NDArray[np.float32]:
    """DDIM (eta = 0) samples of a mel-patch diffusion model with classifier-free guidance,
    de-normalized log-mel ``[B, n_mels, n_frames]`` (one batch).

    The model output is ``uncond + guidance * (cond - uncond)`` (the empty caption is the
    unconditional one). Each sample's starting noise is drawn on the CPU from its own seed,
    so a sample does not depend on the other captions of its batch.
    """
    import torch
    from diffusers import DDIMScheduler

    patch = target.patch
    sched = DDIMScheduler.from_config(target.scheduler.config, clip_sample=False)
    sched.set_timesteps(steps)
    shape = (1, patch.mel.n_mels, patch.n_frames)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s % 2**63)) for s in seeds]).to(target.device)
    b = len(captions)
    with torch.inference_mode():
        states, mask = target.conditioner(list(captions) + [""] * b)
        for t in sched.timesteps:
            tt = torch.full((2 * b,), int(t), dtype=torch.long, device=target.device)
            out = target.unet(x.repeat(2, 1, 1, 1), tt, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            cond, uncond = out.chunk(2)
            x = sched.step(uncond + guidance * (cond - uncond), t, x).prev_sample
    return x[:, 0].float().cpu().numpy() * patch.std + patch.mean


__all__ = ["DEFAULT_GUIDANCE", "DEFAULT_STEPS", "GRIFFIN_LIM_ITERS", "SYNTH_HOP", "check_requests", "fit_length",
           "log_mel_to_clip", "mel_to_audio", "sample_mel_patches"]
