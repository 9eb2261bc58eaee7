"""Hugging Face ``audiofolder``: ``metadata.csv`` or ``metadata.jsonl`` with a
``file_name`` column (relative to the metadata file) and a text column
(``transcription``, ``text``, ``sentence`` or ``caption``), optionally in split folders
(``train/``, ``test/``, ...). Every other column is kept for ``column=value`` labels."""

from __future__ import annotations

from pathlib import PurePosixPath

from core.data.layouts.base import Parsed, Tree, header, manifest_rows, register_layout, row_item, split_from_dirs

_METADATA = r"metadata\.(csv|jsonl)"


def _detect(tree: Tree) -> bool:
    return any("file_name" in header(tree.files[p]) for p in tree.named(_METADATA))


@register_layout("audiofolder", detect=_detect, summary="Hugging Face audiofolder: [split/]metadata.csv or .jsonl with file_name + transcription/text/sentence/caption")
def read_audiofolder(tree: Tree) -> Parsed:
    parsed = Parsed()
    for meta in tree.named(_METADATA):
        parsed.used.add(meta)
        base = str(PurePosixPath(meta).parent)
        split = split_from_dirs(meta)
        for n, row in manifest_rows(tree.files[meta], parsed.warnings):
            ref = str(row.get("file_name") or "")
            where = f"{meta} line {n}"
            if not ref:
                parsed.warnings.append(f"{where}: no file_name; row ignored")
                continue
            item = row_item(tree, ref, row, base=base, where=where, parsed=parsed, split=split)
            if item is not None:
                parsed.items.append(item)
    return parsed
