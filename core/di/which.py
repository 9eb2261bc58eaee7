"""Which of my clips, and how much of my set: per-clip flags with a false-discovery
guarantee, confidence bounds on the share of suspects used, and a planner.

Everything here reads the scores a dataset-inference scorer produced (:class:`DIResult`):
each tested suspect and each tested non-member was scored by a model fitted on other clips
(its fold's), so within a fold a suspect that was not used in training is exchangeable with
the fold's tested non-members. That is the one assumption (with the known non-members
drawn from the same distribution as the unused suspects); a shift between the suspects and
the non-members that has nothing to do with training inflates every number here as it
inflates the DI p-value, which is why the blind baseline's verdict is quoted beside them.

- **Flags** (:func:`flag_clips`): each suspect's conformal p-value against its fold's tested
  non-members, ``(1 + #{non-members scoring >= it}) / (1 + n)``, and Benjamini-Hochberg at
  level q over all suspects (Bates et al., Ann. Statist. 2023).
- **Share used** (:func:`share_bounds`): a lower confidence bound on the number of suspects
  that are members, with no model of what a member looks like
  (:func:`members_at_least`). Each suspect's rank among its fold's calibration non-members
  is at most 1 for a member, and the unused suspects' ranks have a distribution-free joint
  law (suspects and calibration are one exchangeable sample), so the observed sum of ranks
  less one per member must be a plausible sum for the rest. The point estimate is Storey's
  (the suspects above p = 1/2 are unused ones), and the upper end of its interval assumes
  exactly that: every member scores above the non-members' median.
- **Planner** (:func:`plan`): the suspects the Welch test needs, from the measured effect
  and spreads (the Welch statistic with its degrees of freedom), and the non-members the
  flags need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import binom, norm
from scipy.stats import t as t_dist

from core.di.curve import SMALLEST_DEFAULT_SIZE
from core.stats.conformal import benjamini_hochberg, conformal_pvalues

DEFAULT_Q = 0.1
DEFAULT_LEVEL = 0.95
NULL_DRAWS = 4000


@dataclass(frozen=True)
class ClipFlags:
    """Per-suspect conformal p-values, BH q-values and the flagged suspects.

    ``index`` holds the rows of the suspect matrix each value belongs to (the tested suspects).
    """

    q: float
    index: NDArray[np.int64]
    pvalues: NDArray[np.float64]
    qvalues: NDArray[np.float64]
    flagged: NDArray[np.bool_]
    n_calibration: tuple[int, ...]

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    def to_dict(self) -> dict[str, Any]:
        return {"q": self.q, "index": self.index.tolist(), "p": [float(v) for v in self.pvalues],
                "q_values": [float(v) for v in self.qvalues], "flagged": [bool(v) for v in self.flagged],
                "n_flagged": self.n_flagged, "n_calibration": list(self.n_calibration)}


def _folds(p_group: NDArray[np.int64], u_group: NDArray[np.int64]) -> list[int]:
    return sorted(set(np.unique(p_group).tolist()) & set(np.unique(u_group).tolist()))


def fold_pvalues(p_scores: ArrayLike, u_scores: ArrayLike, p_group: ArrayLike, u_group: ArrayLike) -> tuple[
        NDArray[np.float64], list[tuple[NDArray[np.int64], int]]]:
    """Conformal p-value of every tested suspect against the tested non-members of its own
    fold, and per fold (positions of its suspects, its number of calibration non-members)."""
    p, u = np.asarray(p_scores, dtype=np.float64), np.asarray(u_scores, dtype=np.float64)
    gp, gu = np.asarray(p_group, dtype=np.int64), np.asarray(u_group, dtype=np.int64)
    out = np.full(p.size, np.nan)
    folds = []
    for g in _folds(gp, gu):
        at = np.flatnonzero(gp == g)
        calib = u[gu == g]
        out[at] = conformal_pvalues(p[at], calib)
        folds.append((at, int(calib.size)))
    if np.isnan(out).any():
        raise ValueError("a suspect's fold has no tested non-member to compare it with")
    return out, folds


def flag_clips(res: Any, q: float = DEFAULT_Q) -> ClipFlags:
    """:class:`ClipFlags` of a :class:`~core.di.inference.DIResult` (or anything with its
    ``p_scores``, ``u_scores``, ``p_group``, ``u_group``, ``p_index``) at FDR level ``q``."""
    pv, folds = fold_pvalues(res.p_scores, res.u_scores, res.p_group, res.u_group)
    return _flags(res, pv, folds, q)


def _flags(res: Any, pvalues: NDArray[np.float64], folds: list[tuple[NDArray[np.int64], int]], q: float) -> ClipFlags:
    flagged, qv = benjamini_hochberg(pvalues, q)
    return ClipFlags(q, np.asarray(res.p_index, dtype=np.int64), pvalues, qv, flagged, tuple(n for _, n in folds))


# -- the share used ------------------------------------------------------------------------
def _unused_at_least(above: int, n_cal: int, m: int, alpha: float, *, draws: int, seed: int) -> int:
    """The fewest unused suspects that make ``above`` of them with p > 1/2 plausible (upper
    tail at least ``alpha``): the count of unused suspects is at least this when no member
    has p > 1/2."""
    j = (n_cal + 1) // 2  # p <= j / (n_cal + 1) is "p <= 1/2"
    r = 1.0 - np.random.default_rng([seed, n_cal, 17]).beta(j, n_cal + 1 - j, size=draws)  # P(p > 1/2 | calibration)
    for m0 in range(above, m + 1):
        if float(binom.sf(above - 1, m0, r).mean()) >= alpha:
            return m0
    return m


def rank_sum_draws(n_cal: int, m: int, draws: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``[draws, m + 1]``: for k = 0 .. m unused suspects, the sum of their calibration ranks
    ``c_i / n_cal`` (``c_i``: calibration non-members scoring below suspect i) from their
    exact joint law: suspects and calibration non-members are one exchangeable sample, so
    i.i.d. uniforms draw it."""
    out = np.zeros((draws, m + 1))
    step = max(1, int(2**24 // max(1, m * n_cal)))
    for d0 in range(0, draws, step):
        d = min(step, draws - d0)
        cal = rng.random((d, n_cal))
        u = rng.random((d, m))
        c = (u[:, :, None] > cal[:, None, :]).sum(axis=2)  # [d, m]
        out[d0:d0 + d, 1:] = np.cumsum(c / max(n_cal, 1), axis=1)
    return out


def members_at_least(pvalues: ArrayLike, folds: list[tuple[NDArray[np.int64], int]], alpha: float, *,
                     draws: int = NULL_DRAWS, seed: int = 0) -> int:
    """A ``1 - alpha`` lower confidence bound on how many suspects are members, from the sum
    of their calibration ranks.

    A suspect's rank ``c_i / n_cal`` (the share of its fold's calibration non-members it
    outscores) is at most 1 for a member, whatever members look like, and the unused
    suspects' ranks have the exact joint law of :func:`rank_sum_draws`. So with ``m1``
    members, ``T - m1`` (T: the observed sum of ranks) is at most the sum of ``m - m1``
    unused ranks; a count ``m1`` that puts ``T - m1`` above that sum's ``1 - alpha`` quantile
    is rejected, and the bound is the smallest count that is not. Members that are shifted
    rather than extreme (every rank a little higher) move this sum where they barely move
    the count of small p-values.

    Several folds (a cross-fitted scorer) are not independent: each fold's model is fitted
    on the other fold's clips, so their chance differences share a sign. Each fold gets its
    own bound at ``alpha / n_folds`` and the bounds add up (a union bound, which holds under
    any dependence).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if len(folds) != 1:
        return sum(members_at_least(p, [f], alpha / len(folds), draws=draws, seed=seed) for f in folds)
    (at, n_cal), = folds
    m = int(at.size)
    # the rank of each suspect from its p-value: p = (1 + n_cal - c) / (n_cal + 1)
    total = float(np.sum(n_cal + 1 - (n_cal + 1) * p[at])) / max(n_cal, 1)
    null = rank_sum_draws(n_cal, m, draws, np.random.default_rng([seed, 29, m, n_cal]))
    quantiles = np.quantile(null, 1 - alpha, axis=0, method="higher")  # [m + 1]: k unused suspects
    for m1 in range(m + 1):
        if total - m1 <= float(quantiles[m - m1]) + 1e-9:
            return m1
    return m


@dataclass(frozen=True)
class ShareBounds:
    """How much of the suspect set was used.

    ``lower``: a ``level`` lower confidence bound on the share of the tested suspects that are
    members (assumes only exchangeability). ``estimate`` (Storey's) and ``upper`` also
    assume that every member scores above the known non-members' median.
    """

    lower: float
    estimate: float
    upper: float
    level: float
    n_suspects: int
    members_at_least: int

    ASSUMPTION = ("the known non-members are exchangeable with the suspects that were not used; the estimate and the upper "
                  "end also assume every member scores above the non-members' median")

    def sentence(self, flags: ClipFlags | None = None) -> str:
        """The sentence an auditor can quote."""
        text = (f"at least {self.lower:.0%} of the {self.n_suspects} suspects were used ({self.level:.0%} lower bound); "
                f"estimate {self.estimate:.0%} [{self.lower:.0%}, {self.upper:.0%}]")
        if flags is not None:
            text += f"; {flags.n_flagged} clip(s) flagged at FDR {flags.q:.0%}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"lower": self.lower, "estimate": self.estimate, "upper": self.upper, "level": self.level,
                "n_suspects": self.n_suspects, "members_at_least": self.members_at_least, "assumption": self.ASSUMPTION}


def share_bounds(pvalues: ArrayLike, folds: list[tuple[NDArray[np.int64], int]], *, level: float = DEFAULT_LEVEL,
                 seed: int = 0, draws: int = NULL_DRAWS) -> ShareBounds:
    """:class:`ShareBounds` from the suspects' conformal p-values and their folds (as
    :func:`fold_pvalues` returns them): the lower bound from :func:`members_at_least` over
    every fold at ``level``, the upper end from each fold's at ``(1 - level) / n_folds``."""
    p = np.asarray(pvalues, dtype=np.float64)
    alpha = 1 - level
    n1_lo = members_at_least(p, folds, alpha, draws=draws, seed=seed) if p.size else 0
    unused_lo = 0
    unused_hat = 0.0
    for at, n_cal in folds:  # the upper end: each fold's unused count at alpha / n_folds
        pg = p[at]
        j = (n_cal + 1) // 2
        above = int((pg > j / (n_cal + 1) + 1e-12).sum())
        unused_hat += above / (1 - j / (n_cal + 1))
        unused_lo += _unused_at_least(above, n_cal, pg.size, alpha / max(1, len(folds)), draws=draws, seed=seed)
    m = int(p.size)
    lower = n1_lo / m if m else 0.0
    upper = max(lower, 1 - unused_lo / m) if m else 0.0
    estimate = float(np.clip(1 - unused_hat / m, lower, upper)) if m else 0.0
    return ShareBounds(float(lower), estimate, float(upper), level, m, int(n1_lo))


# -- the planner ---------------------------------------------------------------------------
def _moments(res: Any) -> tuple[float, float, float]:
    """The effect the Welch test sees: the suspects' mean score minus the non-members', and
    their variances, averaged over the folds."""
    p, u = np.asarray(res.p_scores, dtype=np.float64), np.asarray(res.u_scores, dtype=np.float64)
    gp, gu = np.asarray(res.p_group), np.asarray(res.u_group)
    parts = [(p[gp == g].mean() - u[gu == g].mean(), p[gp == g].var(ddof=1), u[gu == g].var(ddof=1)) for g in _folds(gp, gu)]
    d, vp, vu = (float(np.mean([x[i] for x in parts])) for i in range(3))
    return d, vp, vu


def _reaches(n: float, d: float, vp: float, vu: float, alpha: float, power: float, n_u: int | None, groups: int) -> bool:
    """Whether ``n`` tested suspects reach ``power``: the statistic DI computes over
    ``groups`` equal folds (:func:`core.di.welch.combine_groups`: with equal folds it is one
    fold's Welch statistic), with that fold's degrees of freedom, shifted by the normal
    quantile of ``power``."""
    n_p, n_n = n / groups, (n if n_u is None else n_u) / groups
    if n_p < 2 or n_n < 2:
        return False
    a, b = vp / n_p, vu / n_n
    df = (a + b) ** 2 / (a * a / (n_p - 1) + b * b / (n_n - 1))
    return d / math.sqrt(a + b) >= float(t_dist.ppf(1 - alpha, df) + norm.ppf(power))


def required_tested(d: float, vp: float, vu: float, alpha: float, power: float, *, n_u: int | None = None,
                    groups: int = 1, most: int = 1_000_000) -> int | None:
    """The fewest tested suspects for DI's one-sided test at ``alpha`` to reach ``power``
    over ``groups`` folds: with as many non-members as suspects (``n_u`` None), else with
    ``n_u``. None when the effect is not positive or not even ``most`` suspects reach it."""
    def reaches(n: int) -> bool:
        return _reaches(n, d, vp, vu, alpha, power, n_u, groups)

    if d <= 0 or not reaches(most):
        return None
    lo, hi = 1, 2
    while not reaches(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # the statistic's margin grows with n: bisect the first n that reaches it
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


PLAN_RANGE = 0.8
"""Coverage of the interval of the effect the planner reports its range of suspects from."""


def plan(res: Any, *, alpha: float | None = None, q: float = DEFAULT_Q, share: ShareBounds | None = None,
         nonmembers: int | None = None) -> dict[str, Any]:
    """How many suspects the test needs (median p < alpha, and 80% power), with all the
    non-members at hand (or ``nonmembers`` known non-members in all, the study being
    planned: of them the same share is tested as in this run) and with as many as
    suspects; and how many calibration non-members the flags need at ``q`` (a member
    scoring above every one of them is flagged only when ``1 / (n + 1) <= q * share``).

    No answer is below the smallest set dataset inference tests
    (:data:`~core.di.curve.SMALLEST_DEFAULT_SIZE`): with fewer suspects Welch's test on
    skewed scores no longer holds its level, so "2 suspects" would be advice to run a test
    that rejects too often. ``below_smallest`` says which answers were raised to it."""
    alpha = res.alpha if alpha is None else alpha
    d, vp, vu = _moments(res)
    tested_share = res.p_scores.size / max(1, res.n_suspects)  # a split scorer tests part of the suspects
    n_u = int(res.u_scores.size)
    if nonmembers is not None:
        if nonmembers < 2:
            raise ValueError(f"plan for at least 2 known non-members, got {nonmembers}")
        n_u = max(2, int(round(nonmembers * res.u_scores.size / max(1, res.n_nonmembers))))

    raised: list[str] = []

    def given(x: int | None, name: str) -> int | None:
        if x is None:
            return None
        n = int(math.ceil(x / tested_share))
        if n < SMALLEST_DEFAULT_SIZE:
            raised.append(name)
        return max(n, SMALLEST_DEFAULT_SIZE)

    out: dict[str, Any] = {"effect": d, "sd_suspects": math.sqrt(vp), "sd_nonmembers": math.sqrt(vu), "alpha": alpha,
                           "smallest_tested": SMALLEST_DEFAULT_SIZE, "below_smallest": raised,
                           "nonmembers": int(res.n_nonmembers) if nonmembers is None else int(nonmembers),
                           "nonmembers_planned": nonmembers is not None}
    groups = max(1, len(_folds(np.asarray(res.p_group), np.asarray(res.u_group))))
    for power, name in ((0.5, "median"), (0.8, "power80")):
        out[f"suspects_{name}"] = given(required_tested(d, vp, vu, alpha, power, n_u=n_u, groups=groups), f"suspects_{name}")
        out[f"suspects_{name}_equal"] = given(required_tested(d, vp, vu, alpha, power, groups=groups), f"suspects_{name}_equal")
    # The effect is this run's estimate: its 80% interval (normal, from the tested clips'
    # spreads) gives the range of plans it supports. A larger effect asks for fewer suspects.
    se = math.sqrt(vp / max(1, res.p_scores.size) + vu / max(1, res.u_scores.size))
    z = float(norm.ppf(1 - (1 - PLAN_RANGE) / 2))
    ends = [required_tested(d + sign * z * se, vp, vu, alpha, 0.5, n_u=n_u, groups=groups) for sign in (1, -1)]
    out["suspects_median_range"] = [None if n is None else max(int(math.ceil(n / tested_share)), SMALLEST_DEFAULT_SIZE)
                                    for n in ends]
    out["plan_range"] = PLAN_RANGE
    if share is not None and share.estimate > 0:
        per_fold = math.ceil(1 / (q * share.estimate) - 1)  # calibration non-members one fold needs
        in_a_fold = res.u_scores.size / max(1, len(_folds(np.asarray(res.p_group), np.asarray(res.u_group)))) / max(1, res.n_nonmembers)
        out["nonmembers_for_flags"] = int(math.ceil(per_fold / in_a_fold))
    return out


def plan_sentence(p: dict[str, Any]) -> str:
    def n(x: int | None) -> str:
        return "not reachable with these non-members" if x is None else str(x)

    known = f"with {p['nonmembers']} known non-members" if p.get("nonmembers_planned") else "with the non-members at hand"
    text = (f"p < {p['alpha']:g} in half of the audits needs about {n(p['suspects_median'])} suspects {known} "
            f"({n(p['suspects_median_equal'])} with as many non-members), 80% power about {n(p['suspects_power80'])} "
            f"({n(p['suspects_power80_equal'])})")
    if p.get("suspects_median_range") and p["suspects_median"] is not None:
        lo, hi = p["suspects_median_range"]
        text += f"; the effect measured here is an estimate, and its {p['plan_range']:.0%} interval supports "
        text += (f"{lo} to {hi} suspects for the median" if hi is not None else
                 f"at least {lo} suspects for the median (at its lower end no number of suspects is enough with these "
                 "non-members)")
    if p.get("below_smallest"):
        text += (f" (answers below {p['smallest_tested']} raised to {p['smallest_tested']}, the smallest set dataset inference "
                 "tests: below it Welch's test rejects too often)")
    if p.get("nonmembers_for_flags") is not None:
        text += f"; flagging clips needs at least {p['nonmembers_for_flags']} known non-members"
    return text


@dataclass(frozen=True)
class WhichAndHowMuch:
    flags: ClipFlags
    share: ShareBounds
    plan: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"flags": self.flags.to_dict(), "share": self.share.to_dict(), "plan": self.plan,
                "sentence": self.share.sentence(self.flags), "plan_sentence": plan_sentence(self.plan)}


def which_and_how_much(res: Any, *, q: float = DEFAULT_Q, level: float = DEFAULT_LEVEL, seed: int = 0,
                       plan_nonmembers: int | None = None) -> WhichAndHowMuch:
    """Flags, share bounds and plan of one dataset-inference result."""
    pv, folds = fold_pvalues(res.p_scores, res.u_scores, res.p_group, res.u_group)
    flags = _flags(res, pv, folds, q)
    share = share_bounds(pv, folds, level=level, seed=seed)
    return WhichAndHowMuch(flags, share, plan(res, q=q, share=share, nonmembers=plan_nonmembers))


def flagged_table(ws: Any, run: dict[str, Any]) -> pd.DataFrame:
    """The tested suspects of a DI run with their conformal ``p``, BH ``q``, ``flagged`` and
    ``score``, their file ``path``, most significant first (empty without those columns: a
    run made before the flags)."""
    df = ws.run_table(run, "clips")
    if "q" not in df:
        return pd.DataFrame(columns=["path", "score", "p", "q", "flagged"], index=pd.Index([], name="clip_hash"))
    suspects = df[df["side"] == "P"][["score", "p", "q", "flagged"]].astype({"flagged": bool})
    clips = ws.analysis_clips(run["dataset"]).set_index("clip_hash")
    paths = clips["path"].astype(str) if "path" in clips else pd.Series(dtype=str)
    suspects.insert(0, "path", [paths.get(h, "") for h in suspects.index])
    return suspects.sort_values(["q", "p", "score"], ascending=[True, True, False], kind="stable")
