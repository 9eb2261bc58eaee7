"""lhotse manifests: a ``RecordingSet`` (``*recordings*.jsonl[.gz]``) with its
``SupervisionSet`` (``*supervisions*.jsonl[.gz]``), or a ``CutSet`` (``*cuts*.jsonl[.gz]``).

One item per recording file: its supervisions' texts joined in time order, its speaker
(speakers joined with ``+`` when several talk), language, gender and ``custom`` fields
kept for ``column=value`` labels. Only ``file`` sources are read, and only files inside the
dataset (an absolute path written on another machine is matched by its tail); ``url``,
``command`` and in-memory sources are listed with a reason, a ``command`` is never run.
The split is the manifest name's suffix (``librispeech_recordings_dev-clean`` -> ``dev-clean``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from core.data.layouts.base import Item, Parsed, Tree, cut_text, label_from_dirs, manifest_rows, register_layout, split_from_dirs

_MANIFEST = r"(?:.*[_-])?(recordings|supervisions|cuts)(?:[_-](.+?))?\.jsonl(?:\.gz)?"


def _split(path: str) -> str:
    m = re.fullmatch(_MANIFEST, PurePosixPath(path).name, re.IGNORECASE)
    return (m.group(2) if m and m.group(2) else "") or split_from_dirs(path)


def _kind(path: str) -> str:
    m = re.fullmatch(_MANIFEST, PurePosixPath(path).name, re.IGNORECASE)
    return m.group(1).lower() if m else ""


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _start(sup: dict) -> float:
    try:
        return float(sup.get("start") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _stem(path: str) -> str:
    return path.lower().removesuffix(".gz")


def _detect(tree: Tree) -> bool:
    kinds = {_kind(p) for p in tree.named(_MANIFEST)}
    return "cuts" in kinds or "recordings" in kinds


def _item(tree: Tree, rec: dict, sups: list[dict], *, where: str, split: str, parsed: Parsed) -> None:
    rid = str(rec.get("id", ""))
    sources = [s for s in _list(rec.get("sources")) if isinstance(s, dict)]
    files = [s for s in sources if s.get("type") == "file"]
    others = sorted({str(s.get("type")) for s in sources} - {"file"})
    if others or len(files) != 1:
        why = f"source type {', '.join(others)} is not read (only files inside the dataset)" if others else f"{len(files)} source files (lhotse keeps one per channel); ingest the files as a folder instead"
        parsed.rejected.append((f"{where}: recording {rid[:100]}", why))
        return
    ref = str(files[0].get("source", ""))
    path = tree.resolve(ref, base=str(PurePosixPath(where.split(" line")[0]).parent))
    if path is None:
        parsed.warnings.append(f"{where}: recording {rid[:100]} names {ref[:200]!r}, which is not a file of the dataset")
        return
    unique = {str(s.get("id", i)): s for i, s in enumerate(sups)}  # overlapping cuts repeat supervisions
    sups = sorted(unique.values(), key=_start)
    speakers = list(dict.fromkeys(str(s["speaker"]) for s in sups if s.get("speaker")))
    fields: dict[str, str] = {"recording_id": rid, "split": split}
    for s in sups:
        custom = s.get("custom") if isinstance(s.get("custom"), dict) else {}
        for k, v in {**custom, **{k: s.get(k) for k in ("language", "gender")}}.items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                fields.setdefault(str(k).lower(), str(v))
    text = " ".join(str(s.get("text") or "").strip() for s in sups if s.get("text"))
    parsed.items.append(Item(
        path=path, read=tree.files[path].read, label=label_from_dirs(path), text=cut_text(text, where, parsed.warnings),
        speaker="+".join(speakers), source=rid, split=split or split_from_dirs(path), fields={**fields, "speaker": "+".join(speakers)},
    ))


@register_layout("lhotse", detect=_detect, summary="lhotse: recordings.jsonl(.gz) + supervisions.jsonl(.gz), or cuts.jsonl(.gz)")
def read_lhotse(tree: Tree) -> Parsed:
    parsed = Parsed()
    manifests = tree.named(_MANIFEST)
    parsed.used.update(manifests)
    for m in manifests:
        kind, split = _kind(m), _split(m)
        if kind == "supervisions":
            continue
        recs: dict[str, tuple[dict, str]] = {}
        sups: dict[str, list[dict]] = {}
        if kind == "recordings":
            for n, row in manifest_rows(tree.files[m], parsed.warnings):
                recs.setdefault(str(row.get("id", "")), (row, f"{m} line {n}"))
            want = _stem(m.replace("recordings", "supervisions"))
            partner = next((p for p in manifests if _stem(p) == want), "")
            if not partner:
                parsed.warnings.append(f"{m}: no supervisions manifest beside it; recordings stored without text or speaker")
            for _n, row in manifest_rows(tree.files[partner], parsed.warnings) if partner else []:
                sups.setdefault(str(row.get("recording_id", "")), []).append(row)
        else:
            for n, cut in manifest_rows(tree.files[m], parsed.warnings):
                rec = cut.get("recording")
                if not isinstance(rec, dict):
                    parsed.rejected.append((f"{m} line {n}: cut {str(cut.get('id', ''))[:100]}", f"{cut.get('type', 'cut')} without a single recording (mixed cuts are not read)"))
                    continue
                rid = str(rec.get("id", ""))
                recs.setdefault(rid, (rec, f"{m} line {n}"))
                sups.setdefault(rid, []).extend(s for s in _list(cut.get("supervisions")) if isinstance(s, dict))
        for rid in sorted(set(sups) - set(recs)):
            parsed.warnings.append(f"{m}: supervisions for recording {rid[:100]!r}, which no recording manifest lists")
        for rid, (rec, where) in recs.items():
            _item(tree, rec, sups.get(rid, []), where=where, split=split, parsed=parsed)
    return parsed
