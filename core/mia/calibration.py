"""Reference-calibrated membership indicators: each clip's value relative to reference models.

A reference model did not train on the suspects (a base model, an earlier release, a model
of the same family trained on public data). Comparing the target's value of an indicator on
a clip with the references' values on the same clip removes what makes the clip easy or
hard for *any* model of the family (its length, its acoustics, a band-limited recording),
and keeps what the target alone learned. Three calibrations, each one function registered
with :func:`register_calibration`:

=====  =========================================================  ============  ===========
name   value per clip (``t``: target, ``r_j``: reference j)        references    paper
=====  =========================================================  ============  ===========
diff   ``t - mean_j r_j``                                          1 or more     Watson et al. 2022; Carlini et al. 2021 (reference attack, MIMIR)
resid  ``t - (b0 + sum_j b_j r_j)``, ``b`` least squares over      1 or more     Watson et al. 2022, the reference's scale fitted
       every audited clip (labels unused)
lira   ``(t - mean_j r_j) / sigma``, sigma per clip shrunk to      2 or more     Carlini et al. 2022 (LiRA, offline)
       the pooled spread of the references
rmia   fraction of the population clips ``z`` with                 1 or more     Zarifzadeh et al. 2024 (RMIA, gamma = 1)
       ``LR(z) < LR(x)``, ``LR = a_t - log mean_j exp(a_r_j)``
=====  =========================================================  ============  ===========

``a`` is the direction-aligned value (higher = member), read as a log-likelihood. The RMIA
population is every audited clip (members and non-members alike, labels unused): a
population of known non-members would feed labels into the evaluated clips' features, and
the cross-validated aggregate and dataset inference must never see an evaluated clip's label.

A calibrated column's key is ``"{calibration}:{indicator key}"`` (``diff:min_k@0.2``); it
keeps the indicator's family and direction (:func:`core.mia.registry.family_of`), so the
aggregate, dataset inference, the curves and the report read it like any indicator.

Every calibration assumes the references did **not** train on the suspects. A reference
that did fits the members as well as the target does, and subtracting it removes the very
signal the audit looks for (README, "Reference models").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import logsumexp

from core.mia.registry import CALIBRATION_SEP, direction
from core.registry import Registry
from core.stats import format_p, normal_test, paired_auc_difference
from core.stats.cv import hanley_mcneil_se

SIGMA_FLOOR = 1e-6
"""Smallest spread a standardisation divides by (two references can agree exactly)."""

LIRA_PRIOR = 2.0
"""Pseudo-count of the pooled variance in LiRA's per-clip variance: with two or three
references a clip's own spread is one or two degrees of freedom, too noisy alone (LiRA's
fixed-variance variant is the limit of a large pseudo-count)."""

CalibrationFn = Callable[..., NDArray[np.float64]]


@dataclass(frozen=True)
class Calibration:
    """One registered calibration.

    Attributes
    ----------
    name : key prefix of the calibrated columns.
    fn : ``fn(target [n], references [m, n], *, sign) -> [n]`` (``sign`` is the
        indicator's direction, +1 when higher = member).
    min_references : the fewest references it is defined for.
    description : one line for the UI and the report.
    reference : the paper that defines it.
    """

    name: str
    fn: CalibrationFn
    min_references: int
    description: str = ""
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "min_references": self.min_references, "description": self.description,
                "reference": self.reference}


_CALIBRATIONS: Registry[Calibration] = Registry("calibration")


def register_calibration(name: str, *, min_references: int, description: str, reference: str) -> Callable[[CalibrationFn], CalibrationFn]:
    """Decorator registering ``fn`` as the calibration ``name`` (duplicates raise)."""

    def decorate(fn: CalibrationFn) -> CalibrationFn:
        _CALIBRATIONS.add(name, Calibration(name, fn, int(min_references), description, reference))
        return fn

    return decorate


def calibrations(n_references: int | None = None) -> tuple[Calibration, ...]:
    """Registered calibrations in registration order; with ``n_references``, only those
    defined for that many references."""
    return tuple(c for c in _CALIBRATIONS.values() if n_references is None or c.min_references <= n_references)


def get_calibration(name: str) -> Calibration:
    """The calibration registered as ``name``; unknown names raise listing the valid ones."""
    return _CALIBRATIONS.get(name)


@register_calibration(
    "diff", min_references=1,
    description="target value minus the references' mean value on the same clip (difficulty calibration)",
    reference="Watson et al. 2022, On the importance of difficulty calibration in membership inference attacks; "
              "Carlini et al. 2021 (reference-model attack)",
)
def difference(target: NDArray[np.float64], references: NDArray[np.float64], *, sign: int = 1) -> NDArray[np.float64]:
    """``target - mean(references, axis=0)``; NaN where any input is not finite."""
    out: NDArray[np.float64] = target - references.mean(axis=0)
    return out


@register_calibration(
    "resid", min_references=1,
    description="target value minus its least-squares prediction from the references' values on the same clip "
                "(slope and intercept fitted on every audited clip, labels unused): difficulty calibration for a "
                "reference whose scale differs from the target's",
    reference="Watson et al. 2022 (difficulty calibration), with the reference's scale fitted by regression",
)
def residual(target: NDArray[np.float64], references: NDArray[np.float64], *, sign: int = 1) -> NDArray[np.float64]:
    """``target - (b0 + sum_j b_j r_j)`` with ``b`` the least-squares fit of the target on
    the references over the clips where all are finite; NaN elsewhere. The fit sees every
    audited clip and no label, so the members' part of the target, which the references
    lack, stays in the residual while the part any model of the family shares is removed."""
    ok = np.isfinite(target) & np.isfinite(references).all(axis=0)
    out = np.full(target.shape, np.nan)
    if ok.sum() < references.shape[0] + 2:
        return out
    A = np.column_stack([np.ones(int(ok.sum())), references[:, ok].T])
    coef, *_ = np.linalg.lstsq(A, target[ok], rcond=None)
    out[ok] = target[ok] - A @ coef
    return out


@register_calibration(
    "lira", min_references=2,
    description="target value standardised per clip against the references' values (mean and spread per clip, "
                "the spread shrunk towards the pooled spread)",
    reference="Carlini et al. 2022, Membership Inference Attacks From First Principles (LiRA, offline)",
)
def lira_offline(target: NDArray[np.float64], references: NDArray[np.float64], *, sign: int = 1) -> NDArray[np.float64]:
    """``(target - mu) / sigma``: ``mu`` the references' mean on each clip, ``sigma^2`` the
    clip's unbiased variance over references blended with the variance pooled over clips
    (weight :data:`LIRA_PRIOR`), floored at :data:`SIGMA_FLOOR`."""
    m = references.shape[0]
    if m < 2:
        raise ValueError("lira needs at least two references")
    mu = references.mean(axis=0)
    var = references.var(axis=0, ddof=1)
    with np.errstate(all="ignore"):
        pooled = float(np.nanmean(var)) if np.isfinite(var).any() else 0.0
    shrunk = ((m - 1) * var + LIRA_PRIOR * pooled) / (m - 1 + LIRA_PRIOR)
    out: NDArray[np.float64] = (target - mu) / np.maximum(np.sqrt(shrunk), SIGMA_FLOOR)
    return out


@register_calibration(
    "rmia", min_references=1,
    description="likelihood ratio against the references, ranked against every audited clip (population, labels unused)",
    reference="Zarifzadeh et al. 2024, Low-Cost High-Power Membership Inference Attacks (RMIA)",
)
def rmia(target: NDArray[np.float64], references: NDArray[np.float64], *, sign: int = 1) -> NDArray[np.float64]:
    """RMIA with gamma = 1: for each clip ``x`` the fraction of the other clips ``z`` with
    ``LR(z) < LR(x)`` (ties count one half), ``LR = a_t - log mean_j exp(a_r_j)`` on aligned
    values ``a = sign * value``. Returned times ``sign`` so the indicator's direction holds.
    Clips with a non-finite ratio get NaN and are not in the population."""
    m = references.shape[0]
    a_t, a_r = sign * target, sign * references
    with np.errstate(all="ignore"):
        lr = a_t - (logsumexp(a_r, axis=0) - np.log(m))
    ok = np.isfinite(lr)
    out = np.full(lr.shape, np.nan)
    pop = np.sort(lr[ok])
    if pop.size >= 2:
        below = np.searchsorted(pop, lr[ok], side="left")
        ties = np.searchsorted(pop, lr[ok], side="right") - below - 1  # the clip itself is not its own population
        out[ok] = (below + 0.5 * ties) / (pop.size - 1)
    result: NDArray[np.float64] = sign * out
    return result


def resolve_calibrations(names: Sequence[str], n_references: int) -> tuple[str, ...]:
    """The calibrations a run computes: ``names`` when given (each checked), else the
    default: ``resid`` with one reference, ``resid`` and ``lira`` with two or more.

    ``resid`` is the default because it stays valid when the reference's scale differs
    from the target's (a stronger or weaker model): on the demo, ``lalm-large`` against
    ``lalm-ref`` in generated mode reads 0.43 with ``diff`` on Min-k% and 0.65 with
    ``resid`` (README, "Reference models"; a choice made on the demo's clips).

    Raises
    ------
    KeyError
        an unknown calibration (the message lists the valid ones).
    ValueError
        a calibration that needs more references than given.
    """
    chosen = tuple(names) if names else (("resid", "lira") if n_references >= 2 else ("resid",))
    for name in chosen:
        c = get_calibration(name)
        if c.min_references > n_references:
            raise ValueError(f"calibration {name!r} needs at least {c.min_references} references, got {n_references}")
    return chosen


def calibrated_table(target: pd.DataFrame, references: Sequence[pd.DataFrame], *, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Every calibration of every indicator column shared by the target and the references.

    Parameters
    ----------
    target : ``[n_clips, n_keys]`` indicator table of the target (:func:`core.mia.indicator_table`).
    references : one such table per reference model, for the same clips (rows are matched
        by index).
    names : calibrations to compute (default: every one defined for this many references).

    Returns
    -------
    DataFrame ``[n_clips, n_calibrations * n_shared_keys]`` with columns
    ``"{calibration}:{key}"``, rows in the target's order.
    """
    if not references:
        raise ValueError("calibration needs at least one reference")
    m = len(references)
    chosen = calibrations(m) if names is None else tuple(get_calibration(n) for n in names)
    for c in chosen:
        if c.min_references > m:
            raise ValueError(f"calibration {c.name!r} needs at least {c.min_references} references, got {m}")
    keys = [k for k in target.columns if all(k in r.columns for r in references) and CALIBRATION_SEP not in str(k)]
    refs = [r.reindex(target.index) for r in references]
    cols: dict[str, NDArray[np.float64]] = {}
    for c in chosen:
        for key in keys:
            t = target[key].to_numpy(dtype=np.float64)
            R = np.vstack([r[key].to_numpy(dtype=np.float64) for r in refs])
            with np.errstate(all="ignore"):
                v = np.asarray(c.fn(t, R, sign=direction(str(key))), dtype=np.float64)
            bad = ~np.isfinite(t) | ~np.isfinite(R).all(axis=0)
            cols[f"{c.name}{CALIBRATION_SEP}{key}"] = np.where(bad, np.nan, v)
    return pd.DataFrame(cols, index=target.index, dtype=np.float64)


def is_calibrated(key: str) -> bool:
    """True for a calibrated column key (``diff:min_k@0.2``)."""
    return CALIBRATION_SEP in str(key)


def split_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(uncalibrated columns, calibrated columns) of an indicator table."""
    cal = [c for c in table.columns if is_calibrated(str(c))]
    return table.drop(columns=cal), table[cal]


def calibration_of_table(table: pd.DataFrame) -> list[str]:
    """The calibrations present in a table's columns, in registration order."""
    present = {str(c).split(CALIBRATION_SEP, 1)[0] for c in table.columns if is_calibrated(str(c))}
    return [c.name for c in calibrations() if c.name in present]


GAIN_KEYS = ("auc", "tpr_at_1pct_fpr")


def calibration_gain(calibrated: dict[str, Any], uncalibrated: dict[str, Any]) -> dict[str, float | None]:
    """What the references bought: calibrated minus uncalibrated AUC and TPR at 1% FPR
    (None where either is not measurable), from two MIA result dicts."""
    out: dict[str, float | None] = {}
    for k in GAIN_KEYS:
        c, u = calibrated.get(k), uncalibrated.get(k)
        out[k] = None if c is None or u is None else float(c) - float(u)
    return out


GAIN_METHOD = ("DeLong's paired test on the two aggregates' out-of-fold scores, its variance widened by each aggregate's "
               "refit variance (its permutation null's variance beyond the fixed-score variance at chance)")
"""How the AUC gain's interval and p-value are read (beside them on every surface)."""


def auc_gain_test(labels: Any, calibrated_scores: Any, uncalibrated_scores: Any, *, calibrated_null_sd: float | None,
                  uncalibrated_null_sd: float | None, level: float = 0.95) -> dict[str, Any] | None:
    """The calibrated minus the uncalibrated aggregate AUC on the same clips, with an interval
    and a two-sided p-value of "the references bought nothing".

    DeLong's paired variance (:func:`core.stats.paired_auc_difference`) treats the
    out-of-fold scores as fixed, but each aggregate was fitted on folds of these same clips,
    and that refit noise is its own: on simulated audits of 100 members and 50 non-members
    whose two aggregates have the same expected AUC, DeLong alone rejects at 5% in 14.9% of
    1,000 runs. Each aggregate's permutation null (the whole CV procedure refitted under
    permuted labels) measures its AUC's spread with refits; what it has beyond the
    fixed-score spread at chance (Hanley and McNeil's at 0.5) is added to the variance, for
    both aggregates as if independent. That rejects in 1.9% of the same runs: conservative
    (``bench/measure_stats_levels.py --only gain``; ``tests/test_mia_calibration_gain.py``
    asserts it on 200).

    None without both null spreads (a run without permutations) or with fewer than two clips
    of a label among the clips both aggregates scored.
    """
    if calibrated_null_sd is None or uncalibrated_null_sd is None:
        return None
    y = np.asarray(labels, dtype=np.int64)
    c, u = np.asarray(calibrated_scores, dtype=np.float64), np.asarray(uncalibrated_scores, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(u)
    y, c, u = y[ok], c[ok], u[ok]
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if min(n1, n0) < 2:
        return None
    paired = paired_auc_difference(y, c, u, level=level)
    chance = hanley_mcneil_se(0.5, n1, n0) ** 2
    refits = sum(max(0.0, float(sd) ** 2 - chance) for sd in (calibrated_null_sd, uncalibrated_null_sd))
    se = float(np.sqrt(paired.se**2 + refits))
    ci, p = normal_test(paired.diff, se, level)
    return {"auc": paired.diff, "auc_ci": list(ci), "auc_p_value": p, "auc_se": se, "auc_se_fixed_scores": paired.se,
            "auc_method": GAIN_METHOD}


def gain_interval_text(gain: dict[str, Any]) -> str:
    """The AUC gain's interval and p-value (:func:`auc_gain_test`) in words, or why it has none."""
    if gain.get("auc") is None:
        return ""
    if gain.get("auc_ci") is None:
        return "no interval: the run has no permutations"
    lo, hi = gain["auc_ci"]
    return f"[{lo:+.3f}, {hi:+.3f}], p = {format_p(gain['auc_p_value'])}"


def gain_text(gain: dict[str, Any]) -> str:
    """The AUC gain with its interval and p-value, in the words every surface uses."""
    if gain.get("auc") is None:
        return "n/a"
    return f"{gain['auc']:+.3f} ({gain_interval_text(gain)})"


def suspects_gain(calibrated: int | None, uncalibrated: int | None) -> float | None:
    """How many times fewer suspects dataset inference needs with calibration
    (uncalibrated / calibrated); None when the calibrated run never reaches significance,
    ``inf`` when only the calibrated one does."""
    if calibrated is None:
        return None
    if uncalibrated is None:
        return float("inf")
    return float(uncalibrated) / float(calibrated)


def suspects_gain_text(factor: float | None) -> str:
    """:func:`suspects_gain` in words, the same on the page, in the report and the CLI."""
    if factor is None:
        return "n/a (the calibrated test does not reach alpha)"
    if factor == float("inf"):
        return "only calibrated reaches alpha"
    if factor == 1:
        return "as many"
    return f"{factor:.3g}x fewer" if factor > 1 else f"{1 / factor:.3g}x more"


# -- cross-fitted shadows: every clip calibrated against the shadows that never trained on it --
def cross_fit_folds(trained: Sequence[frozenset[str] | set[str]]) -> list[int]:
    """The fold of each of ``m`` shadows in a cross-fitted audit: shadows trained on the
    same clips (a set's seeds) share a fold, numbered in the order they first appear.

    Raises
    ------
    ValueError
        fewer than two folds (one shadow, or shadows all on the same clips), or folds of
        unequal size (a clip's number of references would depend on which fold holds it).
    """
    ids: dict[frozenset[str], int] = {}
    folds = [ids.setdefault(frozenset(s), len(ids)) for s in trained]
    if len(ids) < 2:
        raise ValueError(f"cross-fitting needs two or more shadow references on disjoint clips, got {len(trained)} shadow(s) "
                         f"on {len(ids)} set(s) of clips")
    if len({folds.count(f) for f in ids.values()}) > 1:
        raise ValueError(f"cross-fitting needs as many shadows on each set of clips: {len(ids)} sets with "
                         f"{', '.join(str(folds.count(f)) for f in ids.values())} shadows")
    return folds


def cross_fit_assignment(clip_hashes: Sequence[str], trained: Sequence[frozenset[str] | set[str]]) -> NDArray[np.bool_]:
    """Which of ``m`` shadow references calibrate each clip in a cross-fitted audit,
    ``[m, n]`` (True: used).

    The shadows fall into ``G`` folds (:func:`cross_fit_folds`: one shadow each, or a set's
    seeds on one draw of clips), and every clip is calibrated against the shadows of
    ``G - 1`` folds: a clip the shadows of fold ``g`` trained on against all the others; a
    clip no shadow trained on (a suspect, or a non-member kept out of every shadow) against
    all but one fold, dropped by the clip's content hash (``sha256(hash) mod G``), so that
    no label decides how many references a clip has and a member's calibrated value is
    distributed like a non-member's when the target never trained on either. The folds'
    training sets must be disjoint.

    Raises
    ------
    ValueError
        fewer than two folds, folds of unequal size, or a clip that two folds trained on.
    """
    import hashlib

    folds = np.asarray(cross_fit_folds(trained))
    g = int(folds.max()) + 1
    out = np.ones((len(trained), len(clip_hashes)), dtype=bool)
    for i, h in enumerate(clip_hashes):
        inside = {int(folds[j]) for j, s in enumerate(trained) if h in s}
        if len(inside) > 1:
            raise ValueError(f"clip {str(h)[:12]} trained shadows of {len(inside)} folds: cross-fitting needs disjoint training clips")
        drop = inside.pop() if inside else int(hashlib.sha256(str(h).encode()).hexdigest()[:8], 16) % g
        out[folds == drop, i] = False
    return out


def cross_fitted_reference(references: Sequence[pd.DataFrame], available: NDArray[np.bool_]) -> pd.DataFrame:
    """One reference table from ``m`` (rows: the same clips, in the same order): each
    clip's value of each shared indicator is the mean over the references ``available``
    (``[m, n]``, :func:`cross_fit_assignment`) marks for it. NaN where one of them is NaN."""
    if len(references) != available.shape[0] or any(len(r) != available.shape[1] for r in references):
        raise ValueError(f"{len(references)} reference table(s) for an assignment of shape {available.shape}")
    keys = [k for k in references[0].columns if all(k in r.columns for r in references)]
    stack = np.stack([r[keys].to_numpy(dtype=np.float64) for r in references])  # [m, n, k]
    used = available[:, :, None]
    with np.errstate(all="ignore"):
        mean = np.where(used, stack, 0.0).sum(axis=0) / used.sum(axis=0)
    mean[~np.isfinite(mean)] = np.nan  # a used reference without a finite value
    return pd.DataFrame(mean, index=references[0].index, columns=keys)
