"""Per-sample membership inference: evidence -> indicators -> CV aggregation -> AUC.

``registry``, ``indicators``, ``diffusion``, ``outputs`` and ``aggregate`` are pure numpy / pandas /
scikit-learn; importing this package fills the indicator registry. ``token_stats`` and
``infilling`` need torch and are imported explicitly by the target adapters.
"""

from core.mia import calibration, diffusion, indicators, outputs, registry  # noqa: F401  (registration order)
from core.mia.aggregate import MIAResult, blind_correlation, indicator_table, run_mia
from core.mia.diffusion import diffusion_features
from core.mia.indicators import K_GRID, RENYI_ORDERS, compute_indicators, token_indicator_keys
from core.mia.registry import aligned, direction, families, get_family, register_indicator

__all__ = [
    "K_GRID",
    "RENYI_ORDERS",
    "MIAResult",
    "aligned",
    "blind_correlation",
    "compute_indicators",
    "diffusion_features",
    "direction",
    "families",
    "get_family",
    "indicator_table",
    "register_indicator",
    "run_mia",
    "token_indicator_keys",
]
