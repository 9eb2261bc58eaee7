"""Piper neural voices for speech resynthesis (optional: ``pip install -e ".[piper]"``).

A voice is a local ``.onnx`` file with its ``.onnx.json`` config beside it; nothing is
downloaded. Resynthesis is deterministic: the VITS noise scales are set to zero, and the
three realizations differ in speaking rate (``length_scale``) and, for a multi-speaker
voice, in speaker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LENGTH_SCALES = (1.0, 0.88, 1.15)


def _voice_paths(path: str | Path) -> tuple[Path, Path]:
    onnx = Path(path).expanduser().resolve()
    if onnx.suffix != ".onnx":
        raise ValueError(f"a Piper voice is an .onnx file with its .onnx.json beside it, got {onnx}")
    config = onnx.with_name(onnx.name + ".json")
    missing = [str(p) for p in (onnx, config) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Piper voice file(s) not found: {', '.join(missing)}")
    return onnx, config


def identify_voice(options: dict) -> dict:
    """Resolve ``piper_voice`` to an absolute path and add the voice file's hash."""
    if not options.get("piper_voice"):
        return options
    from core.targets.fingerprint import fingerprint

    onnx, config = _voice_paths(options["piper_voice"])
    return dict(options, piper_voice=str(onnx), piper_voice_fingerprint=fingerprint([onnx, config]))


def _load(onnx: str):
    from core.runtime.pool import POOL

    return POOL.get("voice", onnx, lambda: _load_voice(onnx))


def _load_voice(onnx: str):
    try:
        from piper import PiperVoice
    except ImportError as exc:
        raise RuntimeError('Piper voices need the optional extra: pip install -e ".[piper]"') from exc
    path, config = _voice_paths(onnx)
    return PiperVoice.load(path, config_path=config)


def speak(onnx: str | Path, text: str, realization: int) -> tuple[np.ndarray, int]:
    """``text`` spoken by the voice: float32 mono samples and their sample rate."""
    from piper.config import SynthesisConfig

    voice = _load(str(Path(onnx).expanduser().resolve()))
    n_speakers = int(getattr(voice.config, "num_speakers", 1) or 1)
    cfg = SynthesisConfig(
        speaker_id=realization % n_speakers if n_speakers > 1 else None,
        length_scale=LENGTH_SCALES[realization % len(LENGTH_SCALES)],
        noise_scale=0.0,
        noise_w_scale=0.0,
    )
    chunks = list(voice.synthesize(text, syn_config=cfg))
    if not chunks:
        raise ValueError(f"the Piper voice produced no audio for {text!r}")
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return audio, int(chunks[0].sample_rate)
