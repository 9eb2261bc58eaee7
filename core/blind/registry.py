"""Registry of blind-baseline feature groups.

A feature group turns clip inputs (metadata table, audio stream, transcripts) into a
named feature table without looking at any model. Groups register with
:func:`register_group`; the registry key is the group name used in results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.registry import Registry

__all__ = [
    "BlindInputs",
    "FeatureGroup",
    "GroupUnavailable",
    "get_group",
    "list_groups",
    "register_group",
]

GroupKind = Literal["numeric", "text"]


class GroupUnavailable(RuntimeError):
    """Raised when a registered group cannot run here (an optional package is missing)."""


@dataclass(frozen=True)
class BlindInputs:
    """What the feature groups may read.

    Attributes
    ----------
    metadata : pandas.DataFrame [shape=(n_clips, ...)]
        One row per clip with ``duration``, ``size_bytes``, ``sample_rate``, ``subtype``,
        ``format``, ``channels``, ``text``, ``speaker`` (missing columns become NaN).
    audio : iterable of np.ndarray, or None
        Mono float32 clips at ``sr`` in metadata row order, or batches of them when
        ``audio_batched``; may be a one-shot iterator.
    texts : sequence of str, or None
        Transcripts/captions; defaults to ``metadata["text"]``.
    """

    metadata: pd.DataFrame
    audio: Iterable[NDArray[np.floating]] | Iterable[Sequence[NDArray[np.floating]]] | None = None
    texts: Sequence[str] | None = None
    sr: int = 16000
    audio_batched: bool = False
    device: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return len(self.metadata)

    def text_list(self) -> list[str]:
        if self.texts is not None:
            out = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in self.texts]
        elif "text" in self.metadata.columns:
            out = [
                "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
                for t in self.metadata["text"].tolist()
            ]
        else:
            out = [""] * self.n_clips
        if len(out) != self.n_clips:
            raise ValueError(f"{len(out)} texts for {self.n_clips} clips")
        return out


@dataclass(frozen=True)
class FeatureGroup:
    """One blind feature group.

    Attributes
    ----------
    name : registry key and results column name.
    description : one line for the UI and the report.
    kind : "numeric" (a DataFrame of numbers) or "text" (a Series of strings whose
        vocabulary is fitted inside each CV fold).
    compute : ``compute(inputs) -> DataFrame | Series | None``; None means the group does
        not apply to this data (e.g. no clip has text).
    needs : which inputs it reads ("metadata", "audio", "text").
    requires : importable module needed, or None.
    install_hint : what to run when ``requires`` is missing.
    """

    name: str
    description: str
    kind: GroupKind
    compute: Callable[[BlindInputs], pd.DataFrame | pd.Series | None]
    needs: frozenset[str] = frozenset({"metadata"})
    requires: str | None = None
    install_hint: str | None = None

    def availability(self) -> tuple[bool, str]:
        """(available, message); the message is "available" or says what to install."""
        if self.requires is None:
            return True, "available"
        import importlib.util

        if importlib.util.find_spec(self.requires) is None:
            return False, f"unavailable: {self.install_hint or 'pip install ' + self.requires}"
        return True, "available"

    @property
    def available(self) -> bool:
        return self.availability()[0]

    def __call__(self, inputs: BlindInputs) -> pd.DataFrame | pd.Series | None:
        ok, msg = self.availability()
        if not ok:
            raise GroupUnavailable(f"feature group {self.name!r} is {msg}")
        return self.compute(inputs)

    def to_dict(self) -> dict:
        ok, msg = self.availability()
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "needs": sorted(self.needs),
            "available": ok,
            "status": msg,
        }


_GROUPS: Registry[FeatureGroup] = Registry("feature group")


def register_group(
    name: str,
    *,
    description: str,
    kind: GroupKind = "numeric",
    needs: Iterable[str] = ("metadata",),
    requires: str | None = None,
    install_hint: str | None = None,
) -> Callable[[Callable[[BlindInputs], pd.DataFrame | pd.Series | None]], Callable]:
    """Decorator registering ``fn(inputs) -> table`` as feature group ``name``."""
    if kind not in ("numeric", "text"):
        raise ValueError(f"kind must be 'numeric' or 'text', got {kind!r}")

    def deco(fn: Callable[[BlindInputs], pd.DataFrame | pd.Series | None]) -> Callable:
        _GROUPS.add(name, FeatureGroup(
            name=name, description=description, kind=kind, compute=fn,
            needs=frozenset(needs), requires=requires, install_hint=install_hint,
        ))
        return fn

    return deco


def unregister_group(name: str) -> None:
    """Remove a group (for plugins replacing one, and for tests)."""
    _GROUPS.remove(name)


def get_group(name: str) -> FeatureGroup:
    """The registered group ``name``; unknown names raise listing the valid ones."""
    return _GROUPS.get(name)


def list_groups(*, available_only: bool = False) -> list[str]:
    """Registered group names, in registration order."""
    return [n for n, g in _GROUPS.items() if not available_only or g.available]
