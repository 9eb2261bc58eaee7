"""Ingest as a background job: a server folder or zip, or files uploaded in the browser
(staged in the workspace first), read in a worker so a large folder never holds a page.

A killed job resumes where it stopped: :func:`core.data.ingest.ingest_files` skips the
paths a half-ingested dataset already holds, and staged uploads stay until the job ends.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import fields
from pathlib import Path

from core.data.ingest import IngestReport, ingest_path, ingest_uploads
from core.data.layouts.labels import LabelRules
from core.data.paths import resolve_under_roots
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace, atomic_write

CANCEL_CHECK_EVERY = 50
"""Files between two looks at the job's cancel flag (one database read each)."""


def _staging(ws: Workspace, token: str) -> Path:
    if not token or not token.isalnum():
        raise ValueError(f"bad upload token {token!r}")
    return ws.root / "uploads" / token


def stage_uploads(ws: Workspace, uploads: list[tuple[str, bytes]]) -> str:
    """Write browser uploads into the workspace for an ingest job; returns their token.

    Files are stored by position, their (untrusted) names only in a JSON list, so a name
    never becomes a path here; ingest checks the names as it does for any upload.
    """
    token = uuid.uuid4().hex
    folder = _staging(ws, token)
    for i, (_, data) in enumerate(uploads):
        atomic_write(folder / f"{i}.bin", data)
    atomic_write(folder / "names.json", json.dumps([name for name, _ in uploads]).encode())
    return token


def staged_uploads(ws: Workspace, token: str) -> list[tuple[str, bytes]]:
    """The uploads :func:`stage_uploads` wrote, as ``(name, bytes)`` pairs."""
    folder = _staging(ws, token)
    names = json.loads((folder / "names.json").read_text(encoding="utf-8"))
    return [(name, (folder / f"{i}.bin").read_bytes()) for i, name in enumerate(names)]


def ingest_params(name: str, *, path: str | None = None, upload: str | None = None, layout: str = "auto",
                  labels: LabelRules = LabelRules()) -> dict:
    """The parameters of an ``ingest`` job: a server ``path`` or an ``upload`` token."""
    if (path is None) == (upload is None):
        raise ValueError("an ingest job reads either a server path or staged uploads")
    return {"dataset": name, "path": path, "upload": upload, "layout": layout, "labels": labels.to_dict()}


def ingest_report(ws: Workspace, name: str) -> IngestReport:
    """The report stored by the last ingest of ``name`` (its rejected files included)."""
    meta = ws.query("SELECT meta FROM datasets WHERE name=?", (name,))
    if meta.empty:
        raise KeyError(f"no dataset named {name!r}")
    stored = json.loads(meta["meta"].iloc[0] or "{}").get("ingest", {})
    known = {f.name for f in fields(IngestReport)}
    return IngestReport(**{k: v for k, v in stored.items() if k in known} | {"rejected": ws.rejected(name).to_dict("records")})


@job_kind("ingest")
def ingest_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Ingest a dataset (params: see :func:`ingest_params`); returns the dataset name."""
    settings = Settings.from_env(ws.root)
    labels = LabelRules.parse(params["labels"].get("members", ()), params["labels"].get("nonmembers", ()))

    def progress(done: int, total: int, message: str) -> None:
        ctx.progress(done, total, message)
        if done % CANCEL_CHECK_EVERY == 0 and ctx.cancelled():
            raise InterruptedError  # the dataset stays half-ingested: a new ingest of it resumes

    opts = dict(limits=settings.limits, progress=progress, layout=params.get("layout", "auto"), labels=labels)
    name = params["dataset"]
    if params.get("upload"):
        ingest_uploads(ws, staged_uploads(ws, params["upload"]), name, **opts)
        shutil.rmtree(_staging(ws, params["upload"]), ignore_errors=True)
    else:  # checked again here: the job's parameters are data in the workspace
        ingest_path(ws, resolve_under_roots(params["path"], settings.roots), name, **opts)
    return name


@job_kind("demo")
def demo_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Load the bundled demo datasets the workspace lacks (params: names, default all); returns their names."""
    from core.pipeline.common import DEMO_DATASETS, load_demo

    names = tuple(params.get("names") or DEMO_DATASETS)
    load_demo(ws, progress=ctx.progress, names=names)  # a half-loaded dataset resumes like any ingest
    return ",".join(names)
