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


def stored_clips(ws: Workspace, rows: pd.DataFrame) -> list[tuple[str, bytes, str]]:
    """``(clip_hash, stored bytes, text)`` of each row of an analysis-clips table."""
    return [(h, ws.read_audio(h), t or "") for h, t in zip(rows["clip_hash"], rows["text"])]


def clip_inputs(items: list[tuple[str, bytes, str]], sr: int, limits, variant=None) -> list:
    """Decode stored clips to the analysis rate and apply ``variant`` (rendered as a batch):
    the :class:`ClipInput` list a target scores. Used locally and on Ray workers alike."""
    from core.data.audio import load_analysis
    from core.targets.base import ClipInput

    hashes, texts = [h for h, _, _ in items], [t for _, _, t in items]
    audios = [load_analysis(data, sr, limits=limits) for _, data, _ in items]
    if variant is not None:
        audios = variant.render_many(audios, texts, sr, hashes)
    return [ClipInput(h, a, t, sr) for h, a, t in zip(hashes, audios, texts)]


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
    on_inputs=None,
):
    """Evidence for every analysed clip of ``dataset`` through the cache.

    ``variant`` (optional, a :class:`core.disentangle.Variant`) replaces each clip's audio
    before scoring; its evidence is cached under the variant's own key. ``on_inputs``
    (optional) sees each computed batch's :class:`ClipInput` list (the rendered variant
    audio) on the local executor, e.g. to score its consistency without rendering twice.

    Returns (clips table, evidence list, target fingerprint, number computed).
    """
    from core.runtime.cache import EvidenceCache, cached_evidence

    settings = settings or Settings.from_env(ws.root)
    clips = ws.analysis_clips(dataset) if clips is None else clips
    ev_cfg = config.evidence_config()
    sr = settings.analysis_sr
    keys = clips["clip_hash"].tolist()
    cfg_key = ev_cfg.to_dict()
    if variant is not None:
        keys = [variant.key(h) for h in keys]
        cfg_key = dict(cfg_key, variant=variant.name)
    report = (lambda d, t: progress(d, t, f"evidence {target_spec}")) if progress else None
    if settings.executor == "ray":
        evidence, fp, computed = _extract_on_ray(ws, clips, keys, cfg_key, target_spec, config, ev_cfg, settings,
                                                 variant=variant, progress=report, cancelled=cancelled)
        return clips, evidence, fp, computed
    if settings.executor != "local":
        raise ValueError(f"unknown executor {settings.executor!r}; valid: local, ray")
    target = get_target(target_spec, settings.device, config.loader_options())

    def compute(idx: list[int]):
        xs = clip_inputs(stored_clips(ws, clips.iloc[idx]), sr, settings.limits, variant)
        if on_inputs is not None:
            on_inputs(xs)
        return target.evidence(xs, ev_cfg, batch_size=config.batch_size)

    evidence, computed = cached_evidence(
        EvidenceCache(ws.cache_dir), target.fingerprint, keys, cfg_key, sr, compute,
        batch_size=config.batch_size, progress=report, cancelled=cancelled,
    )
    return clips, evidence, target.fingerprint, computed


def _extract_on_ray(ws: Workspace, clips: pd.DataFrame, keys: list[str], cfg_key: dict, target_spec: str, config,
                    ev_cfg, settings: Settings, *, variant, progress, cancelled):
    """:func:`extract_evidence` with the model work on Ray actors (``core.runtime.ray_exec``).

    One actor starts first to learn the model fingerprint (so a warm re-run reads the
    cache without loading more replicas); the rest start only when clips are missing.
    """
    from core.runtime.cache import EvidenceCache, cached_evidence
    from core.runtime.ray_exec import RayExecutor
    from core.targets.evidence import ClipEvidence

    ex = RayExecutor(address=settings.ray_address)
    start = dict(device=settings.device, options=config.loader_options(), ev_config=ev_cfg,
                 analysis_sr=settings.analysis_sr, limits=settings.limits, variant=variant,
                 batch_size=config.batch_size)
    actors = ex.actors(1, target_spec, **start)
    try:
        fp = ex.fingerprint(actors)

        def run(batches: list[list[int]]):
            more = ex.actors(len(batches) - 1, target_spec, have=len(actors), **start) if len(batches) > 1 else []
            if more:
                actors.extend(more)
                ex.fingerprint(actors)
            for idx, blobs in ex.run(actors, ((idx, stored_clips(ws, clips.iloc[idx])) for idx in batches)):
                yield idx, [ClipEvidence.from_bytes(b) for b in blobs]

        evidence, computed = cached_evidence(
            EvidenceCache(ws.cache_dir), fp, keys, cfg_key, settings.analysis_sr, None,
            batch_size=config.batch_size, progress=progress, cancelled=cancelled, run=run,
        )
    finally:
        ex.stop(actors)
    return evidence, fp, computed


