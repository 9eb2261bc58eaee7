"""Registry of membership indicator families and the direction that means "member".

An indicator family (``min_k``, ``max_renyi``, ``loss`` ...) produces one or more columns
whose keys share the family name: ``min_k@0.2``, ``max_renyi[inf]@0.2``, ``loss@t500``.
Each family records whether a *higher* value means *member*; :func:`direction` and
:func:`aligned` turn any full column key into a score where higher = member, so AUCs are
never computed with a direction picked on the evaluated clips.

Families register themselves with the :func:`register_indicator` decorator in
``core/mia/indicators.py`` (token evidence), ``core/mia/diffusion.py`` (denoising
evidence) and ``core/mia/outputs.py`` (what the model returned, at the outputs access level);
``core/mia/__init__.py`` imports them so the registry is complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from core.registry import Registry, UnknownName

EvidenceKind = Literal["tokens", "diffusion", "outputs"]

F = TypeVar("F", bound=Callable[..., Any])

CALIBRATION_SEP = ":"
"""Separates a calibration from the indicator key it calibrates: ``diff:min_k@0.2``
(:mod:`core.mia.calibration`)."""

# optional "calibration:", family name, optional "[order]", optional "@parameter"
_KEY_RE = re.compile(r"^(?:(?P<calibration>[a-z][a-z0-9_]*):)?(?P<family>[a-z][a-z0-9_]*)(?:\[(?P<order>[^\]]+)\])?(?:@(?P<param>.+))?$")


@dataclass(frozen=True)
class IndicatorFamily:
    """One registered indicator family.

    Attributes
    ----------
    name : family name, the prefix of every column key it produces.
    higher_is_member : True when a larger value is evidence of membership.
    evidence : which raw evidence it reads ("tokens", "diffusion", or "outputs": what the
        model returned, :class:`core.evidence.OutputEvidence`).
    fn : the function computing the family's columns from one clip's evidence.
    description : one line, shown in the UI and the report.
    reference : the paper that defines it.
    """

    name: str
    higher_is_member: bool
    evidence: EvidenceKind
    fn: Callable[..., dict[str, float]]
    description: str = ""
    reference: str = ""

    @property
    def sign(self) -> int:
        return 1 if self.higher_is_member else -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "higher_is_member": self.higher_is_member,
            "evidence": self.evidence,
            "description": self.description,
            "reference": self.reference,
        }


_REGISTRY: Registry[IndicatorFamily] = Registry("indicator family")


def register_indicator(
    name: str,
    *,
    higher_is_member: bool,
    evidence: EvidenceKind,
    description: str = "",
    reference: str = "",
) -> Callable[[F], F]:
    """Decorator registering ``fn`` as the indicator family ``name``.

    Raises
    ------
    ValueError
        If ``name`` is already registered or is not a valid key prefix.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"invalid indicator family name {name!r}: use lower_snake_case")
    if evidence not in ("tokens", "diffusion", "outputs"):
        raise ValueError(f"evidence must be 'tokens', 'diffusion' or 'outputs', got {evidence!r}")

    def decorate(fn: F) -> F:
        _REGISTRY.add(name, IndicatorFamily(
            name=name,
            higher_is_member=bool(higher_is_member),
            evidence=evidence,
            fn=fn,
            description=description,
            reference=reference,
        ))
        return fn

    return decorate


def unregister_indicator(name: str) -> None:
    """Remove a family (for plug-ins that are reloaded); unknown names raise."""
    _REGISTRY.remove(name)


def families(evidence: EvidenceKind | None = None) -> tuple[IndicatorFamily, ...]:
    """Registered families in registration order, optionally only one evidence kind."""
    return tuple(f for f in _REGISTRY.values() if evidence is None or f.evidence == evidence)


def family_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_family(name: str) -> IndicatorFamily:
    """The family registered as ``name``; unknown names raise listing the valid ones."""
    return _REGISTRY.get(name)


def family_of(key: str) -> str:
    """Family name of a full column key, e.g. ``"max_renyi[inf]@0.2" -> "max_renyi"``.

    A calibrated key (``"diff:min_k@0.2"``) belongs to the family it calibrates: a
    calibration keeps the indicator's direction.

    Raises
    ------
    KeyError
        If the key is malformed or its family is not registered (the message lists the
        valid families).
    """
    match = _KEY_RE.match(str(key))
    if match is None:
        raise UnknownName(f"malformed indicator key {key!r}; valid families: {', '.join(_REGISTRY.names())}", name=str(key))
    if match.group("calibration") is not None:
        from core.mia.calibration import get_calibration

        get_calibration(match.group("calibration"))
    return get_family(match.group("family")).name


def calibration_of(key: str) -> str | None:
    """The calibration of a column key (``"diff:min_k@0.2" -> "diff"``), None when uncalibrated."""
    family_of(key)
    head, sep, _ = str(key).partition(CALIBRATION_SEP)
    return head if sep else None


def direction(key: str) -> int:
    """+1 when a higher value of column ``key`` means member, -1 when a lower one does."""
    return get_family(family_of(key)).sign


def aligned(key: str, value: ArrayLike) -> float | NDArray[np.float64]:
    """``value`` multiplied by :func:`direction` so that higher = member.

    Scalars give a float, arrays an array of the same shape.
    """
    arr = np.asarray(value, dtype=np.float64) * direction(key)
    return float(arr) if arr.ndim == 0 else arr
