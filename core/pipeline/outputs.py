"""What an outputs-level run heard: a text-to-audio target's generation of one clip, drawn
again from the same seed, so an auditor can listen to the audio a similarity was measured on."""

from __future__ import annotations

import numpy as np

from core.pipeline.evidence import clip_inputs, get_target, stored_clips
from core.runtime.settings import Settings
from core.runtime.store import Workspace


def generation_of(ws: Workspace, run: dict, clip_hash: str, index: int = 0, *,
                  settings: Settings | None = None) -> tuple[np.ndarray, int, dict[str, float]]:
    """Generation ``index`` (0-based, below the run's ``n_generations``) of ``clip_hash`` by the
    target of the outputs-level MIA run ``run``: its caption, seed, length and sampling steps
    are the run's, so this is the audio the run compared with the clip (up to float
    rounding). Returns (mono float32 audio, its rate, its similarities to the clip).

    Raises
    ------
    ValueError
        the run is not an outputs-level run of a text-to-audio target, ``index`` is out of
        range, or the clip is not in the run's dataset.
    """
    from core.data.similarity import audio_similarity
    from core.stages import MIAConfig
    from core.targets.outputs import generation_seed
    from core.targets.registry import target_family

    cfg = MIAConfig.from_dict(run["config"])
    if cfg.access != "outputs" or target_family(run["target"]) == "audio-language":
        raise ValueError(f"run {run['id']} did not generate audio: only an outputs-level run of a text-to-audio target did")
    if not 0 <= index < cfg.n_generations:
        raise ValueError(f"generation {index + 1} does not exist: the run drew {cfg.n_generations} per caption")
    settings = settings or Settings.from_env(ws.root)
    rows = ws.analysis_clips(run["dataset"])
    rows = rows[rows["clip_hash"] == clip_hash]
    if rows.empty:
        raise ValueError(f"clip {clip_hash[:12]} is not in dataset {run['dataset']}")
    clip = clip_inputs(stored_clips(ws, rows), settings.analysis_sr, settings.limits)[0]
    target = get_target(run["target"], settings.device, cfg.loader_options())
    seed = generation_seed(clip.clip_hash, cfg.seed, index)
    audio = target.generate([clip.text], n_samples=[len(clip.audio)], sr=clip.sr, seeds=[seed], steps=cfg.gen_steps)[0]
    return np.asarray(audio, dtype=np.float32), clip.sr, audio_similarity(clip.audio, audio, clip.sr)
