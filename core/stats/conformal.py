"""Per-clip evidence with a false-discovery guarantee: conformal p-values against known
non-members, and Benjamini-Hochberg over them.

A suspect's membership score is compared with the scores of calibration non-members that
played no part in producing any score (they must be exchangeable with the suspects that
were not used in training):

    p_j = (1 + #{calibration non-members scoring >= s_j}) / (1 + n_calibration)

Under exchangeability a non-member suspect's p-value is super-uniform, and Benjamini-Hochberg
at level q on these p-values controls the false discovery rate of the flagged clips at q
(the p-values are positively dependent through the shared calibration set; Bates, Candès,
Lei, Romano and Sesia, "Testing for outliers with conformal p-values", Ann. Statist. 2023).
Higher scores read as "member".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def conformal_pvalues(scores: ArrayLike, calibration: ArrayLike) -> NDArray[np.float64]:
    """Conformal p-value of each score against calibration (non-member) scores.

    Parameters
    ----------
    scores : ``[m]`` membership scores of the suspects (higher = member).
    calibration : ``[n]`` scores of known non-members, exchangeable with unused suspects.

    Returns
    -------
    ``[m]`` p-values in ``[1 / (n + 1), 1]``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    c = np.sort(np.asarray(calibration, dtype=np.float64).ravel())
    if c.size == 0:
        raise ValueError("conformal p-values need at least one calibration non-member")
    if not (np.isfinite(s).all() and np.isfinite(c).all()):
        raise ValueError("scores must be finite")
    at_least = c.size - np.searchsorted(c, s, side="left")  # calibration scores >= each score
    p: NDArray[np.float64] = ((1.0 + at_least) / (1.0 + c.size)).astype(np.float64)
    return p


def benjamini_hochberg(pvalues: ArrayLike, q: float = 0.1) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Benjamini-Hochberg step-up at level ``q``.

    Returns
    -------
    (flagged ``[m]`` booleans, adjusted p-values ``[m]`` (BH q-values): a clip is flagged at
    level q exactly when its q-value is at most q).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    flagged: NDArray[np.bool_] = adjusted <= q
    return flagged, adjusted
