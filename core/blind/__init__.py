"""Blind baseline: can members and non-members be told apart without the model?

Feature groups (``metadata``, ``text``, ``acoustic``, optional ``egemaps``) live in a
registry; :func:`run_blind` cross-validates a logistic regression per group and for all
groups together; :func:`match_and_recheck` builds a distribution-matched subset.

The acoustic extractor (torch) is loaded on first use, so the statistics modules can be
imported without torch.
"""

from __future__ import annotations

from typing import Any

from core.blind import groups as _groups  # noqa: F401  (registers the built-in groups)
from core.blind.diagnostics import (
    ALL,
    BlindConfig,
    BlindResult,
    blind_mia_correlation,
    cross_dataset_auc,
    numeric_pipeline,
    own_inference,
    pair_inference,
    run_blind,
    text_pipeline,
)
from core.blind.groups import bit_depth, build_tables, metadata_features, text_column
from core.blind.matching import MatchRecheck, MatchResult, match, match_and_recheck
from core.blind.registry import (
    BlindInputs,
    FeatureGroup,
    GroupUnavailable,
    get_group,
    list_groups,
    register_group,
)

_LAZY = {"ACOUSTIC_FEATURE_NAMES", "AcousticConfig", "acoustic_features", "acoustic_table"}

__all__ = [
    "ACOUSTIC_FEATURE_NAMES",
    "ALL",
    "AcousticConfig",
    "BlindConfig",
    "BlindInputs",
    "BlindResult",
    "FeatureGroup",
    "GroupUnavailable",
    "MatchRecheck",
    "MatchResult",
    "acoustic_features",
    "acoustic_table",
    "bit_depth",
    "blind_mia_correlation",
    "build_tables",
    "cross_dataset_auc",
    "own_inference",
    "pair_inference",
    "get_group",
    "list_groups",
    "match",
    "match_and_recheck",
    "metadata_features",
    "numeric_pipeline",
    "register_group",
    "run_blind",
    "text_column",
    "text_pipeline",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from core.blind import acoustic

        return getattr(acoustic, name)
    raise AttributeError(f"module 'core.blind' has no attribute {name!r}")
