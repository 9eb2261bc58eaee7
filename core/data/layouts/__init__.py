"""Dataset layouts: a registry of detectors and readers, one module per layout.

:func:`choose_layout` picks the layout a dataset's files are in (the one detected, or the
one named), :class:`~core.data.layouts.labels.LabelRules` the membership labels.
"""

from __future__ import annotations

from core.data.layouts.base import LAYOUTS, Item, LayoutError, LayoutInfo, Parsed, Tree, register_layout
from core.data.layouts.labels import LabelRules, matches, rule_columns

# the implementations register themselves on import
from core.data.layouts import audiofolder, commonvoice, folders, hf, librispeech, lhotse  # noqa: F401,E402

AUTO = "auto"


def choose_layout(tree: Tree, layout: str = AUTO) -> LayoutInfo:
    """The layout named ``layout``, or with ``"auto"`` the one layout that detects ``tree``
    (the fallback ``folders`` when none does).

    Raises
    ------
    UnknownName
        for a name no layout has (listing the valid ones).
    LayoutError
        when several layouts detect the files: the user chooses with ``--layout``.
    """
    if layout != AUTO:
        return LAYOUTS.get(layout)
    found = [info for info in LAYOUTS.values() if not info.fallback and info.detect(tree)]
    if len(found) > 1:
        names = ", ".join(i.name for i in found)
        raise LayoutError(f"the files fit several layouts ({names}); choose one with --layout")
    if found:
        return found[0]
    return next(info for info in LAYOUTS.values() if info.fallback)


def layout_names() -> list[str]:
    """``auto`` and every registered layout."""
    return [AUTO, *LAYOUTS.names()]


__all__ = ["AUTO", "LAYOUTS", "Item", "LabelRules", "LayoutError", "LayoutInfo", "Parsed", "Tree", "choose_layout", "layout_names", "matches", "register_layout", "rule_columns"]
