"""High-level operations shared by the CLI, the background jobs and the pages.

Each operation reads a dataset from the workspace, runs one stage, stores a run with
its configuration and provenance, and returns ``(run_id, result)``.
"""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from core import __version__
from core.data.ingest import IngestReport, dataset_fingerprint, ingest_path
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
    return {
        "dataset": dataset,
        "dataset_fingerprint": dataset_fingerprint(ws, dataset),
        "clip_hashes": ws.analysis_clips(dataset)["clip_hash"].tolist(),
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
