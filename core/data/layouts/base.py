"""What a dataset layout is: a detector and a reader over a dataset's files.

A layout turns the files of a folder, zip or upload (:class:`~core.data.sources.SourceFile`
entries with dataset-relative POSIX paths) into :class:`Item` records, the rows ingestion
stores: audio bytes (read lazily), the label the layout itself gives (folder names, a
``label`` column) and text, speaker, source and split, plus every other column of the
layout's manifests for ``column=value`` labelling rules. A layout never opens anything
outside the files it is given, so path safety is the sources' (``..`` and absolute paths
in a manifest are resolved against the given files only).

Adding a layout is one module with one decorated reader::

    @register_layout("name", detect=lambda tree: ..., summary="one line for help texts")
    def read_name(tree: Tree) -> Parsed: ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Mapping

from core.data.sources import LABEL_DIRS, SPLIT_NAME, SourceFile, display_path, safe_relpath
from core.registry import Registry


class LayoutError(ValueError):
    """A layout's manifest cannot be used at all (with the reason)."""


@dataclass(frozen=True)
class Item:
    """One audio file (or one row of a table holding audio) of a dataset.

    ``label`` is what the layout itself says (``member``/``nonmember`` or None);
    ``label_error`` a reason it could not say (an unknown word in a ``label`` column);
    ``error`` a reason the item cannot be stored at all; ``fields`` every manifest column
    (lower-case names) for ``column=value`` labelling rules.
    """

    path: str
    read: Callable[[], bytes]
    label: str | None = None
    text: str = ""
    speaker: str = ""
    source: str = ""
    split: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    label_error: str | None = None


@dataclass
class Parsed:
    """A layout's reading of a dataset: its items, files it refused (path, reason), the
    manifest files it used, and warnings. Files that are none of these are listed by
    ingestion with a generic reason."""

    items: list[Item] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


