"""The ``zoo:`` target loader over the built-in reference models (the catalogue only; the
recipes that build them are build tooling, in :mod:`core.recipes.zoo`)."""

from __future__ import annotations

import inspect

from core.targets.base import Target, TargetInfo
from core.targets.registry import register_loader
from core.targets.zoo.registry import ZOO, get_zoo, zoo_dir
from core.targets.zoo import catalogue as _catalogue  # noqa: F401  (registers the entries)


def _listing() -> list[TargetInfo]:
    out = []
    for entry in ZOO.values():
        folder = zoo_dir() / entry.name
        out.append(
            TargetInfo(
                spec=f"zoo:{entry.name}",
                family=entry.family,
                description=entry.description,
                available=(folder / "card.json").exists(),
                detail={"dataset": entry.dataset, "path": str(folder), "reference": entry.reference,
                        "saw_members": entry.saw_members},
            )
        )
    return out


def _entry(spec: str):
    """The zoo entry ``spec`` names, built (its card is in the assets folder)."""
    name = spec.split(":", 1)[1]
    if name not in ZOO:
        shipped = [t.spec for t in _listing() if t.available]
        raise ValueError(f"unknown zoo target {spec!r}; shipped: {', '.join(shipped) or 'none'}")
    entry = get_zoo(name)
    if not (zoo_dir() / entry.name / "card.json").exists():
        raise FileNotFoundError(f"{spec} is not built yet (no {zoo_dir() / entry.name}/card.json); "
                                f"run `overheard zoo build --name {entry.name}`")
    return entry


@register_loader("zoo", matches=lambda spec: spec.startswith("zoo:"), listing=_listing,
                 family=lambda spec: _entry(spec).family, locate=lambda spec: zoo_dir() / _entry(spec).name)
def load_zoo(spec: str, *, device: str | None = None, **options) -> Target:
    """A built-in reference model ``zoo:<name>``, built under the assets folder."""
    entry = _entry(spec)
    folder = zoo_dir() / entry.name
    takes_options = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(entry.load).parameters.values())
    if options and not takes_options:
        raise ValueError(f"{spec} takes no --target-option (got {', '.join(sorted(options))}); its settings are fixed by its card")
    return entry.load(folder, device=device, **options)
