"""Labelling rules: which items are members (P) and which non-members (U).

A rule is a list of patterns; an item matches when any pattern does:

- ``column=value``: a manifest column (``split``, ``speaker``, ``gender``, ``client_id``,
  ``label``, ...) equals ``value`` (shell wildcards allowed: ``speaker=19*``);
- a pattern with ``/`` or a wildcard is a glob over the item's path (``*/dev-clean/*``),
  and a bare name is a split name (``train-clean-100``, ``test``) or a folder name.

With rules, they alone label: an item both rules match, or neither, is listed with the
reason, not guessed. Without rules an item keeps the label its layout gives (folder
names, a ``label`` column), else it is listed unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from core.data.layouts.base import Item


@dataclass(frozen=True)
class LabelRules:
    """``--members`` / ``--nonmembers`` patterns (see the module docstring)."""

    members: tuple[str, ...] = ()
    nonmembers: tuple[str, ...] = ()

    @classmethod
    def parse(cls, members: str | list[str] | tuple[str, ...] = (), nonmembers: str | list[str] | tuple[str, ...] = ()) -> "LabelRules":
        """Rules from option values; each value may hold several patterns separated by commas."""

        def split(v: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
            values = [v] if isinstance(v, str) else list(v or ())
            return tuple(p.strip() for x in values for p in x.split(",") if p.strip())

        return cls(split(members), split(nonmembers))

    def __bool__(self) -> bool:
        return bool(self.members or self.nonmembers)

    def to_dict(self) -> dict:
        return {"members": list(self.members), "nonmembers": list(self.nonmembers)}

    def label(self, item: Item) -> tuple[str | None, str | None]:
        """(label, reason it has none) for ``item``."""
        from core.runtime.store import MEMBER, NONMEMBER

        m = any(matches(p, item) for p in self.members)
        u = any(matches(p, item) for p in self.nonmembers)
        if m and u:
            return None, "matches both the members and the non-members rule"
        if m or u:
            return (MEMBER if m else NONMEMBER), None
        if self:
            return None, f"no label: matches neither --members {','.join(self.members) or '-'} nor --nonmembers {','.join(self.nonmembers) or '-'}"
        if item.label_error:
            return None, item.label_error
        if item.label:
            return item.label, None
        return None, "no label: not under a members/nonmembers folder and not in metadata.csv (or give --members/--nonmembers rules)"


def matches(pattern: str, item: Item) -> bool:
    """Whether one pattern of a rule matches ``item`` (see the module docstring)."""
    if "=" in pattern:
        col, _, value = pattern.partition("=")
        col = col.strip().lower()
        known = {k.lower(): v for k, v in item.fields.items()}
        known.update({k: v for k, v in (("speaker", item.speaker), ("source", item.source), ("split", item.split)) if v})
        have = known.get(col)
        return have is not None and fnmatchcase(str(have).strip().lower(), value.strip().lower())
    if "/" in pattern or any(c in pattern for c in "*?["):
        if fnmatchcase(item.path, pattern) or fnmatchcase(item.split, pattern):
            return True
        return "/" not in pattern and any(fnmatchcase(part, pattern) for part in PurePosixPath(item.path).parts[:-1])
    return item.split == pattern or pattern in PurePosixPath(item.path).parts[:-1]


def rule_columns(items: list[Item]) -> list[str]:
    """Column names a ``column=value`` rule can use on ``items`` (for help texts and the page)."""
    cols = {"split", "speaker", "source"}
    for it in items:
        cols.update(it.fields)
    return sorted(c for c in cols if not c.startswith("_"))
