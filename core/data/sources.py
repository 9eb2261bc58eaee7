"""Where files come from: a folder, a zip archive, or uploaded (name, bytes) pairs.

Each source yields :class:`SourceFile` entries with a POSIX relative path and a lazy
reader, so a large folder is never held in memory. Unsafe entries are yielded with an
``error`` so ingestion lists them instead of dropping them.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

from core.runtime.settings import Limits


@dataclass(frozen=True)
class SourceFile:
    path: str
    read: Callable[[], bytes]
    size: int
    error: str | None = None


class UnsafeArchive(ValueError):
    """The whole archive is refused (zip bomb, too many files, unreadable)."""


def safe_relpath(name: str) -> str | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    if any(part == ".." for part in p.parts):
        return None
    return str(p)


def display_path(rel: str) -> str:
    """A file name that can be stored and shown: bytes that are not UTF-8 (which the file
    system hands over as surrogate escapes) are written as ``\\xNN``, so the name stays
    readable and distinct; control characters likewise."""
    import os
    import re

    if any("\udc80" <= ch <= "\udcff" for ch in rel):
        rel = os.fsencode(rel).decode("utf-8", "backslashreplace")
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", rel)


def folder_source(root: Path) -> Iterator[SourceFile]:
    """Files under ``root`` (sorted); symlinks pointing outside ``root`` are refused.
    Names that are not valid UTF-8 are stored under :func:`display_path`."""
    root = Path(root).resolve()
    for path in sorted(root.rglob("*")):
        rel = display_path(path.relative_to(root).as_posix())
        if path.is_symlink():
            target = path.resolve()
            if root not in target.parents:
                yield SourceFile(rel, lambda: b"", 0, "symlink pointing outside the folder (refused)")
                continue
        if not path.is_file():
            continue
        yield SourceFile(rel, path.read_bytes, path.stat().st_size)


def zip_source(path_or_bytes: Path | bytes, *, limits: Limits = Limits()) -> Iterator[SourceFile]:
    """Entries of a zip archive, checked before anything is decompressed.

    Refuses the whole archive when the declared total size, entry count or compression
    ratio exceeds ``limits`` (zip bombs); refuses single entries with absolute paths,
    ``..`` components (zip slip) or symlink modes. Reads are bounded by the declared
    size, so a lying header cannot inflate memory.
    """
    import io

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        zf = zipfile.ZipFile(src)
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeArchive(f"not a readable zip archive ({exc})") from None
    if len(infos) > limits.zip_max_files:
        raise UnsafeArchive(f"archive has {len(infos)} files (limit {limits.zip_max_files})")
    total = sum(i.file_size for i in infos)
    packed = max(1, sum(i.compress_size for i in infos))
    if total > limits.zip_max_total_bytes:
        raise UnsafeArchive(f"archive expands to {total / 1e9:.2f} GB (limit {limits.zip_max_total_bytes / 1e9:.2f} GB)")
    if total / packed > limits.zip_max_ratio:
        raise UnsafeArchive(f"compression ratio {total / packed:.0f}:1 exceeds {limits.zip_max_ratio:.0f}:1 (zip bomb?)")

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                with zf.open(info) as f:
                    data = f.read(info.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
                # a damaged or encrypted entry: refuse it, keep the rest of the archive
                raise UnsafeArchive(f"corrupt or unsupported archive entry ({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__})") from None
            if len(data) > info.file_size:
                raise UnsafeArchive(f"{info.filename}: entry larger than its declared size")
            return data

        return read

    for info in sorted(infos, key=lambda i: i.filename):
        rel = safe_relpath(display_path(info.filename))
        mode = info.external_attr >> 16
        if rel is None:
            yield SourceFile(display_path(info.filename), lambda: b"", 0, "path escapes the archive (absolute or '..'; refused)")
        elif stat.S_ISLNK(mode):
            yield SourceFile(rel, lambda: b"", 0, "symbolic link inside the archive (refused)")
        elif info.file_size > limits.max_file_bytes:
            yield SourceFile(rel, lambda: b"", info.file_size, f"file too large ({info.file_size / 1e6:.1f} MB)")
        else:
            yield SourceFile(rel, reader(info), info.file_size)


def upload_source(files: Iterable[tuple[str, bytes]]) -> Iterator[SourceFile]:
    """Files uploaded in the browser, as (relative name, bytes)."""
    for name, data in sorted(files, key=lambda f: f[0]):
        name = display_path(name)
        rel = safe_relpath(name)
        if rel is None:
            yield SourceFile(name, lambda: b"", 0, "unsafe file name (absolute or '..'; refused)")
        else:
            yield SourceFile(rel, (lambda d=data: d), len(data))


def strip_common_root(files: list[SourceFile]) -> list[SourceFile]:
    """Drop a single top folder shared by every entry (``corpus/members/a.wav`` ->
    ``members/a.wav``), as zips and browser folder uploads usually have one. A label
    folder or a split folder (``dev-clean/``) is kept: it says what the files are."""
    parts = [PurePosixPath(f.path).parts for f in files if f.error is None]
    if not parts or any(len(p) < 2 for p in parts):
        return files
    first = parts[0][0]
    if all(p[0] == first for p in parts) and first.lower() not in LABEL_DIRS and not SPLIT_NAME.fullmatch(first):
        out = []
        for f in files:
            pp = PurePosixPath(f.path).parts
            out.append(SourceFile(str(PurePosixPath(*pp[1:])) if len(pp) > 1 and pp[0] == first else f.path, f.read, f.size, f.error))
        return strip_common_root(out)
    return files


LABEL_DIRS = {
    "members": "member", "member": "member", "train": "member", "seen": "member", "suspect": "member",
    "suspects": "member", "nonmembers": "nonmember", "nonmember": "nonmember", "non-members": "nonmember",
    "non_members": "nonmember", "test": "nonmember", "unseen": "nonmember",
}

SPLIT_NAME = re.compile(r"(train|dev|test|valid|validation|eval|evaluation)([-_.][\w.-]*)?", re.IGNORECASE)
"""Folder or file names that name a split (``train``, ``dev-clean``, ``train-clean-100``, ...)."""
