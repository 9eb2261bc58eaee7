"""How much of my set: the share of suspects used, debiased with a shadow reference whose
membership is known (in the spirit of DUCI, Tong et al., ICLR 2025).

A per-clip attack flags a suspect when its conformal p-value against the model's own
calibration non-members is at most ``gamma``: among unused suspects (exchangeable with the
calibration) it flags at most the exact conformal level ``fpr = floor(gamma (n + 1)) / (n +
1)``, among members at some rate ``tpr``. The suspects' flag rate is then ``r = share tpr +
(1 - share) fpr``, so ``share = (r - fpr) / (tpr - fpr)`` once ``tpr`` is known.

The target's ``tpr`` is not known; a **shadow reference** supplies it. It is the public base
fine-tuned by the auditor, with a recipe like the target's, on known non-members: its own
training clips are its members and the audit's calibration non-members (never trained on by
either model) its non-members. The same attack on the shadow measures the rate at which a
fine-tune of that recipe lets its training clips stand out: the shadow's ``tpr``. The
estimate assumes the target memorized its members as the shadow memorized its clips (the
same recipe, epochs and clips per step); a target trained longer than the shadow makes the
share read high, one trained less makes it read low.

``gamma`` is chosen on the shadow alone (the level where its ``tpr - fpr`` is largest), so the
suspects play no part in the choice. The interval resamples the suspects, both calibration
sets and the shadow's clips (choosing ``gamma`` again in each resample); it is a percentile
bootstrap, not a guarantee, and it is wide when ``tpr - fpr`` is small: a shadow whose clips
barely stand out cannot say how much was used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from core.stats.conformal import conformal_pvalues

GAMMAS = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Conformal levels the attack may flag at (chosen on the shadow)."""
MIN_SEPARATION = 0.1
"""Below this ``tpr - fpr`` on the shadow the estimate is not given: dividing by it multiplies
every error by ten or more."""
ASSUMPTION = ("the target memorized its members as the shadow memorized its own clips (a recipe like the target's), "
              "and the calibration non-members are exchangeable with the unused suspects")


@dataclass(frozen=True)
class DebiasedShare:
    """The debiased share of suspects used, with what it rests on.

    ``estimate`` and ``interval`` are clipped to [0, 1] (``raw`` is not); ``estimate`` is None
    when the shadow's clips do not stand out enough (``tpr - fpr < MIN_SEPARATION``)."""

    estimate: float | None
    raw: float | None
    interval: tuple[float, float] | None
    level: float
    gamma: float
    flag_rate: float
    fpr: float
    tpr: float
    n_suspects: int
    n_calibration: int
    n_shadow_clips: int
    n_shadow_calibration: int
    assumption: str = ASSUMPTION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = None if self.interval is None else list(self.interval)
        return d

    def sentence(self) -> str:
        if self.estimate is None or self.interval is None:
            return (f"no debiased share: the shadow's own clips barely stand out (flagged {self.tpr:.0%} against "
                    f"{self.fpr:.0%} of non-members)")
        lo, hi = self.interval
        return (f"debiased with the shadow: {self.estimate:.0%} [{lo:.0%}, {hi:.0%}] of the {self.n_suspects} suspects used "
                f"({self.flag_rate:.0%} flagged at p <= {self.gamma:g}; the shadow flags {self.tpr:.0%} of its own "
                f"{self.n_shadow_clips} clips and {self.fpr:.0%} of non-members)")


def _fpr(gamma: float, n: int) -> float:
    """Exact rate at which ``p <= gamma`` flags an unused suspect against ``n`` calibration clips."""
    return math.floor(gamma * (n + 1) + 1e-9) / (n + 1)


def _flag_rate(scores: NDArray[np.float64], calibration: NDArray[np.float64], gamma: float) -> float:
    """Share of ``scores`` whose conformal p-value against ``calibration`` is at most ``gamma``."""
    return float(np.mean(conformal_pvalues(scores, calibration) <= gamma + 1e-12))


