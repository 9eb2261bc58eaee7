"""Environment settings, read once by the caller (never at import time)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Ingestion limits: a file over any of them is rejected with a reason."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_duration_s: float = 600.0
    max_channels: int = 32
    max_sample_rate: int = 384_000
    zip_max_total_bytes: int = 2 * 1024**3
    zip_max_files: int = 20_000
    zip_max_ratio: float = 200.0
    per_file_seconds: float = 30.0
    max_decoded_bytes: int = 1024**3
    max_abs_sample: float = 1000.0
    """Largest sample magnitude accepted (full scale is 1.0): floating-point files can
    exceed full scale a little, but 60 dB above it is not a recording."""


@dataclass(frozen=True)
class Settings:
    """Where the workspace lives and how audio is analysed.

    Environment: ``OVERHEARD_WORKSPACE`` (default ``./workspace``), ``OVERHEARD_ANALYSIS_SR``
    (default 16000), ``OVERHEARD_DEVICE`` (``cpu``/``cuda``/``auto``), ``OVERHEARD_ROOTS``
    (``os.pathsep``-separated folders the dashboard may load from; default: the workspace
    and the current directory), ``OVERHEARD_EXECUTOR`` (``local`` or ``ray``: where evidence
    extraction runs) and ``OVERHEARD_RAY_ADDRESS`` (the Ray cluster to join; unset: a local
    Ray instance).
    """

    workspace: Path = Path("workspace")
    analysis_sr: int = 16000
    device: str = "auto"
    roots: tuple[Path, ...] = ()
    limits: Limits = field(default_factory=Limits)
    executor: str = "local"
    ray_address: str | None = None

    @classmethod
    def from_env(cls, workspace: str | Path | None = None) -> "Settings":
        env = os.environ
        ws = Path(workspace or env.get("OVERHEARD_WORKSPACE") or "workspace").expanduser().resolve()
        roots_env = env.get("OVERHEARD_ROOTS")
        roots = (
            tuple(Path(r).expanduser().resolve() for r in roots_env.split(os.pathsep) if r)
            if roots_env
            else (ws, Path.cwd().resolve())
        )
        return cls(
            workspace=ws,
            analysis_sr=int(env.get("OVERHEARD_ANALYSIS_SR", "16000")),
            device=env.get("OVERHEARD_DEVICE", "auto"),
            roots=roots,
            executor=env.get("OVERHEARD_EXECUTOR", "local"),
            ray_address=env.get("OVERHEARD_RAY_ADDRESS") or None,
        )

    def with_workspace(self, workspace: str | Path) -> "Settings":
        return replace(self, workspace=Path(workspace).expanduser().resolve())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["workspace"] = str(self.workspace)
        d["roots"] = [str(r) for r in self.roots]
        return d
