"""Target registry: a spec string (``zoo:<name>``, a local checkpoint folder, a cached hub
id, an API base) -> a :class:`TargetRef` -> an adapter.

Loaders register themselves with :func:`register_loader`; implementation modules are
imported explicitly at the bottom of ``core/targets/__init__.py`` so registration happens.
A spec is resolved once, at the edge (the CLI, a page), by :func:`resolve_target`; the
:class:`TargetRef` it returns flows down to the pipeline, which never parses the spec again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
    locate: Callable[[str], Path | None] | None = None


_LOADERS: Registry[_Loader] = Registry("target loader")


def register_loader(
    name: str,
    *,
    matches: Callable[[str], bool],
    listing: Callable[[], list[TargetInfo]] = lambda: [],
    family: Callable[[str], Family],
    access: tuple[str, ...] = ("white-box", "outputs"),
    locate: Callable[[str], Path | None] | None = None,
) -> Callable[[Callable[..., Target]], Callable[..., Target]]:
    """Register ``load(spec, *, device=None, **options) -> Target`` for matching specs;
    ``family(spec)`` names the family of a matching spec without loading any weights;
    ``access`` the access levels its targets support (a remote API: outputs only);
    ``locate(spec)`` the folder holding a matching spec's files (default: the spec itself
    when it is a folder; None for a target with no local files)."""

    def deco(fn: Callable[..., Target]) -> Callable[..., Target]:
        _LOADERS.add(name, _Loader(name, matches, fn, listing, family, tuple(access), locate))
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
    valid = tuple(t.spec for t in list_targets() if t.available)
    path_like = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    raise UnknownName(f"target {spec!r} is neither zoo:<name>, an existing checkpoint folder, a cached hub id (owner/name) "
                      f"nor an http(s):// API base" + ("; no such local folder" if path_like else "")
                      + f"; built-in: {', '.join(valid) or 'none'}", name=spec, valid=valid)


@dataclass(frozen=True)
class TargetRef:
    """A target spec resolved once: what it is and how to load it, with no weights read.

    ``loader`` names the registered loader, ``family`` and ``access`` what the target is
    and offers, ``location`` the folder holding its files (None: a remote API).
    """

    spec: str
    loader: str
    family: Family
    access: tuple[str, ...]
    location: Path | None = None

    def load(self, *, device: str | None = None, **options: Any) -> Target:
        """The adapter (weights loaded)."""
        return _LOADERS.get(self.loader).load(self.spec, device=device, **options)

    def files_signature(self) -> str:
        """A hash of the names, sizes and modification times of the target's files (a
        stat of each, no file read): it changes whenever a file is replaced. A target
        without local files signs its spec alone."""
        h = hashlib.sha256(f"{self.loader}|{self.spec}".encode())
        if self.location is not None:
            root = Path(self.location)
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for p in files:
                st = p.stat()
                h.update(f"|{p.relative_to(root) if p != root else p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:32]

    def __str__(self) -> str:
        return self.spec


def resolve_target(spec: "str | TargetRef") -> TargetRef:
    """The :class:`TargetRef` of ``spec`` (a ref passes through unchanged).

    Raises
    ------
    core.registry.UnknownName
        (a ``ValueError``) no loader knows ``spec``; the message lists the valid ones.
    ValueError, FileNotFoundError
        a matching loader cannot read the spec's metadata (the message says why).
    """
    if isinstance(spec, TargetRef):
        return spec
    loader = _loader(spec)
    try:
        if loader.locate is not None:
            location = loader.locate(spec)
        else:
            location = Path(spec).expanduser().resolve() if Path(spec).expanduser().exists() else None
        return TargetRef(spec, loader.name, loader.family(spec), loader.access, location)
    except FileNotFoundError as exc:  # a name that matches but whose files are not there
        raise ValueError(str(exc)) from None


class Resolved(dict):
    """Target specs resolved once per run: spec -> :class:`~core.targets.registry.TargetRef`.
    The CLI or a page fills it at the edge; the pipeline asks :meth:`ref` and never parses a
    spec a second time."""

    def ref(self, spec):
        """The :class:`~core.targets.registry.TargetRef` of ``spec`` (a ref passes through)."""
        key = getattr(spec, "spec", spec)
        if key not in self:
            self[key] = resolve_target(spec)
        return self[key]


def target_family(spec: "str | TargetRef") -> Family:
    """The family of the target ``spec`` names, read from its registration or its folder's
    metadata: no weights are loaded."""
    return resolve_target(spec).family


def family_of(spec: "str | TargetRef | None") -> Family | None:
    """:func:`target_family`, or None for a spec no loader knows any more (a stored run's)."""
    try:
        return target_family(spec) if spec else None
    except (ValueError, FileNotFoundError):
        return None


def target_access(spec: "str | TargetRef") -> tuple[str, ...]:
    """The access levels the target ``spec`` names supports, without loading it."""
    return resolve_target(spec).access


def load_target(spec: "str | TargetRef", *, device: str | None = None, **options) -> Target:
    """Load the target named by ``spec``; an unknown spec raises
    :class:`core.registry.UnknownName` (a ``ValueError``) listing the valid ones."""
    return resolve_target(spec).load(device=device, **options)
