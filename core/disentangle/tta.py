"""Sound resynthesis (TTA): a clip's caption rendered by a text-to-audio model.

Two generators, chosen by the ``tta`` variant's ``generator`` option:

* ``zoo:<name>`` (default :data:`DEFAULT_GENERATOR`): a zoo mel-patch diffusion model, which
  generates by itself (:meth:`core.targets.diffusion_audio.MelDiffusionTarget.generate`:
  DDIM sampling with classifier-free guidance gives a normalized log-mel patch; it is
  de-normalized, the mel power is mapped back to a linear-frequency magnitude
  (pseudo-inverse of the same mel filterbank) on a finer time grid, and Griffin-Lim recovers
  a waveform, seeded, so a rerun gives the same audio).
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

from core.targets.synthesis import DEFAULT_GUIDANCE, DEFAULT_STEPS, GRIFFIN_LIM_ITERS, SYNTH_HOP, fit_length, mel_to_audio  # noqa: F401  (re-exported)

DEFAULT_GENERATOR = "zoo:diffusion-large"


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
            out.append(fit_length(to_analysis(audio[:, None], native, sr), n))
        return out
    # a zoo diffusion model generates by itself, all captions in one batch
    return target.generate(captions, n_samples=n_samples, sr=sr, seeds=seeds, steps=steps, guidance=guidance)
