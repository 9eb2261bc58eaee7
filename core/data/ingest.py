"""Ingestion: folder, zip or uploaded files -> a validated, content-hashed dataset.

Nothing is lost: every file is either stored as a clip of the dataset or listed in the
``rejected`` table with a one-line reason. Identical content is stored once; the same
content under both labels is a label conflict, kept and reported, excluded from analyses.

Layouts: ``members/`` + ``nonmembers/`` (also ``train``/``test``, ``member``/``nonmember``,
``seen``/``unseen``, ``suspect``), or any folder with a ``metadata.csv`` (columns
``path,label[,text,speaker,source,split]``). Transcripts/captions come from the CSV or from
sidecar ``.txt``/``.lab`` files next to the audio.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from core.data.audio import AudioError, classify_extension, decode
from core.data.guard import guarded_decode
from core.data.sources import LABEL_DIRS, SourceFile, UnsafeArchive, safe_relpath, display_path, folder_source, strip_common_root, upload_source, zip_source
from core.data.summary import dataset_summary
from core.runtime.settings import Limits
from core.runtime.store import MEMBER, NONMEMBER, Workspace

BATCH = 64
_LABEL_WORDS = {**LABEL_DIRS, "1": MEMBER, "0": NONMEMBER, "p": MEMBER, "u": NONMEMBER, "in": MEMBER, "out": NONMEMBER}


class IngestError(ValueError):
    """Nothing could be ingested (with the reason)."""


@dataclass
class IngestReport:
    """What an ingest did. ``label_conflicts`` groups the paths sharing one content."""

    dataset: str
    clips: int = 0
    members: int = 0
    nonmembers: int = 0
    files_read: int = 0
    duplicates: int = 0
    label_conflicts: list[list[str]] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    """Paths sharing one content under one label (the clip is analysed once)."""
    rejected: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resumed: int = 0
    headline: str = ""
    """The dataset summary's one-line account (:meth:`core.data.summary.DatasetSummary.headline`)."""

    def to_dict(self) -> dict:
        return asdict(self)


def _parse_label(value: str) -> str | None:
    return _LABEL_WORDS.get(value.strip().lower().replace(" ", ""))


def _label_from_dirs(path: str) -> str | None:
    for part in PurePosixPath(path).parts[:-1]:
        label = LABEL_DIRS.get(part.lower())
        if label:
            return label
    return None


def _decode_text(data: bytes, where: str, warnings: list[str]) -> str:
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        warnings.append(f"{where}: not valid UTF-8; read as Latin-1, check the text")
        return data.decode("latin-1").strip()


MAX_TEXT_CHARS = 10_000
"""Transcripts or captions longer than this are cut (with a warning): no real one is."""


def _read_metadata(entry: SourceFile, warnings: list[str], rejected: list[tuple[str, str]]) -> dict[str, dict]:
    """Rows of a ``metadata.csv`` by dataset-relative path.

    Hostile content never ends the ingest: NUL bytes are removed, over-long fields are
    cut, a row whose path escapes the dataset or is empty is listed in ``rejected``, and a
    path listed twice with different values is rejected rather than silently overwritten.
    """
    text = _decode_text(entry.read(), entry.path, warnings)
    if "\x00" in text:
        warnings.append(f"{entry.path}: {text.count(chr(0))} NUL byte(s) removed")
        text = text.replace("\x00", "")
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # a long field is cut below, not fatal
    reader = csv.DictReader(io.StringIO(text))
    cols = {(c or "").strip().lower() for c in (reader.fieldnames or [])}
    if not {"path", "label"} <= cols:
        raise IngestError(f"{entry.path} needs the columns path,label (found: {', '.join(sorted(cols)) or 'none'})")
    base = str(PurePosixPath(entry.path).parent)
    rows: dict[str, dict] = {}
    conflicting: set[str] = set()
    try:
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v if isinstance(v, str) else "").strip() for k, v in row.items() if isinstance(k, str) and k}
            raw = row.get("path", "")
            where = f"{entry.path} line {line}"
            if not raw:
                warnings.append(f"{where}: no path; row ignored")
                continue
            for k, v in row.items():
                if len(v) > MAX_TEXT_CHARS:
                    warnings.append(f"{where}: {k} has {len(v):,} characters; cut to {MAX_TEXT_CHARS:,}")
                    row[k] = v[:MAX_TEXT_CHARS]
            safe = safe_relpath(raw)
            if safe is None:
                rejected.append((display_path(raw[:300]), f"{where}: path escapes the dataset (absolute or '..'; refused)"))
                continue
            rel = str(PurePosixPath(base) / safe) if base != "." else safe
            if rel in rows and rows[rel] != row:
                conflicting.add(rel)
            rows.setdefault(rel, row)
    except csv.Error as exc:
        raise IngestError(f"{entry.path} line {reader.line_num}: not readable as CSV ({exc})") from None
    for rel in conflicting:
        rows[rel] = dict(rows[rel], _conflict="listed more than once in metadata.csv with different values; fix the file")
    return rows


