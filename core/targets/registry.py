"""Target registry: a spec string (``zoo:<name>`` or a local checkpoint folder) -> adapter.

Loaders register themselves with :func:`register_loader`; implementation modules are
imported explicitly at the bottom of ``core/targets/__init__.py`` so registration happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.registry import Registry, UnknownName
from core.targets.base import Family, Target, TargetInfo


@dataclass(frozen=True)
class _Loader:
    name: str
    matches: Callable[[str], bool]
    load: Callable[..., Target]
    listing: Callable[[], list[TargetInfo]]
    family: Callable[[str], Family]
    access: tuple[str, ...] = ("white-box", "outputs")


_LOADERS: Registry[_Loader] = Registry("target loader")


def register_loader(
    name: str,
    *,
    matches: Callable[[str], bool],
    listing: Callable[[], list[TargetInfo]] = lambda: [],
    family: Callable[[str], Family],
    access: tuple[str, ...] = ("white-box", "outputs"),
) -> Callable[[Callable[..., Target]], Callable[..., Target]]:
    """Register ``load(spec, *, device=None, **options) -> Target`` for matching specs;
    ``family(spec)`` names the family of a matching spec without loading any weights;
    ``access`` the access levels its targets support (a remote API: outputs only)."""

    def deco(fn: Callable[..., Target]) -> Callable[..., Target]:
        _LOADERS.add(name, _Loader(name, matches, fn, listing, family, tuple(access)))
        return fn

    return deco


def list_targets() -> list[TargetInfo]:
    """Every target the registered loaders can offer without a path (the zoo)."""
    out: list[TargetInfo] = []
    for loader in _LOADERS.values():
        out.extend(loader.listing())
    return out


def _loader(spec: str) -> _Loader:
    for loader in _LOADERS.values():
        if loader.matches(spec):
            return loader
    valid = tuple(t.spec for t in list_targets())
    hint = " (no such local folder)" if not spec.startswith("zoo:") and not Path(spec).exists() else ""
    raise UnknownName(f"unknown target {spec!r}{hint}; valid: {', '.join(valid) or 'none'}, or a local checkpoint folder",
                      name=spec, valid=valid)


def target_family(spec: str) -> Family:
    """The family of the target ``spec`` names, read from its registration or its folder's
    metadata: no weights are loaded."""
    return _loader(spec).family(spec)


def family_of(spec: str | None) -> Family | None:
    """:func:`target_family`, or None for a spec no loader knows any more (a stored run's)."""
    try:
        return target_family(spec) if spec else None
    except ValueError:
        return None


def target_access(spec: str) -> tuple[str, ...]:
    """The access levels the target ``spec`` names supports, without loading it."""
    return _loader(spec).access


def load_target(spec: str, *, device: str | None = None, **options) -> Target:
    """Load the target named by ``spec``; an unknown spec raises
    :class:`core.registry.UnknownName` (a ``ValueError``) listing the valid ones."""
    return _loader(spec).load(spec, device=device, **options)
