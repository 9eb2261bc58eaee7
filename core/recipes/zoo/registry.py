"""The zoo's trainers: one per catalogued entry (:data:`core.targets.zoo.registry.ZOO`), by
the same name.

A trainer is ``train(out_dir: Path, *, micro: bool = False, progress=None) -> dict``: it
trains the model deterministically, writes it to ``out_dir`` and returns the model card
(also written as ``out_dir/card.json``). ``progress(done, total, message)`` is called after
each epoch; ``micro=True`` trains a seconds-long version for tests. Recipe modules register
their trainers with :func:`trainer`; importing :mod:`core.recipes.zoo` imports them all.
"""

from __future__ import annotations

from typing import Callable

from core.registry import Registry
from core.targets.zoo.registry import ZOO

Progress = Callable[[int, int, str], None]
"""``progress(epochs_done, epochs_total, message)``, called after each epoch (the
convention of every zoo family, so one progress reporter serves them all)."""

Trainer = Callable[..., dict]

TRAINERS: Registry[Trainer] = Registry("zoo trainer")


def trainer(name: str) -> Callable[[Trainer], Trainer]:
    """``@trainer(name)`` registers the decorated function as the trainer of zoo entry
    ``name``; a name the catalogue does not list raises (with the valid ones)."""
    ZOO.get(name)
    return TRAINERS.decorator(name)


def get_trainer(name: str) -> Trainer:
    """The trainer of zoo entry ``name``; a name the catalogue does not list raises, listing
    the catalogue (the message ``overheard zoo build --name`` has always given)."""
    ZOO.get(name)
    return TRAINERS.get(name)
