"""Ingestion: folder, zip or uploaded files -> a validated, content-hashed dataset.

Nothing is lost: every file is either stored as a clip of the dataset or listed in the
``rejected`` table with a one-line reason. Identical content is stored once; the same
content under both labels is a label conflict, kept and reported, excluded from analyses.

The files are read by a layout (:mod:`core.data.layouts`: ``members/`` + ``nonmembers/``
folders or a ``metadata.csv``, LibriSpeech, Hugging Face audiofolder and ``datasets`` on
disk, Common Voice, lhotse), detected or named, and labelled by the layout or by
``--members``/``--nonmembers`` rules (:class:`~core.data.layouts.LabelRules`).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from core.data.audio import AudioError, classify_extension, decode
from core.data.guard import guarded_decode
from core.data.layouts import AUTO, LabelRules, LayoutError, LayoutInfo, Parsed, Tree, choose_layout
from core.data.layouts.base import TEXT_COLUMNS
from core.registry import UnknownName
from core.data.sources import SourceFile, UnsafeArchive, folder_source, strip_common_root, upload_source, zip_source
from core.data.summary import dataset_summary
from core.runtime.settings import Limits
from core.runtime.store import Workspace

BATCH = 64


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
    layout: str = ""
    """The layout the files were read as (:mod:`core.data.layouts`)."""
    labels: dict = field(default_factory=dict)
    """The ``--members``/``--nonmembers`` rules used (empty: the layout's own labels)."""
    headline: str = ""
    """The dataset summary's one-line account (:meth:`core.data.summary.DatasetSummary.headline`)."""

    def to_dict(self) -> dict:
        return asdict(self)


def _read_layout(files: Iterable[SourceFile], layout: str) -> tuple[list[SourceFile], LayoutInfo, Parsed]:
    entries = strip_common_root(list(files))
    tree = Tree(entries)
    try:
        chosen = choose_layout(tree, layout)
        return entries, chosen, chosen.read(tree)
    except (LayoutError, UnknownName) as exc:
        raise IngestError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a hostile manifest ends with a reason, not a traceback
        raise IngestError(f"the {layout} layout's manifests could not be read ({type(exc).__name__}: {str(exc)[:160]})") from None


def ingest_files(
    ws: Workspace,
    files: Iterable[SourceFile],
    name: str,
    *,
    source: str = "",
    limits: Limits = Limits(),
    replace: bool = False,
    layout: str = AUTO,
    labels: LabelRules = LabelRules(),
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    """Ingest ``files`` into dataset ``name`` of ``ws``, read as ``layout`` (``"auto"``:
    detected) and labelled by ``labels`` (none: the layout's own labels).

    The report's counts are the dataset's :func:`~core.data.summary.dataset_summary`, the
    same numbers every other surface shows.

    A dataset left half-ingested by a killed process is resumed (paths already stored or
    rejected are skipped); an existing complete dataset needs ``replace=True``.

    Raises
    ------
    IngestError
        when no file at all could be ingested, the layout is unknown or ambiguous, or its
        manifest cannot be read.
    """
    t0 = time.perf_counter()
    report = IngestReport(dataset=name, labels=labels.to_dict() if labels else {})
    entries, chosen, parsed = _read_layout(files, layout)
    report.layout = chosen.name
    report.warnings.extend(parsed.warnings)
    existing = ws.datasets()
    row = existing[existing["name"] == name]
    if not row.empty and row.iloc[0]["status"] == "ready" and not replace:
        raise IngestError(f"dataset {name!r} already exists; choose another name or replace it")
    resume = not row.empty and row.iloc[0]["status"] == "ingesting" and not replace
    ds_id = ws.create_dataset(name, source=source, replace=replace and not row.empty)
    done: set[str] = set()
    if resume:
        done = set(ws.query("SELECT path FROM items WHERE dataset_id=? UNION SELECT path FROM rejected WHERE dataset_id=?", (ds_id, ds_id))["path"])

    rejected: list[tuple[str, str]] = [(e.path, e.error) for e in entries if e.error]
    rejected += parsed.rejected
    items = []
    accounted = parsed.used | {r[0] for r in rejected}
    for it in parsed.items:
        if it.path in accounted:
            report.warnings.append(f"{it.path} is named more than once by the {chosen.name} manifests; the first is used")
            continue
        accounted.add(it.path)
        items.append(it)
    for e in entries:
        if e.path in accounted:
            continue
        kind = classify_extension(e.path)
        if kind == "audio":
            rejected.append((e.path, f"audio file that no {chosen.name} manifest lists"))
        elif kind == "unsupported":
            rejected.append((e.path, f"unsupported format {PurePosixPath(e.path).suffix}; convert with ffmpeg to WAV or FLAC"))
        elif PurePosixPath(e.path).name.startswith("."):
            rejected.append((e.path, "hidden file, not audio (ignored)"))
        else:
            rejected.append((e.path, "not an audio file"))

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

    total = len(items)
    languages: Counter[str] = Counter()
    for i, e in enumerate(items):
        if progress:
            progress(i, total, e.path)
        if e.path in done:
            report.resumed += 1
            languages.update(_language_of(e))
            continue
        label, why = labels.label(e) if e.error is None else (None, e.error)
        if label is None:
            pending_rej.append((e.path, why or "no label"))
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
        h = ws.put_audio(data)
        info_d = info.to_dict() | {"bit_depth": info.bit_depth}
        pending_clips.append((h, PurePosixPath(e.path).suffix.lower(), info_d))
        pending_items.append((ds_id, e.path, h, label, e.text, e.speaker, e.source, e.split))
        languages.update(_language_of(e))
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
    meta = {"source": source, "ingest": {k: v for k, v in report.to_dict().items() if k not in ("rejected",)}}
    if languages:
        meta["languages"] = dict(languages.most_common())
    ws.set_dataset_status(name, "ready", meta=meta)
    return report


LANGUAGE_FIELDS = ("language", "locale", "lang")
"""Manifest columns that name a clip's spoken language (Common Voice's ``locale``, lhotse's
supervision ``language``): a multilingual speech model transcribes the dataset in it."""


def _language_of(item) -> list[str]:
    """The language an item's manifest names (at most one), as written."""
    for key in LANGUAGE_FIELDS:
        value = str(item.fields.get(key, "") or "").strip()
        if value:
            return [value]
    return []


def path_files(path: str | Path, *, limits: Limits = Limits()) -> Iterable[SourceFile]:
    """The files of a folder or a ``.zip`` file on disk (a folder's are read lazily).

    Raises
    ------
    IngestError
        when the path does not exist, is neither, or the archive is refused as a whole.
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path} does not exist")
    if path.is_dir():
        return folder_source(path)
    if path.suffix.lower() == ".zip":
        try:
            return list(zip_source(path, limits=limits))
        except UnsafeArchive as exc:
            raise IngestError(f"{path.name}: {exc}") from None
    raise IngestError(f"{path} is neither a folder nor a .zip archive")


def upload_files(uploads: list[tuple[str, bytes]], *, limits: Limits = Limits()) -> list[SourceFile]:
    """Files uploaded in the browser; ``.zip`` uploads are expanded safely."""
    files: list[SourceFile] = []
    for fname, data in uploads:
        if fname.lower().endswith(".zip"):
            try:
                files.extend(zip_source(data, limits=limits))
            except UnsafeArchive as exc:
                files.append(SourceFile(fname, lambda: b"", len(data), str(exc)))
        else:
            files.extend(upload_source([(fname, data)]))
    return files


def ingest_path(ws: Workspace, path: str | Path, name: str, *, limits: Limits = Limits(), **kw) -> IngestReport:
    """Ingest a folder or a ``.zip`` file from disk."""
    return ingest_files(ws, path_files(path, limits=limits), name, source=str(Path(path)), limits=limits, **kw)


def ingest_uploads(ws: Workspace, uploads: list[tuple[str, bytes]], name: str, *, limits: Limits = Limits(), **kw) -> IngestReport:
    """Ingest files uploaded in the browser; ``.zip`` uploads are expanded safely."""
    return ingest_files(ws, upload_files(uploads, limits=limits), name, source="upload", limits=limits, **kw)


@dataclass(frozen=True)
class LayoutPreview:
    """What ingesting some files would read, before anything is stored: the layout, its
    items, the splits (with counts) and the columns a ``column=value`` rule can use (with a
    few values each), and how many items the layout labels by itself."""

    layout: str
    items: int
    splits: dict[str, int]
    columns: dict[str, list[str]]
    layout_labels: dict[str, int]


def preview_layout(files: Iterable[SourceFile], *, layout: str = AUTO) -> LayoutPreview:
    """Read ``files`` as :func:`ingest_files` would (no audio is decoded, nothing stored).

    Raises
    ------
    IngestError
        as :func:`ingest_files` does for an unknown, ambiguous or unreadable layout.
    """
    _, chosen, parsed = _read_layout(files, layout)
    splits: dict[str, int] = {}
    columns: dict[str, list[str]] = {}
    labels: dict[str, int] = {}
    for it in parsed.items:
        if it.split:
            splits[it.split] = splits.get(it.split, 0) + 1
        if it.label:
            labels[it.label] = labels.get(it.label, 0) + 1
        for k, v in {**it.fields, "speaker": it.speaker, "source": it.source, "split": it.split}.items():
            seen = columns.setdefault(k, [])
            if v and len(seen) < 5 and v not in seen and len(v) <= 60:
                seen.append(v)
    return LayoutPreview(chosen.name, len(parsed.items), dict(sorted(splits.items())),
                         {k: v for k, v in sorted(columns.items()) if v and not k.startswith("_") and k not in TEXT_COLUMNS}, labels)


def clips_fingerprint(clips) -> str:
    """sha256 over the sorted (clip hash, label) pairs of an analysis table."""
    h = hashlib.sha256()
    for ch, lab in zip(clips["clip_hash"], clips["label"]):
        h.update(f"{ch}:{lab}\n".encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(ws: Workspace, name: str) -> str:
    """Fingerprint of the data a run on ``name`` analyses (see :func:`clips_fingerprint`)."""
    return clips_fingerprint(ws.analysis_clips(name))