def _choose(shadow_in: NDArray[np.float64], shadow_cal: NDArray[np.float64], gammas: tuple[float, ...]) -> tuple[float, float, float]:
    """(gamma, the shadow's tpr, its fpr) where ``tpr - fpr`` is largest (the smaller gamma on a tie)."""
    best = (-np.inf, 0.0, 0.0, 0.0)
    for g in gammas:
        fpr = _fpr(g, shadow_cal.size)
        if fpr <= 0.0:
            continue  # too few calibration clips to flag at this level
        tpr = _flag_rate(shadow_in, shadow_cal, g)
        if tpr - fpr > best[0] + 1e-12:
            best = (tpr - fpr, g, tpr, fpr)
    if not np.isfinite(best[0]):
        raise ValueError(f"{shadow_cal.size} calibration non-members are too few to flag at any of the levels {gammas}")
    return best[1], best[2], best[3]


def _point(suspects: NDArray[np.float64], calibration: NDArray[np.float64], shadow_in: NDArray[np.float64],
           shadow_cal: NDArray[np.float64], gammas: tuple[float, ...]) -> tuple[float, float, float, float, float | None]:
    gamma, tpr, _ = _choose(shadow_in, shadow_cal, gammas)
    fpr = _fpr(gamma, calibration.size)  # the target's own calibration fixes its false-flag rate
    r = _flag_rate(suspects, calibration, gamma)
    raw = (r - fpr) / (tpr - fpr) if tpr - fpr >= MIN_SEPARATION else None
    return gamma, tpr, fpr, r, raw


def debiased_share(suspects: ArrayLike, calibration: ArrayLike, shadow_clips: ArrayLike, shadow_calibration: ArrayLike, *,
                   gammas: tuple[float, ...] = GAMMAS, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> DebiasedShare:
    """The share of suspects used, debiased by a shadow reference (see the module docstring).

    Parameters
    ----------
    suspects, calibration : the target's membership scores (higher = member) of the suspects
        and of the known non-members held out as calibration.
    shadow_clips, shadow_calibration : the shadow's scores, by the same attack, of its own
        training clips and of calibration non-members (the audit's own calibration clips
        serve: neither model trained on them).
    gammas : the levels the attack may flag at; the shadow chooses.
    level : the bootstrap interval's coverage.
    """
    s, c, si, sc = (np.asarray(a, dtype=np.float64).ravel() for a in (suspects, calibration, shadow_clips, shadow_calibration))
    for name, a in (("suspects", s), ("calibration", c), ("shadow_clips", si), ("shadow_calibration", sc)):
        if a.size < 2 or not np.isfinite(a).all():
            raise ValueError(f"{name} needs at least 2 finite scores")
    gamma, tpr, fpr, r, raw = _point(s, c, si, sc, gammas)
    interval = None
    if raw is not None:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(n_boot):
            bs, bc, bsi, bsc = (a[rng.integers(0, a.size, a.size)] for a in (s, c, si, sc))
            est = _point(bs, bc, bsi, bsc, gammas)[4]
            # a resample where the shadow's clips do not stand out says nothing: it counts at both ends
            draws.append(np.nan if est is None else est)
        d = np.asarray(draws)
        lost = np.isnan(d)
        finite, n_lost = np.sort(d[~lost]), int(lost.sum())
        tail = (1 - level) / 2
        k_lo, k_hi = int(np.floor(tail * n_boot)), int(np.ceil((1 - tail) * n_boot)) - 1
        # a lost resample is as uninformative as can be: below every other at the lower end, above at the upper
        lo = -np.inf if k_lo < n_lost else finite[k_lo - n_lost]
        hi = np.inf if k_hi >= finite.size else finite[k_hi]
        interval = (float(min(1.0, max(0.0, lo))), float(min(1.0, max(0.0, hi))))
    est = None if raw is None else float(min(1.0, max(0.0, raw)))
    return DebiasedShare(est, raw, interval, level, gamma, r, fpr, tpr, int(s.size), int(c.size), int(si.size), int(sc.size))
