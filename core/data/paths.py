"""Server-folder access: only folders under configured roots may be loaded."""

from __future__ import annotations

from pathlib import Path


def resolve_under_roots(path: str | Path, roots: tuple[Path, ...]) -> Path:
    """Resolve ``path`` (relative to the first root when not absolute) and check that it
    lies under one of ``roots`` after following symlinks.

    Raises
    ------
    PermissionError
        for ``..`` escapes, symlinks out of the roots and absolute paths elsewhere.
    FileNotFoundError
        when the folder does not exist.
    """
    if not roots:
        raise PermissionError("no folders are allowed (no roots configured)")
    p = Path(path).expanduser()
    candidate = p if p.is_absolute() else roots[0] / p
    real = candidate.resolve()
    allowed = [r.resolve() for r in roots]
    if not any(real == r or r in real.parents for r in allowed):
        listing = ", ".join(str(r) for r in allowed)
        raise PermissionError(f"{path} is outside the allowed folders ({listing}); set OVERHEARD_ROOTS to allow more")
    if not real.exists():
        raise FileNotFoundError(f"{real} does not exist")
    return real
