"""Shared pieces of the operations: provenance, the demo loader, targets and evidence."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import pandas as pd

from core import __version__
from core.data.ingest import IngestReport, clips_fingerprint, ingest_path
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.targets.zoo.registry import assets_dir

DEMO_DATASETS = ("demo-speech", "demo-speech-shifted", "demo-sounds")
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "diffusers", "librosa", "soundfile", "pandas", "streamlit", "plotly")

Progress = Callable[[int, int, str], None]


def package_versions() -> dict[str, str]:
    out = {"overheard": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(ws: Workspace, dataset: str, *, target_fingerprint: str | None = None, seed: int | None = None, seconds: float | None = None) -> dict:
    """What another auditor needs to reproduce a run."""
    clips = ws.analysis_clips(dataset)
    return {
        "dataset": dataset,
        "dataset_fingerprint": clips_fingerprint(clips),
        "clip_hashes": clips["clip_hash"].tolist(),
        "model_fingerprint": target_fingerprint,
        "seed": seed,
        "versions": package_versions(),
        "platform": platform.platform(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": seconds,
    }


def load_demo(ws: Workspace, *, progress: Progress | None = None, names: tuple[str, ...] = DEMO_DATASETS) -> dict[str, IngestReport | None]:
    """Ingest the bundled demo datasets that the workspace does not have yet."""
    have = set(ws.datasets().query("status == 'ready'")["name"])
    out: dict[str, IngestReport | None] = {}
    for name in names:
        folder = assets_dir() / "demo" / name
        if name in have:
            out[name] = None
            continue
        if not folder.exists():
            raise FileNotFoundError(f"demo dataset folder {folder} is missing; run `overheard demo build-corpus`")
        out[name] = ingest_path(ws, folder, name, progress=progress)
    return out


def demo_root() -> Path:
    return assets_dir() / "demo"


# -- targets and evidence -------------------------------------------------------------------

Cancelled = Callable[[], bool]


_TARGETS: dict[tuple, object] = {}


def get_target(spec: str, device: str | None = None, options: dict | None = None):
    """Load a target once per process (the worker and the CLI reuse it across calls).

    ``options`` are passed to the target's loader (e.g. ``prompt``, ``batch_size``,
    ``trust_remote_code``); they are part of the reuse key.
    """
    from core.targets import load_target

    options = dict(options or {})
    key = (spec, device, json.dumps(options, sort_keys=True, default=str))
    if key not in _TARGETS:
        for old in list(_TARGETS):
            _TARGETS.pop(old).unload()
        _TARGETS[key] = load_target(spec, device=None if device in (None, "auto") else device, **options)
    return _TARGETS[key]


def extract_evidence(
    ws: Workspace,
    dataset: str,
    target_spec: str,
    config,
    *,
    settings: Settings | None = None,
    clips: pd.DataFrame | None = None,
    variant=None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
):
    """Evidence for every analysed clip of ``dataset`` through the cache.

    ``variant`` (optional, a :class:`core.disentangle.Variant`) replaces each clip's audio
    before scoring; its evidence is cached under the variant's own key.

    Returns (clips table, evidence list, target fingerprint, number computed).
    """
    from core.data.audio import load_analysis
    from core.runtime.cache import EvidenceCache, cached_evidence
    from core.targets.base import ClipInput

    settings = settings or Settings.from_env(ws.root)
    clips = ws.analysis_clips(dataset) if clips is None else clips
    target = get_target(target_spec, settings.device, config.loader_options())
    ev_cfg = config.evidence_config()
    sr = settings.analysis_sr

    def inputs(idx: list[int]) -> list[ClipInput]:
        out = []
        for i in idx:
            row = clips.iloc[i]
            audio = load_analysis(ws.read_audio(row["clip_hash"]), sr, limits=settings.limits)
            text = row["text"] or ""
            if variant is not None:
                audio = variant.render(audio, text, sr, row["clip_hash"])
            out.append(ClipInput(row["clip_hash"], audio, text, sr))
        return out

    def compute(idx: list[int]):
        return target.evidence(inputs(idx), ev_cfg, batch_size=config.batch_size)

    keys = clips["clip_hash"].tolist()
    cfg_key = ev_cfg.to_dict()
    if variant is not None:
        keys = [variant.key(h) for h in keys]
        cfg_key = dict(cfg_key, variant=variant.name)
    evidence, computed = cached_evidence(
        EvidenceCache(ws.cache_dir), target.fingerprint, keys, cfg_key, sr, compute,
        batch_size=config.batch_size,
        progress=(lambda d, t: progress(d, t, f"evidence {target_spec}")) if progress else None,
        cancelled=cancelled,
    )
    return clips, evidence, target.fingerprint, computed