class Tree:
    """The files of one dataset by relative path, with the lookups layouts need."""

    def __init__(self, files: list[SourceFile]):
        self.files = {f.path: f for f in files if f.error is None}
        self._by_name: dict[str, list[str]] | None = None

    def __contains__(self, path: str) -> bool:
        return path in self.files

    def get(self, path: str) -> SourceFile | None:
        return self.files.get(path)

    def named(self, pattern: str) -> list[str]:
        """Paths whose file name matches the regular expression ``pattern`` (whole name, case-insensitive)."""
        rx = re.compile(pattern, re.IGNORECASE)
        return [p for p in self.files if rx.fullmatch(PurePosixPath(p).name)]

    def resolve(self, ref: str, *, base: str = "") -> str | None:
        """The file a manifest's reference ``ref`` means, or None.

        A relative reference is taken from the manifest's folder ``base`` (then from the
        dataset root); an absolute or ``..`` reference, which may not leave the dataset, is
        matched by its longest tail that names exactly one file of the dataset (manifests
        written on another machine keep absolute paths).
        """
        ref = display_path(ref.strip())
        safe = safe_relpath(ref)
        if safe is not None and safe not in ("", "."):
            for cand in (str(PurePosixPath(base) / safe) if base not in ("", ".") else safe, safe):
                if cand in self.files:
                    return cand
        parts = [p for p in PurePosixPath(ref.replace("\\", "/")).parts if p not in ("/", "..", ".")]
        if not parts:
            return None
        if self._by_name is None:  # built once: manifests with absolute paths name every file
            self._by_name = {}
            for p in self.files:
                self._by_name.setdefault(PurePosixPath(p).name, []).append(p)
        same_name = self._by_name.get(parts[-1], [])
        for start in range(len(parts)):
            tail = "/".join(parts[start:])
            hits = [p for p in same_name if p == tail or p.endswith("/" + tail)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                return None
        return None


@dataclass(frozen=True)
class LayoutInfo:
    """A registered layout. ``fallback`` layouts are chosen only when no other one is detected."""

    name: str
    detect: Callable[[Tree], bool]
    read: Callable[[Tree], Parsed]
    summary: str
    fallback: bool = False


LAYOUTS: Registry[LayoutInfo] = Registry("dataset layout")


def register_layout(name: str, *, detect: Callable[[Tree], bool], summary: str, fallback: bool = False) -> Callable[[Callable], Callable]:
    """``@register_layout(name, detect=..., summary=...)`` on a ``read(tree) -> Parsed`` function."""
    return LAYOUTS.decorator(name, lambda fn: LayoutInfo(name, detect, fn, summary, fallback))


TEXT_COLUMNS = ("transcription", "text", "sentence", "caption", "transcript", "normalized_text")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id", "spk", "spk_id")
MAX_TEXT_CHARS = 10_000
"""Transcripts or captions longer than this are cut (with a warning): no real one is."""


def decode_text(data: bytes, where: str, warnings: list[str]) -> str:
    """UTF-8 text (Latin-1 with a warning when it is not)."""
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        warnings.append(f"{where}: not valid UTF-8; read as Latin-1, check the text")
        return data.decode("latin-1").strip()


def label_word(value: str) -> str | None:
    """``member``/``nonmember`` for a label word (``member``, ``train``, ``1``, ``P``, ...), else None."""
    from core.runtime.store import MEMBER, NONMEMBER

    words = {**LABEL_DIRS, "1": MEMBER, "0": NONMEMBER, "p": MEMBER, "u": NONMEMBER, "in": MEMBER, "out": NONMEMBER}
    return words.get(value.strip().lower().replace(" ", ""))


def label_from_dirs(path: str) -> str | None:
    """The label a folder of ``path`` names (``members/``, ``test/``, ...), else None."""
    for part in PurePosixPath(path).parts[:-1]:
        label = LABEL_DIRS.get(part.lower())
        if label:
            return label
    return None


def split_from_dirs(path: str) -> str:
    """The first folder of ``path`` that names a split, else ``""``."""
    return next((p for p in PurePosixPath(path).parts[:-1] if SPLIT_NAME.fullmatch(p)), "")


def first_column(row: Mapping[str, str], names: tuple[str, ...]) -> str:
    return next((str(row[n]).strip() for n in names if row.get(n) not in (None, "")), "")


def cut_text(value: str, where: str, warnings: list[str]) -> str:
    if len(value) > MAX_TEXT_CHARS:
        warnings.append(f"{where}: {len(value):,} characters; cut to {MAX_TEXT_CHARS:,}")
        return value[:MAX_TEXT_CHARS]
    return value


def row_item(tree: Tree, ref: str, row: Mapping[str, str], *, base: str, where: str, parsed: Parsed, split: str = "") -> Item | None:
    """The item a manifest row names (``ref``: its audio reference), with text, speaker and
    label from the row's usual columns; a reference to no file of the dataset is a warning."""
    path = tree.resolve(ref, base=base)
    if path is None:
        parsed.warnings.append(f"{where}: lists {display_path(ref[:200])!r} but no such audio file was found")
        return None
    raw_label = str(row.get("label", "") or "").strip()
    label = label_word(raw_label) if raw_label else label_from_dirs(path)
    f = tree.files[path]
    return Item(
        path=path, read=f.read, label=label,
        label_error=f"unknown label {raw_label!r} in {where.split(' line')[0]} (use member/nonmember)" if raw_label and label is None else None,
        text=cut_text(first_column(row, TEXT_COLUMNS), where, parsed.warnings),
        speaker=first_column(row, SPEAKER_COLUMNS), source=str(row.get("source", "") or ""),
        split=str(row.get("split", "") or "") or split or split_from_dirs(path),
        fields={k: str(v) for k, v in row.items() if v is not None and not isinstance(v, (bytes, dict, list))},
    )


MAX_MANIFEST_BYTES = 512 * 1024**2
"""Largest manifest read once decompressed (a ``.gz`` that expands beyond it is refused)."""


def manifest_rows(entry: SourceFile, warnings: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row with lower-case column names) of a ``.csv``, ``.tsv`` or
    ``.jsonl`` manifest, gzipped or not. A line that is not a JSON object is a warning;
    NUL bytes are removed."""
    import csv
    import gzip
    import io
    import json

    if entry.size > MAX_MANIFEST_BYTES:
        raise LayoutError(f"{entry.path}: {entry.size / 1e6:.0f} MB, over the {MAX_MANIFEST_BYTES / 1e6:.0f} MB a manifest may have (refused)")
    data = entry.read()
    name = entry.path.lower()
    if name.endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(MAX_MANIFEST_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise LayoutError(f"{entry.path}: not a readable gzip file ({exc})") from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise LayoutError(f"{entry.path}: expands beyond {MAX_MANIFEST_BYTES / 1e6:.0f} MB (refused)")
        name = name[:-3]
    text = decode_text(data, entry.path, warnings)
    if "\x00" in text:
        warnings.append(f"{entry.path}: {text.count(chr(0))} NUL byte(s) removed")
        text = text.replace("\x00", "")
    rows: list[tuple[int, dict[str, str]]] = []
    if name.endswith(".jsonl") or name.endswith(".json"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                warnings.append(f"{entry.path} line {n}: not a JSON object; line ignored")
                continue
            rows.append((n, {str(k).strip().lower(): v for k, v in obj.items()}))
        return rows
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    # Common Voice writes sentences with bare quotes: a .tsv is split on tabs only
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if name.endswith(".tsv") else ",",
                            quoting=csv.QUOTE_NONE if name.endswith(".tsv") else csv.QUOTE_MINIMAL)
    try:
        for n, row in enumerate(reader, start=2):
            rows.append((n, {k.strip().lower(): (v if isinstance(v, str) else "").strip() for k, v in row.items() if isinstance(k, str) and k}))
    except csv.Error as exc:
        raise LayoutError(f"{entry.path} line {reader.line_num}: not readable ({exc})") from None
    return rows


def header(entry: SourceFile) -> set[str]:
    """Lower-case column names of a small text manifest's first line (JSON keys for ``.jsonl``)."""
    import json

    first = entry.read()[:65536].split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip()
    if entry.path.lower().endswith((".jsonl", ".json")):
        try:
            obj = json.loads(first)
        except ValueError:
            return set()
        return {str(k).lower() for k in obj} if isinstance(obj, dict) else set()
    sep = "\t" if entry.path.lower().endswith(".tsv") else ","
    return {c.strip().strip('"').lower() for c in first.split(sep)}
