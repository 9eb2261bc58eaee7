"""Environment settings, read once by the caller (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.config import Config


ASSETS_ENV = "OVERHEARD_ASSETS"

GROUPINGS = ("auto", "none", "speaker", "source")
"""What cross-validation may keep together: ``auto`` (speakers, else sources), none, or one."""


def assets_dir() -> Path:
    """The project's assets folder (``$OVERHEARD_ASSETS`` overrides it)."""
    env = os.environ.get(ASSETS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "assets"


API_KEY_ENV = "OVERHEARD_API_KEY"
"""Environment variable holding an HTTP target's key (sent as a bearer token, never stored)."""


def is_http_spec(spec: str) -> bool:
    """Whether ``spec`` names a remote endpoint (``http://`` or ``https://``)."""
    return spec.startswith(("http://", "https://"))


def check_http_spec(spec: str) -> None:
    """Refuse a URL that cannot be an endpoint base, before anything is sent.

    Raises
    ------
    ValueError
        one line: no host, credentials or a query in the URL (the key goes in
        ``OVERHEARD_API_KEY``), or a URL that already ends with the transcription path.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(spec)
    if not parts.hostname:
        raise ValueError(f"target {spec!r} has no host; expected e.g. http://127.0.0.1:8000/v1")
    if parts.username or parts.password:
        raise ValueError(f"target {spec!r} holds credentials; give the key in {API_KEY_ENV} instead, so it is never recorded")
    if parts.query or parts.fragment:
        raise ValueError(f"target {spec!r} has a query or fragment; name the API base only, e.g. http://127.0.0.1:8000/v1")
    if parts.path.rstrip("/").endswith("/audio/transcriptions"):
        raise ValueError(f"target {spec!r} names the transcription path; name the API base (without /audio/transcriptions)")


@dataclass(frozen=True)
class Limits(Config):
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
    isolate_decode: bool = False
    """Decode each ingested file in a child process under a time limit (``per_file_seconds``)
    and an address-space cap (:func:`core.data.guard.guarded_decode`), for a server that
    takes uploads from people it does not trust; it costs a fork per file, so it is off
    unless asked for (``OVERHEARD_ISOLATE_DECODE=1``)."""


@dataclass(frozen=True)
class Settings(Config):
    """Where the workspace lives and how audio is analysed.

    Environment: ``OVERHEARD_WORKSPACE`` (default ``./workspace``), ``OVERHEARD_ANALYSIS_SR``
    (default 16000), ``OVERHEARD_DEVICE`` (``cpu``/``cuda``/``auto``), ``OVERHEARD_ROOTS``
    (``os.pathsep``-separated folders the dashboard may load from; default: the workspace
    and the current directory), ``OVERHEARD_ISOLATE_DECODE`` (``1``: decode each ingested
    file in a child process with a time and memory limit, see :class:`Limits`),
    ``OVERHEARD_EXECUTOR`` (``local`` or ``ray``: where evidence
    extraction runs), ``OVERHEARD_RAY_ADDRESS`` (the Ray cluster to join; unset: a local
    Ray instance) and ``OVERHEARD_EXPORT_TIMEOUT_S`` (default 60: how long a PNG, SVG or PDF
    export of a figure may take before it is stopped with a message).
    """

    workspace: Path = Path("workspace")
    analysis_sr: int = 16000
    device: str = "auto"
    roots: tuple[Path, ...] = ()
    limits: Limits = field(default_factory=Limits)
    executor: str = "local"
    ray_address: str | None = None
    export_timeout_s: float = 60.0

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
            limits=Limits(isolate_decode=env.get("OVERHEARD_ISOLATE_DECODE", "0").strip().lower() in ("1", "true", "yes", "on")),
            executor=env.get("OVERHEARD_EXECUTOR", "local"),
            ray_address=env.get("OVERHEARD_RAY_ADDRESS") or None,
            export_timeout_s=float(env.get("OVERHEARD_EXPORT_TIMEOUT_S", "60")),
        )

    def with_workspace(self, workspace: str | Path) -> "Settings":
        return replace(self, workspace=Path(workspace).expanduser().resolve())
