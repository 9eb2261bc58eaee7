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
from core.runtime.settings import GROUPINGS
from core.runtime.store import Workspace
from core.targets.registry import Resolved  # noqa: F401  (re-exported: the pipeline's runs take one)
from core.targets.zoo.registry import assets_dir

DEMO_DATASETS = ("demo-speech", "demo-speech-shifted", "demo-sounds")
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "diffusers", "librosa", "soundfile", "pandas", "streamlit", "plotly")

Progress = Callable[[int, int, str], None]
Cancelled = Callable[[], bool]


def package_versions() -> dict[str, str]:
    out = {"overheard": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


MIN_PER_LABEL = 2
"""Analysable clips of each label an audit needs (stratified cross-validation needs two)."""


def check_labels(ws: Workspace, dataset: str) -> None:
    """Refuse, before any model is loaded, a dataset an audit cannot be computed on: fewer
    than two analysable clips of either label (cross-validation needs two of each).

    Raises
    ------
    ValueError
        naming the counts and what to do.
    """
    y = ws.analysis_clips(dataset)["y"]
    members, nonmembers = int((y == 1).sum()), int((y == 0).sum())
    if min(members, nonmembers) < MIN_PER_LABEL:
        raise ValueError(f"dataset {dataset!r} has {members} member and {nonmembers} non-member clip(s) to analyse; an audit needs "
                         f"at least {MIN_PER_LABEL} of each (label more clips, or resolve label conflicts)")


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


def current_run(ws: Workspace, kind: str, dataset: str, target: str | None = None, *, where: Callable[[dict], bool] | None = None) -> dict | None:
    """The newest run of ``kind`` on ``dataset`` (and ``target``) made on the dataset as it
    is now (same clips and labels: a replaced dataset's older runs never feed a new one),
    and whose configuration satisfies ``where(config)``. Only the chosen run is loaded."""
    from core.data.ingest import dataset_fingerprint

    sql = ("SELECT id, config FROM runs WHERE kind=? AND dataset=? AND json_extract(provenance, '$.dataset_fingerprint')=?"
           + (" AND target=?" if target is not None else "") + " ORDER BY created DESC")
    params = (kind, dataset, dataset_fingerprint(ws, dataset)) + ((target,) if target is not None else ())
    for run_id, config in ws.query(sql, params).itertuples(index=False):
        if where is None or where(json.loads(config or "{}")):
            return ws.load_run(run_id)
    return None


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


def clip_grouping(clips: pd.DataFrame, grouping: str = "auto") -> tuple[list[str] | None, str]:
    """The per-clip groups that cross-validation keeps together, and their name.

    ``auto``: the speaker when at least two clips name different speakers, else the source
    when at least two sources are named, else none. ``speaker`` / ``source`` force one;
    ``none`` turns grouping off.
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}; valid: {', '.join(GROUPINGS)}")
    if grouping == "none":
        return None, "none"
    for col in (("speaker", "source") if grouping == "auto" else (grouping,)):
        if col in clips:
            vals = clips[col].fillna("").astype(str).str.strip()
            if vals[vals != ""].nunique() >= 2:
                return vals.tolist(), col
    return None, "none"


def dataset_clips(ws: Workspace, dataset: str | None) -> set[str] | None:
    """Content hashes of every clip ``dataset`` lists (None: no dataset, the whole cache)."""
    return None if dataset is None else set(ws.items(dataset)["clip_hash"])


def cache_overview(ws: Workspace, dataset: str | None = None) -> pd.DataFrame:
    """The workspace's cache folders (:func:`core.runtime.cache.cache_entries`), each model
    fingerprint named by the targets whose runs used it; with ``dataset``, only what is
    cached for its clips."""
    from core.runtime.cache import cache_entries

    used: dict[str, set[str]] = {}
    runs = ws.query("SELECT DISTINCT target, json_extract(provenance, '$.model_fingerprint') AS fp FROM runs WHERE fp IS NOT NULL AND target != ''")
    for target, fp in runs.itertuples(index=False):
        used.setdefault(fp, set()).add(target)
    rows = [r | {"used_by": ", ".join(sorted(used.get(r["name"], ()))) if r["part"] == "evidence" else ""} for r in cache_entries(ws.cache_dir, clips=dataset_clips(ws, dataset))]
    return pd.DataFrame(rows, columns=["part", "name", "used_by", "files", "bytes"])
