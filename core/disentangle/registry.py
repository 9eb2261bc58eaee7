"""Variant registry: ways of replacing a clip's audio while keeping its text.

A variant family is a function ``make(audio, text, *, sr, realization, clip_hash) -> audio``
registered with :func:`register_variant`; ``realizations`` says how many independent
versions (seeds or voices) the audit averages over.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import NDArray

MakeFn = Callable[..., NDArray[np.float32]]


@dataclass(frozen=True)
class VariantFamily:
    name: str
    make: MakeFn
    realizations: int
    description: str
    needs_text: bool = False


_VARIANTS: dict[str, VariantFamily] = {}


def register_variant(name: str, *, realizations: int = 1, description: str = "", needs_text: bool = False) -> Callable[[MakeFn], MakeFn]:
    def deco(fn: MakeFn) -> MakeFn:
        if name in _VARIANTS:
            raise ValueError(f"variant {name!r} is already registered")
        _VARIANTS[name] = VariantFamily(name, fn, realizations, description, needs_text)
        return fn

    return deco


def get_variant(name: str) -> VariantFamily:
    try:
        return _VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(sorted(_VARIANTS))}") from None


def variant_names() -> list[str]:
    return list(_VARIANTS)


@dataclass(frozen=True)
class Variant:
    """One realization of a variant family, usable as ``extract_evidence(variant=...)``.

    Its cache key is derived from the clip hash, the family and the realization, so the
    variant's evidence is cached like any clip.
    """

    family: VariantFamily
    realization: int = 0

    @property
    def name(self) -> str:
        return f"{self.family.name}#{self.realization}"

    def key(self, clip_hash: str) -> str:
        return hashlib.sha256(f"{clip_hash}|{self.name}".encode()).hexdigest()

    def render(self, audio: NDArray[np.float32], text: str, sr: int, clip_hash: str) -> NDArray[np.float32]:
        if self.family.needs_text and not text.strip():
            raise ValueError(f"variant {self.family.name} needs the clip's text, and clip {clip_hash[:12]} has none")
        return self.family.make(audio, text, sr=sr, realization=self.realization, clip_hash=clip_hash)


def seed_for(clip_hash: str, realization: int, salt: str) -> int:
    """A fixed seed per (clip, realization, variant): reruns give identical variants."""
    return int.from_bytes(hashlib.sha256(f"{salt}|{clip_hash}|{realization}".encode()).digest()[:8], "little")
