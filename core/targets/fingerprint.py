"""Model fingerprints: a hash of the weight files and the config that identifies a model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(files: Iterable[Path], extra: dict | None = None) -> str:
    """sha256 over (file name, file hash) pairs in name order and a canonical JSON ``extra``.

    Returns the first 16 hex digits: enough to key caches, short enough to read.
    """
    h = hashlib.sha256()
    for p in sorted((Path(f) for f in files), key=lambda p: p.name):
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    h.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight and config files of a checkpoint folder (what its fingerprint hashes)."""
    return [
        p
        for p in Path(folder).rglob("*")
        if p.is_file() and p.suffix in {".safetensors", ".json", ".txt", ".model"} and p.name != "card.json"
    ]


def folder_fingerprint(folder: Path, extra: dict | None = None) -> str:
    """Fingerprint of the weight and config files in a checkpoint folder."""
    return fingerprint(checkpoint_files(folder), extra)
