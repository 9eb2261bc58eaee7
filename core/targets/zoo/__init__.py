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


@register_loader("zoo", matches=lambda spec: spec.startswith("zoo:"), listing=_listing,
                 family=lambda spec: get_zoo(spec.split(":", 1)[1]).family)
def load_zoo(spec: str, *, device: str | None = None, **options) -> Target:
    """A built-in reference model ``zoo:<name>``, built under the assets folder."""
    entry = get_zoo(spec.split(":", 1)[1])
    folder = zoo_dir() / entry.name
    if not (folder / "card.json").exists():
        raise FileNotFoundError(
            f"{spec} is not built yet (no {folder}/card.json); run `overheard zoo build --name {entry.name}`"
        )
    takes_options = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(entry.load).parameters.values())
    if options and not takes_options:
        raise ValueError(f"{spec} takes no --target-option (got {', '.join(sorted(options))}); its settings are fixed by its card")
    return entry.load(folder, device=device, **options)