def ingest_files(
    ws: Workspace,
    files: Iterable[SourceFile],
    name: str,
    *,
    source: str = "",
    limits: Limits = Limits(),
    replace: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    """Ingest ``files`` into dataset ``name`` of ``ws``.

    The report's counts are the dataset's :func:`~core.data.summary.dataset_summary`, the
    same numbers every other surface shows.

    A dataset left half-ingested by a killed process is resumed (paths already stored or
    rejected are skipped); an existing complete dataset needs ``replace=True``.

    Raises
    ------
    IngestError
        when no file at all could be ingested.
    """
    t0 = time.perf_counter()
    report = IngestReport(dataset=name)
    entries = strip_common_root(list(files))
    existing = ws.datasets()
    row = existing[existing["name"] == name]
    if not row.empty and row.iloc[0]["status"] == "ready" and not replace:
        raise IngestError(f"dataset {name!r} already exists; choose another name or replace it")
    resume = not row.empty and row.iloc[0]["status"] == "ingesting" and not replace
    ds_id = ws.create_dataset(name, source=source, replace=replace and not row.empty)
    done: set[str] = set()
    if resume:
        done = set(ws.query("SELECT path FROM items WHERE dataset_id=? UNION SELECT path FROM rejected WHERE dataset_id=?", (ds_id, ds_id))["path"])

    metadata: dict[str, dict] = {}
    sidecars: dict[str, SourceFile] = {}
    audio: list[SourceFile] = []
    rejected: list[tuple[str, str]] = []
    for e in entries:
        kind = classify_extension(e.path)
        if e.error:
            rejected.append((e.path, e.error))
        elif PurePosixPath(e.path).name.lower() == "metadata.csv":
            metadata.update(_read_metadata(e, report.warnings, rejected))
        elif kind == "sidecar":
            sidecars[str(PurePosixPath(e.path).with_suffix(""))] = e
        elif kind == "audio":
            audio.append(e)
        elif kind == "unsupported":
            rejected.append((e.path, f"unsupported format {PurePosixPath(e.path).suffix}; convert with ffmpeg to WAV or FLAC"))
        elif PurePosixPath(e.path).name.startswith("."):
            rejected.append((e.path, "hidden file, not audio (ignored)"))
        else:
            rejected.append((e.path, "not an audio file"))
    listed = {p for p in metadata}
    for missing in sorted(listed - {a.path for a in audio} - {r[0] for r in rejected}):
        report.warnings.append(f"metadata.csv lists {missing} but no such audio file was found")

    pending_items: list[tuple] = []
    pending_clips: list[tuple[str, str, dict]] = []
    pending_rej: list[tuple[str, str]] = [r for r in rejected if r[0] not in done]

    def flush() -> None:
        with ws.connect() as con:
            for h, ext, info in pending_clips:
                ws.add_clip(con, h, ext, info)
            con.executemany("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?)", pending_items)
            con.executemany("INSERT OR REPLACE INTO rejected VALUES (?,?,?)", [(ds_id, p, r) for p, r in pending_rej])
        pending_items.clear()
        pending_clips.clear()
        pending_rej.clear()

    total = len(audio)
    for i, e in enumerate(audio):
        if progress:
            progress(i, total, e.path)
        if e.path in done:
            report.resumed += 1
            continue
        meta = metadata.get(e.path, {})
        if meta.get("_conflict"):
            pending_rej.append((e.path, meta["_conflict"]))
            continue
        label = _parse_label(meta["label"]) if meta.get("label") else _label_from_dirs(e.path)
        if meta.get("label") and label is None:
            pending_rej.append((e.path, f"unknown label {meta['label']!r} in metadata.csv (use member/nonmember)"))
            continue
        if label is None:
            pending_rej.append((e.path, "no label: not under a members/nonmembers folder and not in metadata.csv"))
            continue
        try:
            data = e.read()
            report.files_read += 1
            _, info = (guarded_decode if limits.isolate_decode else decode)(data, limits=limits)
        except (AudioError, UnsafeArchive) as exc:
            pending_rej.append((e.path, str(exc)))
            continue
        except OSError as exc:
            pending_rej.append((e.path, f"could not read file ({exc.strerror or exc})"))
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file never ends the ingest
            pending_rej.append((e.path, f"could not be read ({type(exc).__name__}: {str(exc)[:120]})"))
            continue
        text = meta.get("text", "")
        stem = str(PurePosixPath(e.path).with_suffix(""))
        if not text and stem in sidecars:
            text = _decode_text(sidecars[stem].read(), sidecars[stem].path, report.warnings)
        h = ws.put_audio(data)
        info_d = info.to_dict() | {"bit_depth": info.bit_depth}
        pending_clips.append((h, PurePosixPath(e.path).suffix.lower(), info_d))
        pending_items.append((ds_id, e.path, h, label, text, meta.get("speaker", ""), meta.get("source", ""), meta.get("split", "")))
        if len(pending_items) >= BATCH:
            flush()
    flush()
    if progress:
        progress(total, total, "done")

    rej = ws.rejected(name)
    report.rejected = rej.to_dict("records")
    conflicts = ws.label_conflicts(name)
    report.label_conflicts = [g["path"].tolist() for _, g in conflicts.groupby("clip_hash")]
    clips = ws.analysis_clips(name)
    summary = dataset_summary(ws, name)
    report.clips, report.members, report.nonmembers = summary.unique_clips, summary.members, summary.nonmembers
    report.duplicates, report.headline = summary.duplicate_files, summary.headline()
    report.duplicate_groups = [list(p) for p in summary.duplicates["paths"]]
    report.seconds = time.perf_counter() - t0
    if report.clips == 0:
        ws.delete_dataset(name)
        reasons = "; ".join(f"{r['path']}: {r['reason']}" for r in report.rejected[:5]) or "no files found"
        raise IngestError(f"nothing could be ingested into {name!r} ({reasons})")
    from core.stats import small_sample_warning

    if report.members and report.nonmembers:
        small = small_sample_warning(clips["y"].to_numpy())
        if small:
            report.warnings.append(small)
    if report.label_conflicts:
        report.warnings.append(
            f"{len(report.label_conflicts)} clip(s) appear under both labels; they are excluded from analyses until resolved"
        )
    ws.set_dataset_status(name, "ready", meta={"source": source, "ingest": {k: v for k, v in report.to_dict().items() if k not in ("rejected",)}})
    return report


def ingest_path(ws: Workspace, path: str | Path, name: str, *, limits: Limits = Limits(), **kw) -> IngestReport:
    """Ingest a folder or a ``.zip`` file from disk."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path} does not exist")
    if path.is_dir():
        return ingest_files(ws, folder_source(path), name, source=str(path), limits=limits, **kw)
    if path.suffix.lower() == ".zip":
        try:
            files = list(zip_source(path, limits=limits))
        except UnsafeArchive as exc:
            raise IngestError(f"{path.name}: {exc}") from None
        return ingest_files(ws, files, name, source=str(path), limits=limits, **kw)
    raise IngestError(f"{path} is neither a folder nor a .zip archive")


def ingest_uploads(ws: Workspace, uploads: list[tuple[str, bytes]], name: str, *, limits: Limits = Limits(), **kw) -> IngestReport:
    """Ingest files uploaded in the browser; ``.zip`` uploads are expanded safely."""
    files: list[SourceFile] = []
    for fname, data in uploads:
        if fname.lower().endswith(".zip"):
            try:
                files.extend(zip_source(data, limits=limits))
            except UnsafeArchive as exc:
                files.append(SourceFile(fname, lambda: b"", len(data), str(exc)))
        else:
            files.extend(upload_source([(fname, data)]))
    return ingest_files(ws, files, name, source="upload", limits=limits, **kw)


def clips_fingerprint(clips) -> str:
    """sha256 over the sorted (clip hash, label) pairs of an analysis table."""
    h = hashlib.sha256()
    for ch, lab in zip(clips["clip_hash"], clips["label"]):
        h.update(f"{ch}:{lab}\n".encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(ws: Workspace, name: str) -> str:
    """Fingerprint of the data a run on ``name`` analyses (see :func:`clips_fingerprint`)."""
    return clips_fingerprint(ws.analysis_clips(name))
