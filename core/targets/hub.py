"""The ``hub`` target loader: a Hugging Face hub id (``owner/name``) read from the local
cache only (:mod:`core.runtime.hub_cache`), then loaded like a local checkpoint folder.

``--target openai/whisper-tiny`` works when that model is in the cache; nothing is ever
downloaded, and a model that is not there is refused with the cache folder named.
"""

from __future__ import annotations

from typing import Any

from core.runtime.hub_cache import is_hub_id, resolve_hub_id
from core.targets.base import Family, Target
from core.targets.local import load_local, local_family
from core.targets.registry import register_loader


def hub_family(spec: str) -> Family:
    """The family of a cached hub model, from its snapshot's metadata alone."""
    return local_family(str(resolve_hub_id(spec)))


@register_loader("hub", matches=is_hub_id, family=hub_family, locate=resolve_hub_id)
def load_hub(spec: str, *, device: str | None = None, **options: Any) -> Target:
    """Load the cached snapshot of the hub id ``spec`` as its matching adapter.

    Raises
    ------
    FileNotFoundError
        The model is not in the Hugging Face cache (the message names the folder searched).
    """
    return load_local(resolve_hub_id(spec), device=device, **options)
