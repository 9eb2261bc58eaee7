"""One pool of resident models per process: targets, CLAP scorers, TTA generators.

Loading a model is the slow step of a run, so the worker and the CLI keep what they loaded
for the next call. The pool bounds what stays resident: each *role* (``target``, ``clap``,
``generator``, ...) keeps at most ``capacity`` models, the least recently used one is
unloaded first, and unloading releases GPU memory (``model.unload()`` when the model has
one, then the CUDA cache). Everything in one place, so a run that needs a target, a CLAP
model and a generator at once never evicts one for another, and nothing else keeps
models alive behind the pool's back.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable


def _release(model: Any) -> None:
    unload = getattr(model, "unload", None)
    if callable(unload):
        unload()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def options_key(options: dict | None) -> str:
    """A hashable, order-independent key for loader options."""
    return json.dumps(dict(options or {}), sort_keys=True, default=str)


class ModelPool:
    """Resident models by role and key (see the module docstring).

    Parameters
    ----------
    capacity : models kept per role (default 1: a second target replaces the first).
    """

    def __init__(self, capacity: int = 1):
        self.capacity = capacity
        self._roles: dict[str, OrderedDict[Hashable, Any]] = {}
        self._lock = threading.RLock()

    def get(self, role: str, key: Hashable, load: Callable[[], Any]) -> Any:
        """The model for ``(role, key)``, calling ``load()`` only when it is not resident."""
        with self._lock:
            slot = self._roles.setdefault(role, OrderedDict())
            if key in slot:
                slot.move_to_end(key)
                return slot[key]
            while len(slot) >= self.capacity:
                _release(slot.popitem(last=False)[1])
            model = load()  # a failed load leaves nothing behind
            slot[key] = model
            return model

    def resident(self, role: str | None = None) -> list[tuple[str, Hashable]]:
        """``(role, key)`` of every resident model, oldest first within a role."""
        with self._lock:
            return [(r, k) for r, slot in self._roles.items() if role in (None, r) for k in slot]

    def clear(self, role: str | None = None) -> None:
        """Unload every model (of one role)."""
        with self._lock:
            for r in [r for r in self._roles if role in (None, r)]:
                slot = self._roles.pop(r)
                while slot:
                    _release(slot.popitem(last=False)[1])


POOL = ModelPool()
"""The process-wide pool the evidence layer and the disentanglement stage load through."""
