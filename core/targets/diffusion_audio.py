"""Adapter for caption-conditioned mel-spectrogram diffusion models (AudioLDM / Tango style).

A clip becomes one fixed-size, normalized log-mel patch ``x0`` of shape ``[1, n_mels, n_frames]``
(the first ``n_frames`` frames; shorter clips are padded with the log of the silence floor).
The denoiser is a ``diffusers.UNet2DConditionModel`` cross-attending to the hidden states of
a character-level ``transformers.CLIPTextModel``; the noise schedule is the folder's
``diffusers.DDPMScheduler``.

Evidence per clip (:class:`core.evidence.DiffusionEvidence`), following the audio
generative MIA paper (denoising losses at several timesteps; intermediate ones are most
informative) and SecMI (Duan et al., 2023):

* ``loss_cond[t, k] = mean((f(x_t, t, c) - target)^2)`` with
  ``x_t = scheduler.add_noise(x0, eps_k, t)``, ``c`` the clip's caption and ``target`` the
  quantity the model predicts (``eps_k`` for ``epsilon``, ``scheduler.get_velocity(x0, eps_k, t)``
  for ``v_prediction``, ``x0`` for ``sample``); the mean runs over the patch's pixels.
  ``eps_k``, ``k < config.n_noise``, are standard normal draws seeded by the clip's content
  hash and ``config.seed`` (the same draws at every timestep and in every batching).
* ``loss_uncond``: the same with the empty caption.
* ``step_error[t]``: a deterministic round trip from ``x_t`` (built with ``eps_0``), conditional:
  one DDIM (eta = 0) reverse step to ``s = max(t - STEP_DELTA, 0)``,
  ``x_s = sqrt(a_s) x0_hat(x_t, t) + sqrt(1 - a_s) eps_hat(x_t, t)``, then one DDIM inversion
  step back, ``x_t' = sqrt(a_t) x0_hat(x_s, s) + sqrt(1 - a_t) eps_hat(x_s, s)``, where ``a`` is
  ``scheduler.alphas_cumprod`` and ``eps_hat`` / ``x0_hat`` are derived from the model output
  for its prediction type; ``step_error[t] = mean((x_t' - x_t)^2)``. (SecMI builds ``x_t`` by
  DDIM inversion from ``x0``; a fixed seeded noise draw keeps this at two model calls per t.)
* ``pia[t]`` (only with ``EvidenceConfig.pia``): PIA, the proximal initialization attack (Kong
  et al., ICLR 2024), conditional: ``eps_0 = eps_hat(x0, 0)``, the model's own noise estimate on
  the clean patch, replaces the random draw, ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps_0``, and
  ``pia[t] = sum |eps_hat(x_t, t) - eps_0|^4`` over the patch (the reference implementation's
  distance, ``lp = 4``). Deterministic: one model call per clip at ``t = 0`` and one per t.

Lower losses / step errors / PIA distances mean "member".

At the ``outputs`` access level the target only generates (:meth:`MelDiffusionTarget.generate`):
seeded DDIM sampling with classifier-free guidance, then the log-mel patch inverted to a
waveform (:mod:`core.targets.synthesis`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.config import Config
from core.targets.base import ClipInput, EvidenceConfig, Family
from core.targets.codebook import CharVocab, MelConfig, log_mel
from core.evidence import ClipEvidence, DiffusionEvidence
from core.targets.fingerprint import folder_fingerprint
from core.targets.synthesis import DEFAULT_GUIDANCE, DEFAULT_STEPS, check_requests, log_mel_to_clip, sample_mel_patches

DEFAULT_TIMESTEPS: tuple[int, ...] = (10, 50, 100, 200, 300, 500, 700)
STEP_DELTA = 10
PATCH_FILE = "patch.json"


@dataclass(frozen=True)
class PatchConfig(Config):
    """Clip -> normalized log-mel patch ``[1, mel.n_mels, n_frames]``.

    ``(log_mel - mean) / std`` with scalar ``mean`` / ``std`` fitted on the training clips.
    """

    mel: MelConfig = MelConfig(n_fft=1024, hop_length=1500, n_mels=32)
    n_frames: int = 32
    mean: float = 0.0
    std: float = 1.0
    vocab: CharVocab = CharVocab(max_chars=160)


def raw_patch(audio: np.ndarray, sr: int, *, config: PatchConfig) -> torch.Tensor:
    """Unnormalized log-mel patch, float32 ``[n_mels, n_frames]`` (first frames, padded)."""
    if sr != config.mel.sr:
        import librosa

        audio = librosa.resample(np.asarray(audio, dtype=np.float32), orig_sr=sr, target_sr=config.mel.sr)
    m = log_mel(audio, config=config.mel).T[:, : config.n_frames]
    pad = config.n_frames - m.shape[1]
    if pad > 0:
        m = torch.nn.functional.pad(m, (0, pad), value=float(np.log(config.mel.floor)))
    return m


def clip_patch(audio: np.ndarray, sr: int, *, config: PatchConfig) -> torch.Tensor:
    """Normalized patch ``x0``, float32 ``[1, n_mels, n_frames]``."""
    return ((raw_patch(audio, sr, config=config) - config.mean) / config.std)[None]


def caption_ids(captions: Sequence[str], vocab: CharVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """``[BOS, chars..., EOS]`` padded to the fixed width ``max_chars + 2`` (so a caption's
    encoding never depends on its batch): ``input_ids`` and ``attention_mask``, ``[B, L]``."""
    width = vocab.max_chars + 2
    ids = torch.full((len(captions), width), CharVocab.PAD, dtype=torch.long)
    mask = torch.zeros((len(captions), width), dtype=torch.long)
    for i, c in enumerate(captions):
        s = [CharVocab.BOS, *vocab.encode(c), CharVocab.EOS]
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def noise_seed(clip_hash: str, seed: int) -> int:
    """A 63-bit generator seed from a clip's content hash and the evidence seed."""
    return int(hashlib.sha256(f"{clip_hash}:{seed}".encode()).hexdigest()[:15], 16)


