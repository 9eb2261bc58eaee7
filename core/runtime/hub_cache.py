"""Hugging Face hub ids (``owner/name``) resolved from the local cache only.

Nothing is downloaded: a hub id names a model that ``huggingface_hub`` (or ``transformers``)
already stored in its cache, laid out as::

    <cache>/models--<owner>--<name>/refs/<branch>          # the commit the branch points to
    <cache>/models--<owner>--<name>/snapshots/<commit>/... # the files of that commit

The cache folder is ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else
``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
``~/.cache/huggingface/hub`` (``huggingface_hub``'s own order); it is read when a spec is
resolved, never at import time. Paths only: this module imports no model library.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache folder named by the environment (see the module doc)."""
    env = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def is_hub_id(spec: str) -> bool:
    """True for ``owner/name`` (optionally ``@revision``) that is not an existing path."""
    return bool(_HUB_ID.match(spec)) and not Path(spec).expanduser().exists()


def resolve_hub_id(spec: str, *, env: Mapping[str, str] | None = None) -> Path:
    """The cached snapshot folder of the hub id ``spec`` (``owner/name`` or
    ``owner/name@revision``, a branch, tag or commit; ``main`` by default).

    Raises
    ------
    ValueError
        ``spec`` is not a hub id.
    FileNotFoundError
        The model (or that revision of it) is not in the cache; the message names the cache
        folder that was searched.
    """
    m = _HUB_ID.match(spec)
    if not m:
        raise ValueError(f"{spec!r} is not a Hugging Face hub id (owner/name)")
    repo, rev = m.group("repo"), m.group("rev") or "main"
    cache = hub_cache_dir(env)
    root = cache / ("models--" + repo.replace("/", "--"))
    if not root.is_dir():
        raise FileNotFoundError(
            f"target {spec!r} is not a local folder, and {repo} is not in the Hugging Face cache {cache} "
            f"(no {root.name}); nothing is downloaded: download it where there is network "
            f"(huggingface-cli download {repo}) and copy the cache, or set HF_HUB_CACHE"
        )
    ref = root / "refs" / rev
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else rev
    snapshot = root / "snapshots" / commit
    if not (_COMMIT.match(commit) or ref.is_file()) or not snapshot.is_dir():
        have = sorted(p.name for p in (root / "refs").glob("*")) if (root / "refs").is_dir() else []
        raise FileNotFoundError(
            f"{repo} is in the Hugging Face cache {cache}, but not revision {rev!r} "
            f"(cached refs: {', '.join(have) or 'none'})"
        )
    return snapshot
