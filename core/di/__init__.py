"""Dataset inference: per-clip indicators -> scorer -> Welch t-test -> p(|P|) curves.

Public entry points: :func:`dataset_inference` (verdict with a null check),
:func:`pvalue_curve` (how many suspects are needed), :func:`null_check`
(false-positive rate on non-members only), and the Welch test itself
(:func:`welch_pvalue`, :func:`welch_pvalue_batch`). Scorers live in a registry
(:func:`register_scorer`, :func:`scorer_names`, :func:`get_scorer`).
"""

from core.di import scorers as _scorers  # noqa: F401  (registers the scorers)
from core.di.curve import DICurve, needed_over_splits, pvalue_curve
from core.di.inference import DIConfig, DIResult, dataset_inference
from core.di.nullcheck import NullCheck, clopper_pearson, null_check
from core.di.registry import ScoredSplit, ScorerConfig, get_scorer, register_scorer, scorer_names
from core.di.scorers import resolve_auto, split_grouping
from core.di.welch import WelchTest, grouped_welch, welch_pvalue, welch_pvalue_batch

__all__ = [
    "DICurve",
    "DIConfig",
    "DIResult",
    "NullCheck",
    "ScoredSplit",
    "ScorerConfig",
    "WelchTest",
    "clopper_pearson",
    "dataset_inference",
    "get_scorer",
    "grouped_welch",
    "needed_over_splits",
    "null_check",
    "pvalue_curve",
    "register_scorer",
    "resolve_auto",
    "scorer_names",
    "split_grouping",
    "welch_pvalue",
    "welch_pvalue_batch",
]
