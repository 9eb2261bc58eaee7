"""Variant registry: ways of replacing a clip's audio while keeping its text.

A variant family is a function ``make(audio, text, *, sr, realization, clip_hash, **options)
-> audio`` registered with :func:`register_variant`; ``realizations`` says how many
independent versions (seeds or voices) the audit averages over. ``options`` choose a
generator (a Piper voice, a text-to-audio model); a family's ``identify(options)`` adds what
identifies that generator (a file or model fingerprint) so its outputs are cached apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from numpy.typing import NDArray

from core.registry import Registry

MakeFn = Callable[..., NDArray[np.float32]]


@dataclass(frozen=True)
class VariantOption:
    """One option of a variant family, as the CLI (``--variant-option FAMILY.NAME=VALUE``)
    and the Disentanglement page offer it: ``kind`` converts a typed value (``str``,
    ``int`` or ``float``); ``default`` is what the family uses when it is not given."""

    name: str
    label: str = ""
    help: str = ""
    kind: Literal["str", "int", "float"] = "str"
    default: str | int | float | None = None

    def parse(self, value: str) -> str | int | float:
        """``value`` as this option's kind (a ``ValueError`` names the option)."""
        try:
            return {"str": str, "int": int, "float": float}[self.kind](value)
        except ValueError:
            raise ValueError(f"option {self.name} takes a {self.kind}, got {value!r}") from None


@dataclass(frozen=True)
class VariantFamily:
    name: str
    make: MakeFn
    realizations: int
    description: str
    needs_text: bool = False
    identify: Callable[[dict], dict] | None = None
    options: tuple[str, ...] = ()
    make_batch: Callable[..., list[NDArray[np.float32]]] | None = None
    check: Literal["transcript", "caption"] | None = None
    """How a resynthesis is checked for carrying its clip's content: ``transcript`` (the
    audited model's transcription against the clip's words, when it transcribes),
    ``caption`` (CLAP similarity to the caption, when a CLAP model is given), or None."""
    original: bool = False
    """The clip itself (no rendering; its evidence is the plain MIA's)."""
    option_specs: tuple[VariantOption, ...] = ()
    """How each of ``options`` is offered (its label, help, kind and default)."""
    keeps_length: bool = True
    """A rendering has its clip's length (False: a length of its own, as the replacing
    silence and noise, or a resynthesis of the words)."""


_VARIANTS: Registry[VariantFamily] = Registry("variant")


def register_variant(name: str, *, realizations: int = 1, description: str = "", needs_text: bool = False,
                     options: tuple[str | VariantOption, ...] = (), identify: Callable[[dict], dict] | None = None,
                     make_batch: Callable[..., list] | None = None, check: Literal["transcript", "caption"] | None = None,
                     original: bool = False, keeps_length: bool | None = None) -> Callable[[MakeFn], MakeFn]:
    """Register ``make`` under ``name``; ``options`` are the options it accepts (a name, or
    a :class:`VariantOption` that also says how to offer it): the CLI and the page offer
    them with nothing else to edit.

    ``keeps_length``: whether a rendering has its clip's length (default: unless the
    family renders from the text, ``needs_text``).

    ``make_batch(audios, texts, *, sr, realization, clip_hashes, **options)``, when given,
    renders several clips at once (a generator model batches them); it must return what
    ``make`` returns for each clip alone.
    """

    def deco(fn: MakeFn) -> MakeFn:
        if check not in (None, "transcript", "caption"):
            raise ValueError(f"check must be None, 'transcript' or 'caption', got {check!r}")
        specs = tuple(o if isinstance(o, VariantOption) else VariantOption(o) for o in options)
        _VARIANTS.add(name, VariantFamily(name, fn, realizations, description, needs_text, identify, tuple(o.name for o in specs),
                                          make_batch, check, original, specs,
                                          (not needs_text) if keeps_length is None else keeps_length))
        return fn

    return deco


def get_variant(name: str) -> VariantFamily:
    return _VARIANTS.get(name)


def option_names() -> list[str]:
    """``family.option`` for every registered variant option."""
    import core.disentangle  # noqa: F401  (registers the built-ins)

    return [f"{f.name}.{o.name}" for f in _VARIANTS.values() for o in f.option_specs]


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
    options: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, family: VariantFamily, realization: int = 0, options: dict | None = None) -> "Variant":
        """A realization with ``options`` checked and completed by the family's ``identify``."""
        opts = {k: v for k, v in (options or {}).items() if v not in (None, "")}
        unknown = sorted(set(opts) - set(family.options))
        if unknown:
            raise ValueError(f"variant {family.name} has no option(s) {unknown}; valid: {list(family.options) or 'none'}")
        if family.identify is not None:
            opts = family.identify(opts)
        return cls(family, realization, tuple(sorted(opts.items())))

    @property
    def name(self) -> str:
        return f"{self.family.name}#{self.realization}"

    def key(self, clip_hash: str) -> str:
        tag = f"{clip_hash}|{self.name}"
        if self.options:  # without options the key is the one earlier versions cached under
            tag += "|" + json.dumps(dict(self.options), sort_keys=True, default=str)
        return hashlib.sha256(tag.encode()).hexdigest()

    def render(self, audio: NDArray[np.float32], text: str, sr: int, clip_hash: str) -> NDArray[np.float32]:
        if self.family.needs_text and not text.strip():
            raise ValueError(f"variant {self.family.name} needs the clip's text, and clip {clip_hash[:12]} has none")
        return self.family.make(audio, text, sr=sr, realization=self.realization, clip_hash=clip_hash, **dict(self.options))

    def render_many(self, audios: list[NDArray[np.float32]], texts: list[str], sr: int, clip_hashes: list[str]) -> list[NDArray[np.float32]]:
        """:meth:`render` for several clips, batched when the family can."""
        if self.family.make_batch is None or len(audios) < 2:
            return [self.render(a, t, sr, h) for a, t, h in zip(audios, texts, clip_hashes)]
        for t, h in zip(texts, clip_hashes):
            if self.family.needs_text and not t.strip():
                raise ValueError(f"variant {self.family.name} needs the clip's text, and clip {h[:12]} has none")
        return self.family.make_batch(audios, texts, sr=sr, realization=self.realization, clip_hashes=clip_hashes, **dict(self.options))


def seed_for(clip_hash: str, realization: int, salt: str) -> int:
    """A fixed seed per (clip, realization, variant): reruns give identical variants."""
    return int.from_bytes(hashlib.sha256(f"{salt}|{clip_hash}|{realization}".encode()).digest()[:8], "little")
