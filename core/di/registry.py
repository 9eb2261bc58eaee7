"""Registry of dataset-inference scorers.

A scorer turns per-clip indicator matrices of the suspects ``P [n_p, d]`` and the known
non-members ``U [n_u, d]`` into one score per *tested* clip (higher = member), fitting or
standardizing on clips that it then leaves out of the test. It reports which rows it
tested and which rows it fitted on, so the separation can be checked.

Scorers register with :func:`register_scorer` in ``core/di/scorers.py``;
``core/di/__init__.py`` imports that module so the registry is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from core.config import Config
from core.registry import Registry


@dataclass(frozen=True)
class ScorerConfig(Config):
    """Options shared by the scorers.

    Attributes
    ----------
    C : inverse L2 strength of the logistic regression (learned scorers).
    fit_fraction : share of P and of U used to fit (control_split) or to standardize
        (normalized_sum, share of U); the rest is tested.
    auto_max_features : when the evidence kind is unknown, ``auto`` picks
        ``normalized_sum`` when directions are given and the number of indicators is at
        most this, else ``control_split``.
    std_floor : lower bound on a standard deviation used to standardize.
    evidence : the indicators' evidence kind, ``"tokens"`` or ``"diffusion"`` (None:
        unknown); ``auto`` follows the design: normalized sum for token targets, control
        split for diffusion targets, the calibrated loss for diffusion targets calibrated
        against a reference.
    keys : the indicators' keys, column by column, when known (the pipeline sets them);
        ``mean_loss`` finds its column by key.
    """

    C: float = 1.0
    fit_fraction: float = 0.5
    auto_max_features: int = 8
    std_floor: float = 1e-6
    evidence: str | None = None
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.fit_fraction < 1.0:
            raise ValueError(f"fit_fraction must be in (0, 1), got {self.fit_fraction}")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")


@dataclass(frozen=True)
class ScoredSplit:
    """Scores of the tested clips, and the rows each scorer was fitted on.

    Attributes
    ----------
    scorer : name of the scorer that produced the scores (``auto`` resolved).
    p_scores : ``[m_p]`` scores of the tested suspects (higher = member).
    u_scores : ``[m_u]`` scores of the tested non-members.
    p_index : ``[m_p]`` rows of the suspect matrix that were tested.
    u_index : ``[m_u]`` rows of the non-member matrix that were tested.
    p_group, u_group : ``[m_p]``, ``[m_u]`` which fitted scorer (fold) scored each clip.
    fit_p_index, fit_u_index : one int array per group: the suspect / non-member rows used
        to fit or standardize the scorer of that group (never tested in that group).
    notes : warnings raised while scoring.
    """

    scorer: str
    p_scores: NDArray[np.float64]
    u_scores: NDArray[np.float64]
    p_index: NDArray[np.int64]
    u_index: NDArray[np.int64]
    p_group: NDArray[np.int64]
    u_group: NDArray[np.int64]
    fit_p_index: tuple[NDArray[np.int64], ...]
    fit_u_index: tuple[NDArray[np.int64], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_groups(self) -> int:
        return len(self.fit_p_index)


class Scorer(Protocol):
    """A scorer that keeps speaker / source groups on one side of its split (registered
    with ``uses_groups=True``); one registered without groups takes the same arguments
    but ``groups``."""

    def __call__(
        self,
        P: NDArray[np.float64],
        U: NDArray[np.float64],
        *,
        directions: NDArray[np.float64] | None,
        seed: int,
        config: ScorerConfig,
        groups: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None,
    ) -> ScoredSplit: ...


ScorerFn = Callable[..., ScoredSplit]
"""What a registration holds: a :class:`Scorer`, with or without the ``groups`` argument."""
F = TypeVar("F", bound=ScorerFn)


@dataclass(frozen=True)
class ScorerInfo:
    """A registered scorer: its name, function and one-line description."""

    name: str
    fn: ScorerFn
    description: str = ""
    uses_groups: bool = False
    splits: bool = True

    def score(self, P: NDArray[np.float64], U: NDArray[np.float64], *,
              groups: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None, **kwargs: Any) -> ScoredSplit:
        """Run the scorer; ``groups`` reach it only when it declares that it uses them, so
        a plug-in scorer that takes no groups still runs."""
        if self.uses_groups and groups is not None:
            return self.fn(P, U, groups=groups, **kwargs)
        return self.fn(P, U, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}


_REGISTRY: Registry[ScorerInfo] = Registry("DI scorer")


def register_scorer(name: str, *, description: str = "", uses_groups: bool = False, splits: bool = True) -> Callable[[F], F]:
    """Decorator registering a scorer function under ``name``; ``uses_groups``: it keeps
    speaker / source groups on one side of its fit/test split (it takes ``groups``);
    ``splits=False``: it spends no clip on fitting or standardizing (every clip is tested).

    Raises
    ------
    ValueError
        If ``name`` is already registered.
    """

    def deco(fn: F) -> F:
        _REGISTRY.add(name, ScorerInfo(name=name, fn=fn, description=description, uses_groups=uses_groups, splits=splits))
        return fn

    return deco


def scorer_names() -> list[str]:
    """Names of all registered scorers, sorted."""
    return _REGISTRY.names()


def get_scorer(name: str) -> ScorerInfo:
    """The registered scorer ``name``.

    Raises
    ------
    core.registry.UnknownName
        If unknown (a KeyError and a ValueError); the message lists the valid names.
    """
    return _REGISTRY.get(name)
