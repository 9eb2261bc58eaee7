"""Mozilla Common Voice: ``*.tsv`` files with ``client_id`` (the speaker), ``path`` (a
file in ``clips/``) and ``sentence``, beside the ``clips/`` folder.

A clip listed in several files (``train.tsv`` and ``validated.tsv``) is stored once, with
the split of the first of ``train``, ``dev``, ``test`` that lists it (else the first file in
name order); every column (``age``, ``gender``, ``accents``, ``locale``, ...) is kept for
``column=value`` labels.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from core.data.layouts.base import Item, Parsed, Tree, header, manifest_rows, register_layout, row_item

_NEEDED = {"client_id", "path", "sentence"}
_ORDER = ("train", "dev", "test")


def _manifests(tree: Tree) -> list[str]:
    found = [p for p in tree.named(r".+\.tsv") if _NEEDED <= header(tree.files[p])]
    rank = {s: i for i, s in enumerate(_ORDER)}
    return sorted(found, key=lambda p: (rank.get(PurePosixPath(p).stem.lower(), len(rank)), p))


@register_layout("commonvoice", detect=lambda tree: bool(_manifests(tree)), summary="Common Voice: *.tsv with client_id, path, sentence + clips/")
def read_commonvoice(tree: Tree) -> Parsed:
    parsed = Parsed()
    seen: dict[str, Item] = {}
    parsed.used.update(tree.named(r".+\.tsv"))  # clip_durations.tsv, reported.tsv, ...: no clips of their own
    for tsv in _manifests(tree):
        base = str(PurePosixPath(tsv).parent)
        split = PurePosixPath(tsv).stem
        for n, row in manifest_rows(tree.files[tsv], parsed.warnings):
            where = f"{tsv} line {n}"
            ref = row.get("path", "")
            if not ref:
                parsed.warnings.append(f"{where}: no path; row ignored")
                continue
            clips_ref = ref if "/" in ref else f"clips/{ref}"
            item = row_item(tree, clips_ref, dict(row, split=split), base=base, where=where, parsed=parsed)
            if item is not None and item.path not in seen:
                seen[item.path] = item
                parsed.items.append(item)
    return parsed
