"""Target registry: a spec string (``zoo:<name>`` or a local checkpoint folder) -> adapter.

Loaders register themselves with :func:`register_loader`; implementation modules are
imported explicitly at the bottom of ``core/targets/__init__.py`` so registration happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.targets.base import Target, TargetInfo


@dataclass(frozen=True)
class _Loader:
    name: str
    matches: Callable[[str], bool]
    load: Callable[..., Target]
    listing: Callable[[], list[TargetInfo]]


_LOADERS: dict[str, _Loader] = {}


def register_loader(
    name: str,
    *,
    matches: Callable[[str], bool],
    listing: Callable[[], list[TargetInfo]] = lambda: [],
) -> Callable[[Callable[..., Target]], Callable[..., Target]]:
    """Register ``load(spec, *, device=None, **options) -> Target`` for matching specs."""

    def deco(fn: Callable[..., Target]) -> Callable[..., Target]:
        if name in _LOADERS:
            raise ValueError(f"target loader {name!r} is already registered")
        _LOADERS[name] = _Loader(name, matches, fn, listing)
        return fn

    return deco


def list_targets() -> list[TargetInfo]:
    """Every target the registered loaders can offer without a path (the zoo)."""
    out: list[TargetInfo] = []
    for loader in _LOADERS.values():
        out.extend(loader.listing())
    return out


def load_target(spec: str, *, device: str | None = None, **options) -> Target:
    """Load the target named by ``spec``; raises ``ValueError`` listing valid specs."""
    for loader in _LOADERS.values():
        if loader.matches(spec):
            return loader.load(spec, device=device, **options)
    known = ", ".join(t.spec for t in list_targets()) or "none"
    hint = " (no such local folder)" if not spec.startswith("zoo:") and not Path(spec).exists() else ""
    raise ValueError(f"unknown target {spec!r}{hint}; valid: {known}, or a local checkpoint folder")
