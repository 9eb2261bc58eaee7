"""The reference advisor's statistic: how much better the target fits known non-members
than its base does (label-free with respect to the suspects).

A fine-tune adapts to the domain of the data it saw, members and non-members alike. On
clips it never saw, the adaptation is all that separates it from its base: when the target
fits known non-members clearly better than the base, a base reference leaves that
adaptation in every calibrated score and a *shadow* reference (the base fine-tuned on other
known non-members, :mod:`core.recipes.shadow`) is the one that removes it; when it does not,
the base (or no reference) is enough, and a shadow only adds the noise of its own recipe.

The comparison is paired, per clip: ``d_i = loss_base(i) - loss_target(i)``, each loss the
clip's mean negative log-likelihood per scored token (the transcript's tokens, scored
teacher-forced by both models), or for a diffusion model the clip's mean denoising loss
(the squared error of the predicted noise, conditioned on the caption, averaged over the
evidence's fixed timesteps and seeded noise draws: the same draws for both models). Reported: the mean gap with a seeded percentile bootstrap
interval, the gap relative to the base's loss, and a one-sided exact sign test (the target
fits better than the base on more clips than chance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from math import comb

import numpy as np
from numpy.typing import ArrayLike, NDArray

SHADOW_MIN_RELATIVE_GAP = 0.10
"""Smallest relative gap (the target's loss on non-members at least 10% below the base's)
that recommends a shadow; below it the adaptation is too small for a shadow's own recipe
noise to be worth it (see docs/references.md, measured on the zoo and on Whisper tiny.en)."""

ALPHA = 0.01
"""Level of the sign test: the target must fit the non-members better than chance says."""


def sign_test_greater(n_positive: int, n: int) -> float:
    """One-sided exact sign test: P(X >= n_positive) for X ~ Binomial(n, 1/2) (1.0 for n = 0).
    Exact integer arithmetic, so it holds for any n."""
    if n <= 0:
        return 1.0
    return float(sum(comb(n, j) for j in range(n_positive, n + 1)) / 2**n)


@dataclass(frozen=True)
class FitGap:
    """The paired comparison of target and base on known non-members.

    n : clips compared (ties count as not better).
    target_loss, base_loss : mean over clips of each model's per-clip mean token loss (nats).
    gap : mean of ``base - target`` per clip (> 0: the target fits the non-members better).
    gap_ci : percentile bootstrap interval of ``gap`` (clips resampled).
    relative_gap : ``gap / base_loss``.
    n_better : clips on which the target's loss is strictly below the base's.
    sign_p : one-sided sign-test p-value of ``n_better`` out of ``n``.
    """

    n: int
    target_loss: float
    base_loss: float
    gap: float
    gap_ci: tuple[float, float]
    relative_gap: float
    n_better: int
    sign_p: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"gap_ci": list(self.gap_ci)}


def paired_losses(first: ArrayLike, second: ArrayLike, what: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two models' per-clip losses on the same clips, as flat float arrays; refused (naming
    ``what``) when their lengths differ, there are fewer than two clips or a loss is not finite."""
    a = np.asarray(first, dtype=np.float64).reshape(-1)
    b = np.asarray(second, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"{what} needs two equal-length loss vectors of at least 2 clips, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"{what}: a per-clip loss is not finite")
    return a, b


def fit_gap(target_loss: ArrayLike, base_loss: ArrayLike, *, n_boot: int = 2000, seed: int = 0,
            level: float = 0.95) -> FitGap:
    """Compare per-clip losses of the target and its base on the same non-members.

    Parameters
    ----------
    target_loss, base_loss : ``[n]`` per-clip mean token loss of each model (same clips, same order).
    n_boot : bootstrap resamples of the clips for ``gap_ci``.
    seed : seed of the bootstrap.
    level : coverage of the interval.

    Raises
    ------
    ValueError
        shapes differ, fewer than two clips, or a loss is not finite.
    """
    t, b = paired_losses(target_loss, base_loss, "fit_gap")
    d = b - t
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    better = int((d > 0).sum())
    base_mean = float(b.mean())
    return FitGap(n=int(d.size), target_loss=float(t.mean()), base_loss=base_mean, gap=float(d.mean()),
                  gap_ci=(float(lo), float(hi)), relative_gap=float(d.mean() / base_mean) if base_mean > 0 else float("nan"),
                  n_better=better, sign_p=sign_test_greater(better, int(d.size)))


TOKEN_UNIT = "nats/token"
DENOISING_UNIT = "denoising MSE"
"""The loss's unit as the advisor's reason says it: token families, diffusion."""


def recommend(gap: FitGap, *, alpha: float = ALPHA, min_relative: float = SHADOW_MIN_RELATIVE_GAP,
              unit: str = TOKEN_UNIT) -> tuple[str, str]:
    """``("shadow" | "base or none", why)``: a shadow when the target fits the non-members
    better than its base, significantly (sign test at ``alpha`` and a bootstrap interval
    above 0) and by at least ``min_relative`` of the base's loss; ``unit`` names the loss
    in ``why``."""
    significant = gap.sign_p < alpha and gap.gap_ci[0] > 0
    large = gap.relative_gap >= min_relative
    where = (f"the target's loss on {gap.n} known non-members is {gap.target_loss:.3f} against the base's {gap.base_loss:.3f} "
             f"{unit} (gap {gap.gap:+.3f} [{gap.gap_ci[0]:+.3f}, {gap.gap_ci[1]:+.3f}], {gap.relative_gap:+.1%} of the base's; "
             f"better on {gap.n_better}/{gap.n}, sign test p = {gap.sign_p:.2g})")
    if significant and large:
        return "shadow", (f"{where}: the target adapted to this data's domain beyond its base, which a base reference "
                          "cannot remove; build a shadow reference")
    reason = "not significant" if not significant else f"below {min_relative:.0%} of the base's loss"
    return "base or none", (f"{where}: no domain adaptation beyond the base worth a shadow ({reason}); "
                            "calibrate against the base, or use no reference")
