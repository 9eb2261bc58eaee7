"""What the batched logistic fits of :mod:`core.stats.logreg` share, non-negative and
unconstrained alike: the fits of each design in a batch sorted by design, and the penalised
log-loss."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def _spans(fold: NDArray[np.int64], F: int) -> list[tuple[int, slice]]:
    """The fits of each of ``F`` designs, contiguous in a batch sorted by design (``fold``,
    the design of each fit): ``(design, slice)`` for the designs with any."""
    ends = np.searchsorted(fold, np.arange(F + 1))
    return [(f, slice(int(ends[f]), int(ends[f + 1]))) for f in range(F) if ends[f + 1] > ends[f]]


def _objective(theta: NDArray[np.float64], eta: NDArray[np.float64], Y: NDArray[np.float64], reg: NDArray[np.float64], C: float) -> NDArray[np.float64]:
    """``[B]`` penalised log-losses at coefficients ``theta [B, k]`` with ``eta = theta Z1'``."""
    softplus = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
    f: NDArray[np.float64] = 0.5 * (reg * theta * theta).sum(1) + C * (softplus - Y * eta).sum(1)
    return f
