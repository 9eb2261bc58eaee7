"""One registry type for every extension point (indicator families, blind feature groups,
DI scorers, variants, target loaders, local model types, diffusers kinds, zoo entries, zoo
trainers, job kinds, dataset layouts, calibrations).

A registry maps a name to an entry. Registering a name twice raises; looking up a name
that is not there raises :class:`UnknownName`, whose message lists the valid names. Every
registry made is listed by :meth:`Registry.every`, so a common test can check each one's
entries without a hand-kept list of registries. The module imports nothing from the
project, so any layer can hold a registry.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, ClassVar, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name that no entry of a registry carries; the message lists the valid names.

    It is a ``KeyError`` (a failed lookup) and a ``ValueError`` (a bad argument), so callers
    written against either keep working.
    """

    def __init__(self, message: str, *, name: str = "", valid: tuple[str, ...] = ()):
        super().__init__(message)
        self.message, self.name, self.valid = message, name, valid

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Parameters
    ----------
    what : what an entry is, for messages ("indicator family", "DI scorer", ...); it also
        names the registry in :meth:`every`.
    """

    _made: ClassVar[list[weakref.ref[Registry[Any]]]] = []

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}
        Registry._made.append(weakref.ref(self))

    @classmethod
    def every(cls) -> list[Registry[Any]]:
        """Every registry alive in this process, in the order they were made (a registry
        lives as long as the module that holds it: import a module to list its registries)."""
        return [r for r in (ref() for ref in cls._made) if r is not None]

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name``; a name already taken raises ``ValueError``."""
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = entry
        return entry

    def decorator(self, name: str, wrap: Callable[[Callable], T] | None = None) -> Callable[[Callable], Callable]:
        """``@registry.decorator(name)`` registers the decorated function (or ``wrap(fn)``)
        and returns the function unchanged."""

        def deco(fn: Callable) -> Callable:
            self.add(name, wrap(fn) if wrap is not None else fn)  # type: ignore[arg-type]
            return fn

        return deco

    def remove(self, name: str) -> None:
        """Remove an entry (plug-ins that are reloaded); an unknown name raises."""
        self.get(name)
        del self._items[name]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def unknown(self, name: object, *, extra: str = "") -> UnknownName:
        """The error for a name not in the registry (for callers that resolve names their own way)."""
        valid = tuple(sorted(self._items))
        listed = ", ".join(valid) or "none"
        return UnknownName(f"unknown {self.what} {name!r}; valid: {listed}{extra}", name=str(name), valid=valid)

    def names(self) -> list[str]:
        return sorted(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self)} entries)"
