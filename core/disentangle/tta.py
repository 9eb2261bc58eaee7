"""Sound resynthesis (TTA): a clip's caption rendered by a text-to-audio model.

Two generators, chosen by the ``tta`` variant's ``generator`` option:

* ``zoo:<name>`` (default :data:`DEFAULT_GENERATOR`): a zoo mel-patch diffusion model.
  DDIM sampling with classifier-free guidance gives a normalized log-mel patch; it is
  de-normalized, the mel power is mapped back to a linear-frequency magnitude
  (pseudo-inverse of the same mel filterbank) on a finer time grid, and Griffin-Lim recovers a waveform (seeded, so a rerun gives the same audio).
* a local folder with a diffusers text-to-audio pipeline (``AudioLDMPipeline``,
  ``AudioLDM2Pipeline``, ``MusicLDMPipeline``: whatever :mod:`core.targets.diffusers_audio`
  loads), called with the caption, the clip's duration and a seeded generator.

The output has the original clip's length (cut, or padded with silence) at the analysis rate.
A generator trained on the audited clips can regenerate what it memorized: prefer one
unrelated to the audited model, and read the consistency check beside the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_GENERATOR = "zoo:diffusion-large"
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 3.0
GRIFFIN_LIM_ITERS = 32
SYNTH_HOP = 256


class _PipelineGenerator:
    """A local diffusers pipeline used only to generate (no scoring front end)."""

    family = "diffusion"

    def __init__(self, folder: Path):
        from core.targets.diffusers_audio import load_pipeline
        from core.targets.fingerprint import folder_fingerprint

        self.pipe, name, _, _ = load_pipeline(folder)
        self.fingerprint = folder_fingerprint(folder, {"pipeline": name})


def _generator(spec: str):
    """The TTA generator ``spec`` names, held by the model pool (one resident at a time)."""
    from core.runtime.pool import POOL

    return POOL.get("generator", spec, lambda: _load_generator(spec))


def _load_generator(spec: str):
    if not spec.startswith("zoo:"):
        folder = Path(spec).expanduser()
        if not (folder / "model_index.json").is_file():
            raise ValueError(f"TTA generator {spec!r} is neither zoo:<name> nor a diffusers pipeline folder (no model_index.json)")
        return _PipelineGenerator(folder.resolve())
    from core.targets import load_target

    return load_target(spec)


def identify_generator(options: dict) -> dict:
    """Fill in the default generator and add its fingerprint (part of the variant's cache key)."""
    out = dict(options)
    out["generator"] = str(out.get("generator") or DEFAULT_GENERATOR)
    out["steps"] = int(out.get("steps") or DEFAULT_STEPS)
    out["guidance"] = float(out.get("guidance") or DEFAULT_GUIDANCE)
    target = _generator(out["generator"])
    if target.family != "diffusion":
        raise ValueError(f"TTA generator {out['generator']!r} is a {target.family} model, not a text-to-audio diffusion model")
    out["generator_fingerprint"] = target.fingerprint
    return out


def _fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.shape[0] >= n:
        return audio[:n]
    return np.pad(audio, (0, n - audio.shape[0]))


def mel_to_audio(log_mel_power: np.ndarray, mel, *, n_samples: int, seed: int, hop: int = SYNTH_HOP,
                 n_iter: int = GRIFFIN_LIM_ITERS) -> np.ndarray:
    """Waveform whose mel power follows ``log_mel_power`` (``[n_mels, frames]``, natural log of
    power + ``mel.floor`` at ``mel.hop_length``), ``n_samples`` long at ``mel.sr``.

    The mel frames are interpolated linearly onto a ``hop``-sample grid (the analysis hop
    may exceed the window), inverted to a linear magnitude by the filterbank's pseudo-inverse (clipped at zero) and phased by seeded
    Griffin-Lim.
    """
    import librosa

    power = np.maximum(np.exp(np.asarray(log_mel_power, dtype=np.float64)) - mel.floor, 0.0)
    n_frames = power.shape[1]
    src = np.arange(n_frames) * mel.hop_length
    dst = np.arange(1 + n_samples // hop) * hop
    fine = np.stack([np.interp(dst, src, row) for row in power]).astype(np.float32)
    from core.targets.codebook import mel_filters

    mag = np.sqrt(np.maximum(np.linalg.pinv(mel_filters(mel).numpy()) @ fine, 0.0))
    audio = librosa.griffinlim(mag, n_iter=n_iter, hop_length=hop, win_length=mel.n_fft, n_fft=mel.n_fft,
                               length=n_samples, random_state=np.random.RandomState(seed % 2**32))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / peak * 0.5 if peak > 0 else audio).astype(np.float32)


def _sample_patches(target, captions: list[str], *, seeds: list[int], steps: int, guidance: float) -> np.ndarray:
    """DDIM samples of a zoo mel-diffusion model with classifier-free guidance,
    ``[B, n_mels, frames]``. Each clip's starting noise comes from its own seed, so a clip's
    sample does not depend on the batch it is drawn in."""
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


def render_captions(captions: list[str], *, n_samples: list[int], sr: int, seeds: list[int],
                    generator: str = DEFAULT_GENERATOR, steps: int = DEFAULT_STEPS,
                    guidance: float = DEFAULT_GUIDANCE, **_) -> list[np.ndarray]:
    """Each caption rendered by ``generator``: float32 mono, ``n_samples[i]`` long at ``sr``."""
    from core.data.audio import to_analysis

    target = _generator(generator)
    pipe = getattr(target, "pipe", None)
    out: list[np.ndarray] = []
    if pipe is not None:
        import torch

        vocoder = getattr(pipe, "vocoder", None)
        native = int(getattr(vocoder.config, "sampling_rate", 16000)) if vocoder is not None else 16000
        for caption, n, seed in zip(captions, n_samples, seeds):
            gen = torch.Generator(device="cpu").manual_seed(seed % 2**63)
            res = pipe(caption, num_inference_steps=steps, guidance_scale=guidance, audio_length_in_s=max(n / sr, 1.0),
                       generator=gen, num_waveforms_per_prompt=1)
            audio = np.asarray(res.audios[0], dtype=np.float32).reshape(-1)
            out.append(_fit_length(to_analysis(audio[:, None], native, sr), n))
        return out
    mel = target.patch.mel
    patches = _sample_patches(target, captions, seeds=seeds, steps=steps, guidance=guidance)
    longest = target.patch.n_frames * mel.hop_length
    for log_mel, n, seed in zip(patches, n_samples, seeds):
        n_native = min(int(round(n * mel.sr / sr)), longest)
        audio = mel_to_audio(log_mel, mel, n_samples=n_native, seed=seed)
        out.append(_fit_length(to_analysis(audio[:, None], mel.sr, sr), n))
    return out
