"""Built-in reference targets (``zoo:<name>``): small models trained with known membership.

Each family module registers its entries with :func:`zoo_model`. A zoo model lives in
``assets/zoo/<name>/`` as safetensors weights, configs, and ``card.json`` (member clip
hashes, training data, epochs, seed, training time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.registry import Registry
from core.runtime.settings import ASSETS_ENV, assets_dir  # noqa: F401  (defined once, in the settings)
from core.targets.base import Family, Target


def zoo_dir() -> Path:
    return assets_dir() / "zoo"


@dataclass(frozen=True)
class ZooEntry:
    """One reference target.

    train : ``train(out_dir: Path, *, micro: bool = False, progress=None) -> dict`` trains the
        model deterministically and writes it to ``out_dir``; returns the model card.
        ``progress(done: int, total: int, message: str)`` is called after each epoch.
        ``micro=True`` trains a seconds-long version for tests.
    load : ``load(model_dir: Path, *, device: str | None = None) -> Target``.
    reference : the zoo entry that is this target's natural reference model (one that never
        trained on its audited members: a base model, or a model of the same family trained on
        other clips of the same generator); ``None`` for entries that have none. Written into
        the card as ``"reference"``.
    """

    name: str
    family: Family
    dataset: str
    description: str
    train: Callable[..., dict]
    load: Callable[..., Target]
    reference: str | None = None


ZOO: Registry[ZooEntry] = Registry("zoo model")


def zoo_model(entry: ZooEntry) -> ZooEntry:
    return ZOO.add(entry.name, entry)


def get_zoo(name: str) -> ZooEntry:
    return ZOO.get(name)


def reference_of(name: str) -> str | None:
    """The natural reference of zoo entry ``name`` (see :class:`ZooEntry`)."""
    return get_zoo(name).reference