def clip_noise(clip_hash: str, *, seed: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The clip's fixed noise draws, float32 ``[n, *shape]`` (drawn on the CPU)."""
    gen = torch.Generator().manual_seed(noise_seed(clip_hash, seed))
    return torch.randn((n, *shape), generator=gen)


class TextConditioner(torch.nn.Module):
    """Caption -> cross-attention states with a character-level ``CLIPTextModel``."""

    def __init__(self, text_model: torch.nn.Module, vocab: CharVocab) -> None:
        super().__init__()
        self.text_model = text_model
        self.vocab = vocab

    def forward(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``states [B, L, D]`` and ``mask [B, L]`` for ``encoder_attention_mask``."""
        device = next(self.text_model.parameters()).device
        ids, mask = caption_ids(captions, self.vocab)
        ids, mask = ids.to(device), mask.to(device)
        return self.text_model(input_ids=ids, attention_mask=mask).last_hidden_state, mask


def _expand(a: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return a.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def split_prediction(
    out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps_hat, x0_hat)`` from a model output for the scheduler's prediction type.

    ``out``, ``x_t``: ``[B, C, H, W]``; ``t``: int64 ``[B]``.
    """
    a = _expand(alphas_cumprod, t, x_t)
    sa, s1 = a.sqrt(), (1 - a).sqrt()
    if prediction_type == "epsilon":
        return out, (x_t - s1 * out) / sa
    if prediction_type == "v_prediction":
        return sa * out + s1 * x_t, sa * x_t - s1 * out
    if prediction_type == "sample":
        return (x_t - sa * out) / s1, out
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; valid: epsilon, v_prediction, sample")


PIA_P = 4
"""Exponent of PIA's distance, as in its reference implementation (``lp=4``)."""


def pia_distances(
    denoise, x0: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """PIA's distance of each clip at each timestep, float64 ``[B, T]`` on the CPU.

    ``denoise(x, t)``: the model's raw output for inputs ``x [B, C, H, W]`` at int64
    timesteps ``t [B]``, conditioned as the caller wants; ``x0``: clean inputs. Model outputs
    are read as noise estimates for the scheduler's ``prediction_type`` (:func:`split_prediction`),
    so the distance is PIA's for an epsilon model and its noise-space equivalent otherwise.
    No ``timesteps``: ``[B, 0]``, and the model is not called.
    """
    B = x0.shape[0]
    if not timesteps:
        return torch.zeros((B, 0), dtype=torch.float64)
    zero = torch.zeros((B,), dtype=torch.long, device=x0.device)
    eps0, _ = split_prediction(denoise(x0, zero).float(), x0, zero, alphas_cumprod, prediction_type)
    out = torch.zeros((B, len(timesteps)), dtype=torch.float64)
    for j, tv in enumerate(timesteps):
        t = torch.full((B,), int(tv), dtype=torch.long, device=x0.device)
        a = _expand(alphas_cumprod, t, x0)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps0
        e_t, _ = split_prediction(denoise(x_t, t).float(), x_t, t, alphas_cumprod, prediction_type)
        out[:, j] = (e_t - eps0).double().abs().pow(PIA_P).flatten(1).sum(dim=1).cpu()
    return out


class MelDiffusionTarget:
    """A caption-conditioned mel diffusion model as an audit target (family ``"diffusion"``).

    Parameters
    ----------
    spec : the name the user loaded it by.
    unet : ``diffusers.UNet2DConditionModel`` over ``[B, 1, n_mels, n_frames]`` patches.
    conditioner : caption encoder.
    scheduler : ``diffusers.DDPMScheduler`` (its ``prediction_type`` selects the loss target).
    patch : patch settings.
    fingerprint : weights + config hash.
    """

    family: Family = "diffusion"
    adapter = "mel_diffusion"
    evidence_reads = ("timesteps", "n_noise", "pia", "seed")
    """The evidence depends on the timesteps, the noise draws and their seed, and whether PIA
    is measured (never a text mode)."""

    def __init__(
        self,
        spec: str,
        unet: torch.nn.Module,
        conditioner: TextConditioner,
        scheduler,
        patch: PatchConfig,
        fingerprint: str,
        *,
        device: str = "cpu",
        default_batch_size: int = 16,
    ) -> None:
        self.spec = spec
        self.unet = unet.eval().to(device)
        self.conditioner = conditioner.eval().to(device)
        self.scheduler = scheduler
        self.patch = patch
        self.fingerprint = fingerprint
        self.device = device
        self.default_batch_size = default_batch_size

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.config.prediction_type)

    def patches(self, clips: Sequence[ClipInput]) -> torch.Tensor:
        """Normalized ``x0`` patches, ``[B, 1, n_mels, n_frames]`` on the target's device."""
        return torch.stack([clip_patch(c.audio, c.sr, config=self.patch) for c in clips]).to(self.device)

    def _denoise(self, x_t: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample

    @torch.no_grad()
    def _batch(self, clips: Sequence[ClipInput], timesteps: tuple[int, ...], n_noise: int, seed: int,
               pia: bool = False) -> list[DiffusionEvidence]:
        B, K, T = len(clips), n_noise, len(timesteps)
        x0 = self.patches(clips)
        shape = tuple(x0.shape[1:])
        eps = torch.stack([clip_noise(c.clip_hash, seed=seed, n=K, shape=shape) for c in clips]).to(self.device)
        cond, cmask = self.conditioner([c.text for c in clips])
        unc, umask = self.conditioner([""] * B)
        # one UNet call per timestep: [cond draws..., uncond draws...], each B*K rows
        states = torch.cat([cond.repeat_interleave(K, 0), unc.repeat_interleave(K, 0)])
        masks = torch.cat([cmask.repeat_interleave(K, 0), umask.repeat_interleave(K, 0)])
        x0k = x0.repeat_interleave(K, 0)
        epsk = eps.reshape(B * K, *shape)
        loss_c = torch.zeros((B, T, K), dtype=torch.float64)
        loss_u = torch.zeros((B, T, K), dtype=torch.float64)
        step = torch.zeros((B, T), dtype=torch.float64)
        ac = self.scheduler.alphas_cumprod.to(self.device)
        for j, tv in enumerate(timesteps):
            t = torch.full((B * K,), int(tv), dtype=torch.long, device=self.device)
            x_t = self.scheduler.add_noise(x0k, epsk, t)
            if self.prediction_type == "epsilon":
                target = epsk
            elif self.prediction_type == "v_prediction":
                target = self.scheduler.get_velocity(x0k, epsk, t)
            else:
                target = x0k
            out = self._denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), states, masks)
            err = (out - torch.cat([target, target])).double().square().mean(dim=(1, 2, 3))
            loss_c[:, j] = err[: B * K].view(B, K).cpu()
            loss_u[:, j] = err[B * K :].view(B, K).cpu()
            # SecMI-style round trip from the k = 0 draw (see module docstring)
            xt0 = x_t.view(B, K, *shape)[:, 0]
            tb = torch.full((B,), int(tv), dtype=torch.long, device=self.device)
            sb = (tb - STEP_DELTA).clamp_min(0)
            e_t, x0_t = split_prediction(self._denoise(xt0, tb, cond, cmask), xt0, tb, ac, self.prediction_type)
            a_s, a_t = _expand(ac, sb, xt0), _expand(ac, tb, xt0)
            x_s = a_s.sqrt() * x0_t + (1 - a_s).sqrt() * e_t
            e_s, x0_s = split_prediction(self._denoise(x_s, sb, cond, cmask), x_s, sb, ac, self.prediction_type)
            x_back = a_t.sqrt() * x0_s + (1 - a_t).sqrt() * e_s
            step[:, j] = (x_back - xt0).double().square().mean(dim=(1, 2, 3)).cpu()
        ts = np.asarray(timesteps, dtype=np.int64)
        pias = pia_distances(lambda x, t: self._denoise(x, t, cond, cmask), x0, timesteps if pia else (), ac,
                             self.prediction_type)
        return [
            DiffusionEvidence(ts, loss_c[b].numpy(), loss_u[b].numpy(), step[b].numpy(), pias[b].numpy()) for b in range(B)
        ]

    def evidence(
        self, clips: Sequence[ClipInput], config: EvidenceConfig, *, batch_size: int | None = None
    ) -> list[ClipEvidence]:
        """Denoising losses and step errors (and PIA distances) of each clip, in order (see
        the module docstring).

        Uses ``config.timesteps`` (default :data:`DEFAULT_TIMESTEPS`), ``config.n_noise``,
        ``config.pia`` and ``config.seed``.
        """
        timesteps = tuple(int(t) for t in (config.timesteps or DEFAULT_TIMESTEPS))
        n_train = int(self.scheduler.config.num_train_timesteps)
        bad = [t for t in timesteps if not 0 <= t < n_train]
        if bad:
            raise ValueError(f"timesteps {bad} outside [0, {n_train})")
        if config.n_noise < 1:
            raise ValueError("n_noise must be at least 1")
        bs = batch_size or self.default_batch_size
        out: list[ClipEvidence] = []
        for i in range(0, len(clips), bs):
            chunk = list(clips[i : i + bs])
            for clip, ev in zip(chunk, self._batch(chunk, timesteps, config.n_noise, config.seed, config.pia)):
                out.append(ClipEvidence(clip.clip_hash, diffusion=ev, text=clip.text))
        return out

    def generate(self, captions: Sequence[str], *, n_samples: Sequence[int], sr: int, seeds: Sequence[int],
                 steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
                 batch_size: int | None = None) -> list[np.ndarray]:
        """One generation per caption (the :class:`core.targets.base.AudioGenerator` protocol).

        ``steps`` DDIM steps with classifier-free guidance ``guidance`` from the starting noise
        of seed ``seeds[i]`` (:func:`core.targets.synthesis.sample_mel_patches`); the
        de-normalized log-mel patch is inverted by Griffin-Lim seeded with ``seeds[i]``
        (:func:`core.targets.synthesis.mel_to_audio`, peak 0.5) at the model's rate, resampled
        to ``sr`` and fitted to ``n_samples[i]``. A patch covers ``n_frames * hop_length``
        samples (3 s for the zoo models): a longer request is padded with silence after it.
        ``batch_size`` captions are sampled at a time (default: all at once).

        Returns
        -------
        list of float32 ``[n_samples[i]]`` mono arrays at ``sr``.
        """
        check_requests(captions, n_samples, seeds)
        mel = self.patch.mel
        longest = self.patch.n_frames * mel.hop_length
        bs = batch_size or max(len(captions), 1)
        out: list[np.ndarray] = []
        for i in range(0, len(captions), bs):
            chunk_seeds = list(seeds[i : i + bs])
            patches = sample_mel_patches(self, list(captions[i : i + bs]), seeds=chunk_seeds, steps=steps, guidance=guidance)
            for patch, n, seed in zip(patches, n_samples[i : i + bs], chunk_seeds):
                n_native = min(int(round(n * mel.sr / sr)), longest)
                out.append(log_mel_to_clip(patch, mel, n_native=n_native, n_samples=n, sr=sr, seed=seed))
        return out

    def unload(self) -> None:
        self.unet.to("cpu")
        self.conditioner.to("cpu")
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def save_mel_diffusion(folder: Path, unet, text_model, scheduler, patch: PatchConfig) -> None:
    """Write ``unet/``, ``text_encoder/``, ``scheduler/`` (safetensors + configs) and ``patch.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(str(folder / "unet"), safe_serialization=True)
    text_model.save_pretrained(str(folder / "text_encoder"), safe_serialization=True)
    scheduler.save_pretrained(str(folder / "scheduler"))
    (folder / PATCH_FILE).write_text(json.dumps(patch.to_dict(), indent=2))


def load_mel_diffusion(folder: Path, *, device: str | None = None, spec: str | None = None) -> MelDiffusionTarget:
    """Load a folder written by :func:`save_mel_diffusion` (safetensors only)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    patch = PatchConfig.from_dict(json.loads((folder / PATCH_FILE).read_text()))
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), use_safetensors=True)
    text = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), use_safetensors=True)
    sched = DDPMScheduler.from_pretrained(str(folder / "scheduler"))
    return MelDiffusionTarget(
        spec or str(folder),
        unet,
        TextConditioner(text, patch.vocab),
        sched,
        patch,
        folder_fingerprint(folder),
        device=device or "cpu",
    )


__all__ = [
    "DEFAULT_TIMESTEPS", "MelDiffusionTarget", "PatchConfig", "STEP_DELTA", "TextConditioner", "caption_ids",
    "clip_noise", "clip_patch", "load_mel_diffusion", "noise_seed", "raw_patch", "save_mel_diffusion",
    "split_prediction",
]
