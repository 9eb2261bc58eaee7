"""Adapter for real diffusers text-to-audio checkpoints (AudioLDM, MusicLDM, AudioLDM2).

A checkpoint folder written by ``DiffusionPipeline.save_pretrained`` (``model_index.json``
plus one subfolder per component, safetensors weights) is loaded with the pipeline class its
``model_index.json`` names. A clip goes through the path the model was trained on:

1. waveform -> resampled to the vocoder's rate, mean removed and peak-scaled to 0.5 (the
   AudioLDM/MusicLDM training preprocessing; ``normalize_wav=False`` turns it off), zero
   padded or cut to ``n_frames * hop`` samples;
2. -> log-mel ``[n_frames, n_mels]`` with the vocoder's mel settings (``model_in_dim`` bins,
   hop = product of ``upsample_rates``, its ``sampling_rate``), a 1024-point Hann STFT with
   reflect padding of ``(n_fft - hop) / 2`` and no centring, Slaney mel filters on
   ``[fmin, fmax]``, magnitude (not power) spectrogram, ``log(max(mel, 1e-5))``; time runs
   along the image height, as in the pipelines' ``decode_latents`` -> vocoder path;
3. -> VAE latent ``x0 = scaling_factor * E[q(z | mel)]`` (or a sample seeded by the clip
   hash with ``latent="sample"``), shape ``[C, n_frames / f, n_mels / f]``.

Evidence per clip (:class:`core.evidence.DiffusionEvidence`) is then computed as in
:mod:`core.targets.diffusion_audio` (the audio generative MIA paper's denoising losses at
several timesteps, SecMI's step error), with the same seeded noise draws and helpers:

* ``loss_cond[t, k] = mean((f(x_t, t, c) - target)^2)`` with
  ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps_k`` (``scheduler.add_noise``; ``a`` is the
  scheduler's ``alphas_cumprod``), ``c`` the caption encoded by the pipeline's own prompt
  encoder, and ``target`` = ``eps_k`` (``epsilon``), ``sqrt(a_t) eps_k - sqrt(1 - a_t) x0``
  (``v_prediction``, ``scheduler.get_velocity``) or ``x0`` (``sample``), read from the
  scheduler config. The UNet sees the variance-preserving ``x_t`` whatever scheduler class
  the folder ships, because sigma-parametrized schedulers (LMS, Euler) only rescale it in
  ``scale_model_input`` to this same input.
* ``loss_uncond``: the same with the empty caption's embeddings (the pipelines' classifier-free
  guidance branch).
* ``step_error[t]``: DDIM (eta = 0) step to ``max(t - STEP_DELTA, 0)`` and inversion back,
  conditional, from ``x_t`` built with ``eps_0``.
* ``pia[t]`` (with ``EvidenceConfig.pia``): PIA on the latents, conditional
  (:func:`core.targets.diffusion_audio.pia_distances`).

Lower losses / step errors mean "member". ``StableAudioPipeline`` is refused (see
:data:`STABLE_AUDIO_REFUSAL`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from core.config import Config
from core.registry import Registry
from core.runtime.device import default_dtype, resolve_device
from core.targets.base import ClipInput, EvidenceConfig, Family
from core.targets.diffusion_audio import (
    DEFAULT_TIMESTEPS, STEP_DELTA, clip_noise, noise_seed, pia_distances, split_prediction,
)
from core.evidence import ClipEvidence, DiffusionEvidence
from core.targets.fingerprint import folder_fingerprint

ADAPTER_VERSION = 1
LOG_FLOOR = 1e-5

STABLE_AUDIO_REFUSAL = (
    "StableAudioPipeline is not supported: its DiT is trained with a continuous-time "
    "v-objective (sigma-parametrized, EDM-style preconditioning in the scheduler) on Oobleck "
    "waveform latents with seconds_start/seconds_end conditioning, so the discrete-timestep "
    "denoising losses this adapter computes (alphas_cumprod, integer t) are not its training "
    "loss. Supported: " + ", ".join(("AudioLDMPipeline", "AudioLDM2Pipeline", "MusicLDMPipeline"))
)

Conditioning = dict[str, torch.Tensor | None]


# ---------------------------------------------------------------------------- mel front end


@dataclass(frozen=True)
class MelSpec(Config):
    """The log-mel features a latent audio diffusion model's VAE was trained on.

    Defaults are AudioLDM's (16 kHz, 64 bins, hop 160, 1024-point window, 0-8 kHz).
    """

    sr: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    win_length: int = 1024
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0


@dataclass(frozen=True)
class AudioFrontEnd(Config):
    """Clip -> fixed-size log-mel image -> VAE latent settings.

    n_frames : mel frames per clip (a multiple of the VAE's downsampling factor).
    normalize_wav : remove the mean and scale the peak to 0.5 first (AudioLDM training).
    latent : ``"mean"`` of the VAE posterior, or a ``"sample"`` seeded by the clip hash.
    """

    mel: MelSpec
    n_frames: int
    normalize_wav: bool = True
    latent: Literal["mean", "sample"] = "mean"


def mel_filters(spec: MelSpec) -> torch.Tensor:
    """Slaney-normalized mel filter bank, float32 ``[n_mels, n_fft // 2 + 1]``."""
    import librosa

    fb = librosa.filters.mel(sr=spec.sr, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax)
    return torch.from_numpy(fb).float()


def log_mel(audio: np.ndarray, *, spec: MelSpec, n_frames: int, normalize_wav: bool = True) -> torch.Tensor:
    """AudioLDM-style log-mel spectrogram of one clip, float32 ``[n_frames, n_mels]``.

    Parameters
    ----------
    audio : mono waveform ``[N]`` at ``spec.sr``.
    spec : mel settings.
    n_frames : output frames; the waveform is zero padded or cut to ``n_frames * hop`` samples.
    normalize_wav : subtract the mean and scale the peak to 0.5 before padding.
    """
    y = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
    if normalize_wav and y.numel():
        y = y - y.mean()
        y = 0.5 * y / (y.abs().max() + 1e-8)
    n = n_frames * spec.hop_length
    y = torch.nn.functional.pad(y[:n], (0, max(0, n - y.numel())))
    pad = (spec.n_fft - spec.hop_length) // 2
    # reflect padding instead of centring keeps exactly n / hop frames (AudioLDM's TacotronSTFT)
    y = torch.nn.functional.pad(y[None, None], (pad, pad), mode="reflect")[0, 0]
    stft = torch.stft(
        y, spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length,
        window=torch.hann_window(spec.win_length), center=False, return_complex=True,
    )
    mel = mel_filters(spec) @ stft.abs()
    return torch.log(mel.clamp_min(LOG_FLOOR)).T[:n_frames].contiguous()


# ---------------------------------------------------------------------------- pipeline kinds


@dataclass(frozen=True)
class _Kind:
    """How one pipeline class conditions its UNet.

    encode : ``(pipe, captions, device) -> Conditioning`` (UNet keyword arguments, batch first).
    """

    name: str
    encode: Callable[[Any, Sequence[str], torch.device], Conditioning]


_KINDS: Registry[_Kind] = Registry("diffusers pipeline class")


def _register_kind(name: str) -> Callable[[Callable], Callable]:
    return _KINDS.decorator(name, lambda fn: _Kind(name, fn))


def supported_pipelines() -> list[str]:
    """Names of the diffusers pipeline classes this adapter loads."""
    return _KINDS.names()


@_register_kind("AudioLDMPipeline")
def _encode_audioldm(pipe, captions: Sequence[str], device: torch.device) -> Conditioning:
    """AudioLDM: the CLAP text embedding conditions the UNet as its class labels."""
    emb = pipe._encode_prompt(list(captions), device, 1, False)
    return {"encoder_hidden_states": None, "class_labels": emb}


@_register_kind("MusicLDMPipeline")
def _encode_musicldm(pipe, captions: Sequence[str], device: torch.device) -> Conditioning:
    """MusicLDM: the normalized CLAP text projection conditions the UNet as its class labels."""
    # MusicLDMPipeline._encode_prompt predates transformers 5, where get_text_features returns
    # a model output (pooler_output = the normalized projection) instead of a tensor, so the
    # same steps are taken here for both return types.
    tok = pipe.tokenizer(
        list(captions), padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    )
    enc = pipe.text_encoder
    ids, mask = tok.input_ids.to(device), tok.attention_mask.to(device)
    if hasattr(enc, "get_text_features"):
        out = enc.get_text_features(ids, attention_mask=mask)
        emb = out.pooler_output if hasattr(out, "pooler_output") else out
    else:
        emb = torch.nn.functional.normalize(enc(ids, attention_mask=mask).text_embeds, dim=-1)
    return {"encoder_hidden_states": None, "class_labels": emb}


@_register_kind("AudioLDM2Pipeline")
def _encode_audioldm2(pipe, captions: Sequence[str], device: torch.device) -> Conditioning:
    """AudioLDM2: GPT-2 generated embeddings and T5 embeddings (with their mask) condition the UNet."""
    # One caption at a time: the T5 branch pads to the longest prompt of a call and GPT-2
    # generates from it, so encoding a batch would make a clip's evidence depend on its batch.
    embs, masks, gens = [], [], []
    for c in captions:
        e, m, g = pipe.encode_prompt([c], device, 1, False, transcription=[c])
        embs.append(e[0])
        masks.append(m[0])
        gens.append(g[0])
    width = max(e.shape[0] for e in embs)
    emb = torch.zeros((len(embs), width, embs[0].shape[-1]), dtype=embs[0].dtype, device=device)
    mask = torch.zeros((len(embs), width), dtype=torch.long, device=device)
    for i, (e, m) in enumerate(zip(embs, masks)):
        emb[i, : e.shape[0]] = e
        mask[i, : m.shape[0]] = m
    return {"encoder_hidden_states": torch.stack(gens), "encoder_hidden_states_1": emb,
            "encoder_attention_mask_1": mask}


def _cat_conditioning(parts: Sequence[Conditioning]) -> Conditioning:
    """Row-concatenate conditionings; sequences of different lengths are zero padded, and
    their attention masks with them (padded keys are masked out, so results do not change)."""
    out: Conditioning = {}
    for key in parts[0]:
        vals = [p[key] for p in parts]
        if vals[0] is None:
            out[key] = None
            continue
        if vals[0].ndim >= 2 and len({v.shape[1] for v in vals}) > 1:
            width = max(v.shape[1] for v in vals)
            vals = [torch.nn.functional.pad(v, (0, 0) * (v.ndim - 2) + (0, width - v.shape[1])) for v in vals]
        out[key] = torch.cat(vals)
    return out


def _repeat(cond: Conditioning, k: int) -> Conditioning:
    return {key: None if v is None else v.repeat_interleave(k, 0) for key, v in cond.items()}


# ---------------------------------------------------------------------------- loading


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def check_safetensors(folder: Path) -> None:
    """Raise ``ValueError`` if a component folder has weights but none in safetensors."""
    bad = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        weights = [p for p in sub.iterdir() if p.suffix in _WEIGHT_SUFFIXES]
        if weights and not any(p.suffix == ".safetensors" for p in weights):
            bad.append(f"{sub.name}/ ({', '.join(sorted(p.name for p in weights))})")
    if bad:
        raise ValueError(
            f"{folder}: weights load from safetensors only; no .safetensors file in " + "; ".join(bad)
            + ". Convert them (e.g. DiffusionPipeline.save_pretrained(..., safe_serialization=True))."
        )


def pipeline_class_name(folder: Path) -> str:
    """The ``_class_name`` recorded in ``model_index.json``."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        raise ValueError(f"{folder}: no model_index.json, not a diffusers pipeline folder")
    return str(json.loads(index.read_text())["_class_name"])


def front_end_for(pipe, *, n_frames: int | None = None, n_fft: int = 1024, fmin: float = 0.0,
                  fmax: float | None = None, normalize_wav: bool = True,
                  latent: Literal["mean", "sample"] = "mean") -> AudioFrontEnd:
    """The mel front end a loaded pipeline implies (see the module docstring).

    ``n_frames`` defaults to the pipeline's default generation length
    (``unet.config.sample_size * vae_scale_factor``).
    """
    voc = pipe.vocoder.config
    hop = int(np.prod(voc.upsample_rates))
    sr = int(voc.sampling_rate)
    spec = MelSpec(sr=sr, n_fft=n_fft, hop_length=hop, win_length=n_fft, n_mels=int(voc.model_in_dim),
                   fmin=fmin, fmax=float(fmax if fmax is not None else sr / 2))
    f = int(pipe.vae_scale_factor)
    n = int(n_frames or pipe.unet.config.sample_size * f)
    if n % f:
        raise ValueError(f"n_frames={n} must be a multiple of the VAE downsampling factor {f}")
    if n * hop <= (n_fft - hop) // 2:
        raise ValueError(f"n_frames={n} is too short for n_fft={n_fft} (hop {hop})")
    if latent not in ("mean", "sample"):
        raise ValueError(f"latent must be 'mean' or 'sample', not {latent!r}")
    return AudioFrontEnd(spec, n, normalize_wav, latent)


# ---------------------------------------------------------------------------- the target


class DiffusersAudioTarget:
    """A diffusers text-to-audio pipeline as an audit target (family ``"diffusion"``).

    Parameters
    ----------
    spec : the name the user loaded it by.
    pipe : the loaded pipeline (its class must be one of :func:`supported_pipelines`).
    front_end : clip -> latent settings.
    fingerprint : weights + config + adapter settings hash.
    device, dtype : where and in which precision the UNet, VAE and text encoders run.
    batch_size : clips per batch (each clip costs ``2 * n_noise`` UNet rows per timestep);
        halved on CUDA out-of-memory errors.
    """

    family: Family = "diffusion"
    adapter = "diffusers_audio"
    evidence_reads = ("timesteps", "n_noise", "pia", "seed")
    """The evidence depends on the timesteps, the noise draws and their seed, and whether PIA
    is measured (never a text mode)."""

    def __init__(self, spec: str, pipe, front_end: AudioFrontEnd, fingerprint: str, *,
                 device: torch.device, dtype: torch.dtype, batch_size: int = 4) -> None:
        name = type(pipe).__name__
        self.kind = _KINDS.get(name)  # an unsupported pipeline class raises, listing the supported ones
        self.spec = spec
        self.pipe = pipe
        self.front_end = front_end
        self.fingerprint = fingerprint
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    @property
    def prediction_type(self) -> str:
        return str(self.pipe.scheduler.config.prediction_type)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.pipe.scheduler.config.num_train_timesteps)

    def mels(self, clips: Sequence[ClipInput]) -> torch.Tensor:
        """Log-mel images, float32 ``[B, 1, n_frames, n_mels]`` on the CPU."""
        fe = self.front_end
        out = []
        for c in clips:
            audio = np.asarray(c.audio, dtype=np.float32)
            if c.sr != fe.mel.sr:
                import librosa

                audio = librosa.resample(audio, orig_sr=c.sr, target_sr=fe.mel.sr)
            out.append(log_mel(audio, spec=fe.mel, n_frames=fe.n_frames, normalize_wav=fe.normalize_wav))
        return torch.stack(out)[:, None]

    @torch.no_grad()
    def latents(self, clips: Sequence[ClipInput], *, seed: int = 0) -> torch.Tensor:
        """Scaled VAE latents ``x0``, ``[B, C, n_frames / f, n_mels / f]`` in the model dtype.

        Each clip is encoded on its own so that its latent never depends on its batch
        (``latent="sample"`` draws from a generator seeded by the clip hash and ``seed``).
        """
        vae = self.pipe.vae
        out = []
        for c, mel in zip(clips, self.mels(clips)):
            dist = vae.encode(mel[None].to(self.device, self.dtype)).latent_dist
            if self.front_end.latent == "mean":
                z = dist.mean
            else:
                gen = torch.Generator().manual_seed(noise_seed(c.clip_hash, seed) ^ 0x5A17)
                z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(dist.mean)
            out.append(z[0] * vae.config.scaling_factor)
        return torch.stack(out)

    def conditioning(self, captions: Sequence[str]) -> Conditioning:
        """UNet conditioning for ``captions`` from the pipeline's own prompt encoder."""
        with torch.no_grad():
            cond = self.kind.encode(self.pipe, list(captions), self.device)
        return {
            k: None if v is None else v.to(self.device, self.dtype if v.is_floating_point() else v.dtype)
            for k, v in cond.items()
        }

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The UNet's raw prediction for noisy latents ``x_t [N, C, H, W]`` at timesteps ``t [N]``."""
        return self.pipe.unet(x_t, t, **cond).sample

    @torch.no_grad()
    def _batch(self, clips: Sequence[ClipInput], timesteps: tuple[int, ...], n_noise: int, seed: int,
               pia: bool = False) -> list[DiffusionEvidence]:
        B, K, T = len(clips), n_noise, len(timesteps)
        x0 = self.latents(clips, seed=seed).float()
        shape = tuple(x0.shape[1:])
        eps = torch.stack([clip_noise(c.clip_hash, seed=seed, n=K, shape=shape) for c in clips]).to(self.device)
        cond = self.conditioning([c.text for c in clips])
        unc = self.conditioning([""] * B)
        both = _cat_conditioning([_repeat(cond, K), _repeat(unc, K)])
        x0k = x0.repeat_interleave(K, 0)
        epsk = eps.reshape(B * K, *shape)
        ac = self.pipe.scheduler.alphas_cumprod.to(self.device, torch.float32)
        loss_c = torch.zeros((B, T, K), dtype=torch.float64)
        loss_u = torch.zeros((B, T, K), dtype=torch.float64)
        step = torch.zeros((B, T), dtype=torch.float64)
        pt = self.prediction_type
        for j, tv in enumerate(timesteps):
            t = torch.full((B * K,), int(tv), dtype=torch.long, device=self.device)
            a = ac[t].view(-1, *([1] * len(shape)))
            x_t = a.sqrt() * x0k + (1 - a).sqrt() * epsk
            if pt == "epsilon":
                target = epsk
            elif pt == "v_prediction":
                target = a.sqrt() * epsk - (1 - a).sqrt() * x0k
            elif pt == "sample":
                target = x0k
            else:
                raise ValueError(f"unsupported prediction_type {pt!r}; valid: epsilon, v_prediction, sample")
            out = self.denoise(torch.cat([x_t, x_t]).to(self.dtype), torch.cat([t, t]), both).float()
            err = (out - torch.cat([target, target])).double().square().mean(dim=(1, 2, 3))
            loss_c[:, j] = err[: B * K].view(B, K).cpu()
            loss_u[:, j] = err[B * K:].view(B, K).cpu()
            # SecMI-style round trip from the k = 0 draw, as in core.targets.diffusion_audio
            xt0 = x_t.view(B, K, *shape)[:, 0]
            tb = torch.full((B,), int(tv), dtype=torch.long, device=self.device)
            sb = (tb - STEP_DELTA).clamp_min(0)
            o_t = self.denoise(xt0.to(self.dtype), tb, cond).float()
            e_t, x0_t = split_prediction(o_t, xt0, tb, ac, pt)
            a_s, a_t = ac[sb].view(-1, 1, 1, 1), ac[tb].view(-1, 1, 1, 1)
            x_s = a_s.sqrt() * x0_t + (1 - a_s).sqrt() * e_t
            o_s = self.denoise(x_s.to(self.dtype), sb, cond).float()
            e_s, x0_s = split_prediction(o_s, x_s, sb, ac, pt)
            x_back = a_t.sqrt() * x0_s + (1 - a_t).sqrt() * e_s
            step[:, j] = (x_back - xt0).double().square().mean(dim=(1, 2, 3)).cpu()
        ts = np.asarray(timesteps, dtype=np.int64)
        pias = pia_distances(lambda x, t: self.denoise(x.to(self.dtype), t, cond), x0, timesteps if pia else (), ac, pt)
        return [DiffusionEvidence(ts, loss_c[b].numpy(), loss_u[b].numpy(), step[b].numpy(), pias[b].numpy())
                for b in range(B)]

    def evidence(self, clips: Sequence[ClipInput], config: EvidenceConfig, *, batch_size: int | None = None
                 ) -> list[ClipEvidence]:
        """Denoising losses and step errors (and PIA distances) of each clip, in order (see
        the module docstring).

        Uses ``config.timesteps`` (default :data:`core.targets.diffusion_audio.DEFAULT_TIMESTEPS`),
        ``config.n_noise``, ``config.pia`` and ``config.seed``. A clip's evidence does not depend on the
        batch size; on a CUDA out-of-memory error the batch is halved and retried.
        """
        timesteps = tuple(int(t) for t in (config.timesteps or DEFAULT_TIMESTEPS))
        bad = [t for t in timesteps if not 0 <= t < self.num_train_timesteps]
        if bad:
            raise ValueError(f"timesteps {bad} outside [0, {self.num_train_timesteps})")
        if config.n_noise < 1:
            raise ValueError("n_noise must be at least 1")
        bs = max(1, int(batch_size or self.batch_size))
        out: list[ClipEvidence] = []
        i = 0
        while i < len(clips):
            chunk = list(clips[i: i + bs])
            try:
                evs = self._batch(chunk, timesteps, config.n_noise, config.seed, config.pia)
            except torch.OutOfMemoryError:
                if bs == 1:
                    raise
                bs //= 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            out.extend(ClipEvidence(c.clip_hash, diffusion=ev, text=c.text) for c, ev in zip(chunk, evs))
            i += len(chunk)
        return out

    def unload(self) -> None:
        self.pipe.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def load_pipeline(folder: str | Path, *, device: str | None = None, dtype: torch.dtype | None = None):
    """A supported diffusers text-to-audio pipeline from a local folder (safetensors only),
    in eval mode on ``device``. Returns ``(pipe, class name, device, dtype)``.

    Raises ``ValueError`` for a folder that is not a supported pipeline (Stable Audio with
    the reason) or weights not in safetensors.
    """
    folder = Path(folder)
    name = pipeline_class_name(folder)
    if name == "StableAudioPipeline":
        raise ValueError(STABLE_AUDIO_REFUSAL)
    if name not in _KINDS:
        raise _KINDS.unknown(name, extra=f" (the pipeline in {folder})")
    check_safetensors(folder)
    dev = resolve_device(device)
    dtype = dtype or default_dtype(dev)

    import diffusers

    cls = getattr(diffusers, name)
    overrides: dict[str, Any] = {}
    index = json.loads((folder / "model_index.json").read_text())
    if name == "AudioLDM2Pipeline" and list(index.get("language_model", []))[-1:] == ["GPT2Model"]:
        # Published AudioLDM2 folders declare a bare GPT2Model; under transformers 5 only the
        # generation-capable GPT2LMHeadModel (same weights, tied head) runs the pipeline's
        # language-model step.
        from transformers import GPT2LMHeadModel

        overrides["language_model"] = GPT2LMHeadModel.from_pretrained(
            str(folder / "language_model"), use_safetensors=True, dtype=dtype
        )
    pipe = cls.from_pretrained(str(folder), use_safetensors=True, local_files_only=True, dtype=dtype, **overrides)
    pipe.to(dev)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return pipe, name, dev, dtype


def load_pipeline_target(path: str | Path, *, device: str | None = None, **options: Any) -> DiffusersAudioTarget:
    """Load a local diffusers text-to-audio pipeline folder as an audit target.

    Parameters
    ----------
    path : folder with ``model_index.json`` (AudioLDM, MusicLDM or AudioLDM2 pipeline),
        weights in safetensors.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None``/``"auto"`` picks CUDA when present.
    **options
        dtype : torch dtype (default float32 on CPU, bfloat16 on CUDA or float16 without bf16).
        batch_size : clips per batch (default 4).
        n_frames, n_fft, fmin, fmax, normalize_wav, latent : see :func:`front_end_for`.
        spec : display name (default: the path).

    Raises
    ------
    ValueError
        Not a pipeline folder, an unsupported pipeline class (Stable Audio included, with the
        reason), weights not in safetensors, or an unknown option.
    """
    opts = dict(options)
    fe_keys = {"n_frames", "n_fft", "fmin", "fmax", "normalize_wav", "latent"}
    known = fe_keys | {"dtype", "batch_size", "spec"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown options {unknown}; valid: {', '.join(sorted(known))}")
    folder = Path(path)
    pipe, name, dev, dtype = load_pipeline(folder, device=device, dtype=opts.pop("dtype", None))
    fe = front_end_for(pipe, **{k: opts[k] for k in fe_keys if k in opts})
    extra = {"adapter": DiffusersAudioTarget.adapter, "version": ADAPTER_VERSION, "pipeline": name,
             "dtype": str(dtype).replace("torch.", ""), "front_end": fe.to_dict()}
    return DiffusersAudioTarget(
        str(opts.get("spec") or folder), pipe, fe, folder_fingerprint(folder, extra),
        device=dev, dtype=dtype, batch_size=int(opts.get("batch_size") or 4),
    )


__all__ = [
    "load_pipeline",
    "AudioFrontEnd", "DiffusersAudioTarget", "MelSpec", "STABLE_AUDIO_REFUSAL", "check_safetensors",
    "default_dtype", "front_end_for", "load_pipeline_target", "log_mel", "mel_filters", "pipeline_class_name",
    "resolve_device", "supported_pipelines",
]
