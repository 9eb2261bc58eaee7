"""Built-in reference targets (``zoo:<name>``): small models trained with known membership.

The catalogue (:mod:`core.targets.zoo.catalogue`) registers each entry with
:func:`zoo_model`: what the model is and how to load it once built. How to build it is
build tooling, in :mod:`core.recipes.zoo` (one trainer per entry, by the same name). A zoo
model lives in ``assets/zoo/<name>/`` as safetensors weights, configs, and ``card.json``
(member clip hashes, training data, epochs, seed, training time).
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

    load : ``load(model_dir: Path, *, device: str | None = None) -> Target``; it imports its
        adapter when called, so the catalogue costs nothing to import.
    reference : the zoo entry that is this target's natural reference model (one that never
        trained on its audited members: a base model, or a model of the same family trained on
        other clips of the same generator); ``None`` for entries that have none. Written into
        the card as ``"reference"``.
    saw_members : whether it trained on ``dataset``'s members (False for references and
        bases, which never saw a clip of it).
    """

    name: str
    family: Family
    dataset: str
    description: str
    load: Callable[..., Target]
    reference: str | None = None
    saw_members: bool = True


ZOO: Registry[ZooEntry] = Registry("zoo model")


def zoo_model(entry: ZooEntry) -> ZooEntry:
    """Register ``entry`` under its name (a name taken twice raises)."""
    return ZOO.add(entry.name, entry)


def get_zoo(name: str) -> ZooEntry:
    return ZOO.get(name)


def reference_of(name: str) -> str | None:
    """The natural reference of zoo entry ``name`` (see :class:`ZooEntry`)."""
    return get_zoo(name).reference
