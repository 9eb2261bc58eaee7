"""Hugging Face ``datasets`` on disk, read without the hub: ``save_to_disk`` folders
(``[split/]data-NNNNN-of-NNNNN.arrow`` Arrow stream files + ``dataset_info.json`` +
``state.json``) and Parquet files (``data/train-00000-of-00001.parquet``), with an
``Audio`` column stored as a struct ``{bytes, path}``.

Embedded bytes are stored as the clip (its path is ``TABLE#ROW/NAME``); a row with only a
``path`` is the file of the dataset it names, or is listed with a reason (nothing is
fetched). The split is ``state.json``'s ``_split``, the Parquet name's prefix
(``train-00000-of-00001``) or a split folder. A ``label`` column is not taken as
membership (it is usually a class); label with ``--members label=1`` instead.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

from core.data.layouts.base import (
    SPEAKER_COLUMNS, SPLIT_NAME, TEXT_COLUMNS, Item, LayoutError, Parsed, Tree, cut_text, first_column,
    label_from_dirs, register_layout, split_from_dirs,
)
from core.data.sources import display_path

_TABLES = r".+\.(arrow|parquet)"
_INFO = r"(state|dataset_info|dataset_dict)\.json"
MAX_TABLE_BYTES = 4 * 1024**3
"""Largest Arrow or Parquet file read (a table is read whole; the hub writes 0.5 GB shards)."""


def _json(tree: Tree, path: str) -> dict:
    f = tree.get(path)
    try:
        obj = json.loads(f.read()) if f is not None else {}
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_table(tree: Tree, path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    entry = tree.files[path]
    if entry.size > MAX_TABLE_BYTES:
        raise LayoutError(f"{path}: {entry.size / 1e9:.1f} GB, over the {MAX_TABLE_BYTES / 1e9:.0f} GB a table may have (save it in smaller shards)")
    data = entry.read()
    try:
        if path.lower().endswith(".parquet"):
            return pq.read_table(pa.BufferReader(data))
        try:
            return pa.ipc.open_stream(pa.BufferReader(data)).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise LayoutError(f"{path}: not a readable {PurePosixPath(path).suffix[1:]} table ({str(exc)[:160]})") from None


def _audio_columns(table, features: dict) -> list[str]:
    """Columns declared ``Audio`` (in the table's ``huggingface`` metadata or ``dataset_info.json``),
    else struct columns with ``bytes`` and ``path`` fields."""
    import pyarrow as pa

    meta = (table.schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            features = (json.loads(meta).get("info") or {}).get("features") or features
        except (ValueError, AttributeError):
            pass
    declared = [k for k, v in (features or {}).items() if isinstance(v, dict) and v.get("_type") == "Audio" and k in table.column_names]
    if declared:
        return declared
    return [f.name for f in table.schema if pa.types.is_struct(f.type) and {"bytes", "path"} <= {c.name for c in f.type}]


def _split(path: str, state: dict) -> str:
    if isinstance(state.get("_split"), str) and state["_split"]:
        return state["_split"]
    m = re.fullmatch(r"(.+?)(-\d{5}-of-\d{5})?\.(parquet|arrow)", PurePosixPath(path).name)
    if m and SPLIT_NAME.fullmatch(m.group(1)):
        return m.group(1)
    return split_from_dirs(path)


def _scalar(v: object) -> bool:
    return isinstance(v, (str, int, float, bool))


def _detect(tree: Tree) -> bool:
    return bool(tree.named(r".+\.parquet")) or any("_data_files" in _json(tree, p) for p in tree.named(r"state\.json"))


@register_layout("hf-datasets", detect=_detect, summary="Hugging Face datasets on disk: save_to_disk folders (data-*.arrow + state.json) or Parquet files with an Audio column")
def read_hf(tree: Tree) -> Parsed:
    import pyarrow.compute as pc

    parsed = Parsed()
    parsed.used.update(tree.named(_INFO))
    for tbl in tree.named(_TABLES):
        parsed.used.add(tbl)
        folder = str(PurePosixPath(tbl).parent)
        state = _json(tree, f"{folder}/state.json" if folder != "." else "state.json")
        info = _json(tree, f"{folder}/dataset_info.json" if folder != "." else "dataset_info.json")
        try:
            table = _read_table(tree, tbl)
        except LayoutError as exc:
            parsed.rejected.append((tbl, str(exc).split(": ", 1)[1]))
            continue
        audio_cols = _audio_columns(table, info.get("features") or {})
        if not audio_cols:
            parsed.rejected.append((tbl, f"no Audio column (columns: {', '.join(table.column_names)[:200]})"))
            continue
        col = audio_cols[0]
        if len(audio_cols) > 1:
            parsed.warnings.append(f"{tbl}: several audio columns ({', '.join(audio_cols)}); {col!r} is used")
        split = _split(tbl, state)
        audio = table.column(col).combine_chunks()
        blobs = pc.struct_field(audio, "bytes")
        refs = pc.struct_field(audio, "path").to_pylist()
        has_bytes = pc.and_(pc.is_valid(blobs), pc.greater(pc.binary_length(blobs), 0)).fill_null(False).to_pylist()
        rows = table.drop_columns(audio_cols).to_pylist()
        for i, row in enumerate(rows):
            row = {str(k).lower(): v for k, v in row.items()}
            where = f"{tbl} row {i}"
            fields = {k: str(v) for k, v in row.items() if _scalar(v)} | {"split": split}
            ref = str(refs[i] or "")
            if has_bytes[i]:
                name = display_path(PurePosixPath(ref.replace("\\", "/")).name) if ref else "audio"
                path, read = f"{tbl}#{i}/{name}", (lambda i=i, b=blobs: b[i].as_py())  # read lazily, one clip at a time
            else:
                found = tree.resolve(ref, base=folder) if ref else None
                if found is None:
                    parsed.rejected.append((f"{tbl}#{i}", f"no audio bytes, and its path {ref[:200]!r} is not a file of the dataset (nothing is downloaded)"))
                    continue
                path, read = found, tree.files[found].read
            parsed.items.append(Item(
                path=path, read=read, label=label_from_dirs(tbl), split=split, fields=fields,
                text=cut_text(first_column(fields, TEXT_COLUMNS), where, parsed.warnings),
                speaker=first_column(fields, SPEAKER_COLUMNS), source=str(fields.get("source", "")),
            ))
    return parsed
