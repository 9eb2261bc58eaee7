"""The plain layouts: ``members/`` + ``nonmembers/`` folders, or a ``metadata.csv`` with
``path,label[,text,speaker,source,split]``; transcripts from the CSV or from sidecar
``.txt``/``.lab`` files next to the audio. Chosen when no other layout is detected."""

from __future__ import annotations

from pathlib import PurePosixPath

from core.data.audio import classify_extension
from core.data.layouts.base import (
    MAX_TEXT_CHARS, Item, LayoutError, Parsed, Tree, decode_text, header, label_from_dirs, label_word, manifest_rows,
    register_layout,
)
from core.data.sources import SourceFile, display_path, safe_relpath


def _read_metadata(entry: SourceFile, warnings: list[str], rejected: list[tuple[str, str]]) -> dict[str, dict]:
    """Rows of a ``metadata.csv`` by dataset-relative path.

    Hostile content never ends the ingest: NUL bytes are removed, over-long fields are
    cut, a row whose path escapes the dataset or is empty is listed in ``rejected``, and a
    path listed twice with different values is rejected rather than silently overwritten.
    """
    cols = header(entry)
    if not {"path", "label"} <= cols:
        raise LayoutError(f"{entry.path} needs the columns path,label (found: {', '.join(sorted(cols)) or 'none'})")
    base = str(PurePosixPath(entry.path).parent)
    rows: dict[str, dict] = {}
    conflicting: set[str] = set()
    for line, row in manifest_rows(entry, warnings):
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
    for rel in conflicting:
        rows[rel] = dict(rows[rel], _conflict="listed more than once in metadata.csv with different values; fix the file")
    return rows


def _detect(tree: Tree) -> bool:
    return bool(tree.named("metadata\\.csv")) or any(label_from_dirs(p) for p in tree.files)


@register_layout(
    "folders", detect=_detect, fallback=True,
    summary="members/ + nonmembers/ folders (also train/test, seen/unseen, suspect/), or a metadata.csv with path,label",
)
def read_folders(tree: Tree) -> Parsed:
    parsed = Parsed()
    metadata: dict[str, dict] = {}
    sidecars: dict[str, SourceFile] = {}
    for path, f in tree.files.items():
        if PurePosixPath(path).name.lower() == "metadata.csv":
            metadata.update(_read_metadata(f, parsed.warnings, parsed.rejected))
            parsed.used.add(path)
        elif classify_extension(path) == "sidecar":
            sidecars[str(PurePosixPath(path).with_suffix(""))] = f
            parsed.used.add(path)
    audio = [p for p in tree.files if classify_extension(p) == "audio"]
    for missing in sorted(set(metadata) - set(audio) - {r[0] for r in parsed.rejected}):
        parsed.warnings.append(f"metadata.csv lists {missing} but no such audio file was found")
    for path in audio:
        meta = metadata.get(path, {})
        if meta.get("_conflict"):
            parsed.rejected.append((path, meta["_conflict"]))
            continue
        label = label_word(meta["label"]) if meta.get("label") else label_from_dirs(path)
        text = meta.get("text", "")
        stem = str(PurePosixPath(path).with_suffix(""))
        if not text and stem in sidecars:
            text = decode_text(sidecars[stem].read(), sidecars[stem].path, parsed.warnings)
        parsed.items.append(Item(
            path=path, read=tree.files[path].read, label=label,
            label_error=f"unknown label {meta['label']!r} in metadata.csv (use member/nonmember)" if meta.get("label") and label is None else None,
            text=text, speaker=meta.get("speaker", ""), source=meta.get("source", ""), split=meta.get("split", ""),
            fields=meta,
        ))
    return parsed

