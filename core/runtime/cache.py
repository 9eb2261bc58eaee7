"""Disk cache for per-clip evidence, keyed by what determines it.

key = sha256(model fingerprint, clip content hash, evidence config, analysis rate,
evidence format version). Entries are written atomically one file each, so a killed run
keeps every batch it finished and a rerun computes only the misses.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Collection, Iterator, Sequence

from core.runtime.store import atomic_write
from core.evidence import EVIDENCE_FORMAT_VERSION, MAGIC, ClipEvidence


def evidence_key(fingerprint: str, clip_hash: str, config: dict, analysis_sr: int) -> str:
    blob = json.dumps(
        {"fp": fingerprint, "clip": clip_hash, "cfg": config, "sr": analysis_sr, "v": EVIDENCE_FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class EvidenceCache:
    """Evidence files under ``<cache>/evidence/<fingerprint>/``."""

    def __init__(self, cache_dir: Path):
        self.root = Path(cache_dir) / "evidence"

    def _path(self, fingerprint: str, key: str, suffix: str = ".ev") -> Path:
        return self.root / fingerprint / key[:2] / f"{key}{suffix}"

    def get(self, fingerprint: str, key: str) -> ClipEvidence | None:
        path = self._path(fingerprint, key)
        if not path.exists():
            path = self._path(fingerprint, key, ".npz")  # written by earlier versions
            if not path.exists():
                return None
        try:
            return ClipEvidence.from_bytes(path.read_bytes())
        except Exception:  # a damaged entry is a miss, recomputed and overwritten
            return None

    def put(self, fingerprint: str, key: str, ev: ClipEvidence) -> None:
        atomic_write(self._path(fingerprint, key), ev.to_bytes())

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def count(self) -> int:
        return sum(1 for _ in self._files())

    def _files(self):
        if self.root.exists():
            for pattern in ("*.ev", "*.npz"):
                yield from self.root.rglob(pattern)

    def clear(self, fingerprint: str | None = None) -> None:
        target = self.root / fingerprint if fingerprint else self.root
        shutil.rmtree(target, ignore_errors=True)


def cached_evidence(
    cache: EvidenceCache,
    fingerprint: str,
    clip_hashes: Sequence[str],
    config: dict,
    analysis_sr: int,
    compute: Callable[[list[int]], list[ClipEvidence]] | None,
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    run: Callable[[list[list[int]]], Iterator[tuple[list[int], list[ClipEvidence]]]] | None = None,
    failures: dict[int, str] | None = None,
    legacy: Sequence[dict] = (),
) -> tuple[list[ClipEvidence], int]:
    """Evidence for every clip: cache hits read, misses computed in batches and saved
    after each batch. ``compute(indices)`` returns evidence for those clip indices.

    ``run(batches)``, when given, replaces ``compute``: it yields ``(indices, evidence)``
    for every batch of missing indices, in any order (the Ray executor); each batch is
    saved as it arrives, so a killed run keeps what finished.

    With ``failures`` (a dict), a batch may return a string instead of a clip's evidence:
    the reason that clip could not be scored. It is recorded in ``failures`` under the
    clip's index, nothing is cached for it, and the returned list holds None there.

    ``legacy``: configs under which earlier versions keyed the same evidence; a clip missing
    under ``config`` but found under one of them is copied to ``config``'s key, not computed.

    Returns the evidence in input order and the number of clips computed (misses).
    Raises ``InterruptedError`` when ``cancelled()`` turns true between batches.
    """
    keys = [evidence_key(fingerprint, h, config, analysis_sr) for h in clip_hashes]
    out: list[ClipEvidence | None] = [cache.get(fingerprint, k) for k in keys]
    for old in legacy:
        for i in [i for i, e in enumerate(out) if e is None]:
            ev = cache.get(fingerprint, evidence_key(fingerprint, clip_hashes[i], old, analysis_sr))
            if ev is not None:
                cache.put(fingerprint, keys[i], ev)
                out[i] = ev
    misses = [i for i, e in enumerate(out) if e is None]
    done = len(keys) - len(misses)
    if progress:
        progress(done, len(keys))
    batches = [misses[s : s + batch_size] for s in range(0, len(misses), batch_size)]
    if run is None:
        if compute is None and batches:
            raise ValueError("cached_evidence needs compute or run to fill cache misses")
        results: Iterator = ((idx, compute(idx)) for idx in batches)
    else:
        results = iter(run(batches)) if batches else iter(())
    try:
        while True:
            if cancelled():
                raise InterruptedError("cancelled")
            item = next(results, None)
            if item is None:
                break
            idx, evs = item
            for i, ev in zip(idx, evs):
                if isinstance(ev, str):
                    if failures is None:
                        raise RuntimeError(f"clip {clip_hashes[i]} could not be scored: {ev}")
                    failures[i] = ev
                    continue
                cache.put(fingerprint, keys[i], ev)
                out[i] = ev
            done += len(idx)
            if progress:
                progress(done, len(keys))
    finally:
        close = getattr(results, "close", None)
        if close:
            close()
    missing = [clip_hashes[i] for i, e in enumerate(out) if e is None and i not in (failures or {})]
    if missing:
        raise RuntimeError(f"no evidence came back for {len(missing)} clip(s), e.g. {missing[0]}")
    if failures is not None:
        return out, len(misses)  # type: ignore[return-value]  # None where a clip failed
    return [e for e in out if e is not None], len(misses)


class FeatureCache:
    """Per-clip feature vectors under ``<cache>/features/<name>/`` (one ``.npy`` each).

    ``name`` must encode everything the features depend on (group, config hash, rate).
    """

    def __init__(self, cache_dir: Path, name: str):
        self.root = Path(cache_dir) / "features" / name

    def _path(self, clip_hash: str) -> Path:
        return self.root / clip_hash[:2] / f"{clip_hash}.npy"

    def get(self, clip_hash: str):
        import numpy as np

        path = self._path(clip_hash)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except Exception:
            return None

    def put(self, clip_hash: str, vec) -> None:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(vec, dtype=np.float64), allow_pickle=False)
        atomic_write(self._path(clip_hash), buf.getvalue())


def _clip_of(part: str, path: Path) -> str | None:
    """The clip a cache file belongs to: a feature file is named by it, an evidence file
    carries it in its header (read without the arrays)."""
    if part == "features":
        return path.stem
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 4)
            if head.startswith(MAGIC):
                return json.loads(f.read(int.from_bytes(head[len(MAGIC):], "little")))["clip_hash"]
        return ClipEvidence.from_bytes(path.read_bytes()).clip_hash  # an .npz of an earlier version
    except Exception:  # a damaged entry belongs to no clip; clearing everything still removes it
        return None


def _files(folder: Path, part: str, clips: Collection[str] | None) -> list[Path]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return files if clips is None else [p for p in files if _clip_of(part, p) in clips]


def cache_entries(cache_dir: Path, *, clips: Collection[str] | None = None) -> list[dict]:
    """One row per cache folder: ``part`` (evidence or features), ``name`` (a model
    fingerprint, or a feature set), ``files`` and ``bytes``; with ``clips`` (content hashes),
    only those clips' files count and folders without any are left out. The cache never
    evicts on its own; :func:`clear_cache` removes what the user chooses."""
    rows: list[dict] = []
    root = Path(cache_dir)
    for part in ("evidence", "features"):
        base = root / part
        if not base.is_dir():
            continue
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            files = _files(sub, part, clips)
            if clips is None or files:
                rows.append({"part": part, "name": sub.name, "files": len(files), "bytes": sum(p.stat().st_size for p in files)})
    return rows


def clear_cache(cache_dir: Path, part: str | None = None, name: str | None = None, *,
                clips: Collection[str] | None = None) -> int:
    """Remove cached evidence and features: everything, one ``part``, or one folder of it;
    with ``clips`` (content hashes), only those clips' files. Returns the bytes freed. Runs
    stay; a later audit recomputes what it needs."""
    if part not in (None, "evidence", "features"):
        raise ValueError(f"unknown cache part {part!r}; valid: evidence, features")
    if name is not None and (part is None or "/" in name or name in ("", ".", "..")):
        raise ValueError("a cache folder name needs its part (evidence or features) and no '/'")
    freed = 0
    for row in cache_entries(cache_dir, clips=clips):
        if (part is None or row["part"] == part) and (name is None or row["name"] == name):
            folder = Path(cache_dir) / row["part"] / row["name"]
            if clips is None:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for f in _files(folder, row["part"], clips):
                    f.unlink(missing_ok=True)
                if not any(p.is_file() for p in folder.rglob("*")):
                    shutil.rmtree(folder, ignore_errors=True)  # no empty folder left listed at 0 bytes
            freed += row["bytes"]
    return freed
