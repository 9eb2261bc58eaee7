"""Dataset-inference scorers: per-clip indicators -> one membership score per tested clip.

Reference: "Membership and Dataset Inference Attacks on Large Audio Generative Models"
(arXiv 2512.09654): a linear scorer trained on disjoint control splits for diffusion
models, a normalized sum of indicators for autoregressive models, then Welch's t-test.

Every scorer keeps the clips it fits or standardizes on out of the clips it tests, so under
H0 (suspects drawn from the non-member distribution) the tested suspect and non-member
scores are exchangeable given the fitted scorer, and the Welch test holds its level.
Higher score = member throughout.

Groups (speakers, sources): the learned scorers (``control_split``, ``cross_fit``) split
by whole groups when given them, so no speaker is on both the fit and the test side.
Split clip by clip, a model fitted on the chance member/non-member imbalance of each
speaker's fit clips meets the opposite imbalance in that speaker's test clips, which
biases the test towards "not used" (mean t about -1 on null data with label-balanced
speakers; about 0 when grouped). ``normalized_sum`` fits nothing on labels and ignores
them (see its body).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.pipeline import Pipeline

from core.di.registry import ScoredSplit, ScorerConfig, get_scorer, register_scorer, scorer_names
from core.stats import default_classifier

MIN_PER_SIDE = 2


def check_features(
    suspect_features: ArrayLike, nonmember_features: ArrayLike, directions: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Validate and convert inputs: ``[n_p, d]``, ``[n_u, d]`` float arrays, directions ``[d]`` of +-1.

    A 1-D array is read as one indicator per clip (``d = 1``).
    """
    P = np.asarray(suspect_features, dtype=np.float64)
    U = np.asarray(nonmember_features, dtype=np.float64)
    P = P[:, None] if P.ndim == 1 else P
    U = U[:, None] if U.ndim == 1 else U
    if P.ndim != 2 or U.ndim != 2:
        raise ValueError("features must be arrays of shape [n_clips, n_indicators]")
    if P.shape[1] != U.shape[1]:
        raise ValueError(f"suspects have {P.shape[1]} indicators, non-members {U.shape[1]}")
    if P.shape[1] == 0:
        raise ValueError("at least one indicator is needed")
    if not (np.all(np.isfinite(P)) and np.all(np.isfinite(U))):
        raise ValueError("features contain NaN or Inf")
    if directions is None:
        return P, U, None
    s = np.asarray(directions, dtype=np.float64).ravel()
    if s.shape[0] != P.shape[1]:
        raise ValueError(f"directions has length {s.shape[0]}, expected {P.shape[1]}")
    if not np.all(np.isin(s, (-1.0, 1.0))):
        raise ValueError("directions must be +1 (higher = member) or -1 (lower = member)")
    return P, U, s


def _split(n: int, fraction: float, rng: np.random.Generator, what: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Random (fit, test) row split with at least 2 rows on each side, both sorted."""
    if n < 2 * MIN_PER_SIDE:
        raise ValueError(f"{what}: {n} clips, need at least {2 * MIN_PER_SIDE} to fit and test on disjoint halves")
    perm = rng.permutation(n)
    k = int(np.clip(round(n * fraction), MIN_PER_SIDE, n - MIN_PER_SIDE))
    return np.sort(perm[:k]), np.sort(perm[k:])


Groups = tuple[NDArray[np.int64], NDArray[np.int64]] | None
MAX_GROUP_TRIES = 50


def encode_groups(p_groups: ArrayLike | None, u_groups: ArrayLike | None, n_p: int, n_u: int) -> Groups:
    """Integer group codes shared by suspects and non-members (a speaker or source on both
    sides gets one code); None when no groups are given."""
    if p_groups is None and u_groups is None:
        return None
    if p_groups is None or u_groups is None:
        raise ValueError("groups must be given for both suspects and non-members, or for neither")
    gp, gu = np.asarray(p_groups).astype(str).ravel(), np.asarray(u_groups).astype(str).ravel()
    if gp.size != n_p or gu.size != n_u:
        raise ValueError(f"groups have {gp.size} and {gu.size} entries for {n_p} suspects and {n_u} non-members")
    codes = side_codes(np.concatenate([gp, gu]))
    return codes[:n_p], codes[n_p:]


def side_codes(groups: ArrayLike) -> NDArray[np.int64]:
    """Integer codes ``[n]`` of per-clip group labels (equal labels, equal codes)."""
    return np.unique(np.asarray(groups).astype(str).ravel(), return_inverse=True)[1].astype(np.int64)


def _group_fit_masks(
    groups: tuple[NDArray[np.int64], ...], fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.bool_], ...] | None:
    """Assign whole groups to the fit side, jointly over the given sides, until about
    ``fraction`` of all clips are on it; every side keeps ``MIN_PER_SIDE`` clips on both
    sides of the split. None when no assignment tried does (too few groups)."""
    codes = np.concatenate(groups)
    n_codes = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=n_codes)
    for _ in range(MAX_GROUP_TRIES):
        order = rng.permutation(n_codes)
        before = np.cumsum(sizes[order]) - sizes[order]
        fit = np.zeros(n_codes, dtype=bool)
        fit[order[before < fraction * codes.size]] = True
        masks = tuple(fit[g] for g in groups)
        if all(MIN_PER_SIDE <= m.sum() <= m.size - MIN_PER_SIDE for m in masks):
            return masks
    return None


def _mask_rows(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(rows where ``mask``, rows where not), sorted."""
    return np.flatnonzero(mask).astype(np.int64), np.flatnonzero(~mask).astype(np.int64)


def _grouped_split(
    sides: tuple[int, ...], fraction: float, rng: np.random.Generator, groups: tuple[NDArray[np.int64], ...] | None,
    names: tuple[str, ...], scorer: str,
) -> tuple[list[tuple[NDArray[np.int64], NDArray[np.int64]]], list[str]]:
    """(fit, test) rows per side; with groups, no group is on both the fit and the test side
    of any side (so a speaker's clips never score clips of the same speaker). Falls back
    to the ungrouped split, with a note, when the groups are too few to split."""
    for n, what in zip(sides, names):
        if n < 2 * MIN_PER_SIDE:
            raise ValueError(f"{what}: {n} clips, need at least {2 * MIN_PER_SIDE} to fit and test on disjoint halves")
    if groups is not None:
        masks = _group_fit_masks(groups, fraction, rng)
        if masks is not None:
            return [_mask_rows(m) for m in masks], []
        note = f"{scorer}: too few groups to keep each group on one side of the fit/test split; clips were split ungrouped"
        return [_split(n, fraction, rng, what) for n, what in zip(sides, names)], [note]
    return [_split(n, fraction, rng, what) for n, what in zip(sides, names)], []


def _align(X: NDArray[np.float64], directions: NDArray[np.float64] | None) -> NDArray[np.float64]:
    return X if directions is None else X * directions


def _fit_linear(Xp: NDArray[np.float64], Xu: NDArray[np.float64], config: ScorerConfig) -> Pipeline:
    X = np.vstack([Xp, Xu])
    y = np.r_[np.ones(len(Xp), dtype=np.int64), np.zeros(len(Xu), dtype=np.int64)]
    # Newton-Cholesky solves the same L2 objective as lbfgs about 10x faster when clips
    # far outnumber indicators, which matters because the null check refits per run.
    model = default_classifier(C=config.C).set_params(
        logisticregression__solver="newton-cholesky", logisticregression__tol=1e-8
    )
    return model.fit(X, y)


def _single_group(
    name: str,
    sp: NDArray[np.float64],
    su: NDArray[np.float64],
    pt: NDArray[np.int64],
    ut: NDArray[np.int64],
    pf: NDArray[np.int64],
    uf: NDArray[np.int64],
    notes: tuple[str, ...] = (),
) -> ScoredSplit:
    return ScoredSplit(
        scorer=name,
        p_scores=np.asarray(sp, dtype=np.float64),
        u_scores=np.asarray(su, dtype=np.float64),
        p_index=pt,
        u_index=ut,
        p_group=np.zeros(pt.size, dtype=np.int64),
        u_group=np.zeros(ut.size, dtype=np.int64),
        fit_p_index=(pf,),
        fit_u_index=(uf,),
        notes=notes,
    )


@register_scorer(
    "control_split",
    description="Standardized L2 logistic regression fitted on one half of P and of U, "
    "tested on the other halves (the paper's scorer for diffusion models).",
    uses_groups=True,
)
def control_split(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    seed: int,
    config: ScorerConfig,
    groups: Groups = None,
) -> ScoredSplit:
    """Fit a linear scorer on a seeded fit split of P and U; score only the held-out rest.

    The score is the logistic regression's decision function (log-odds), which is linear
    in the indicators. Directions do not change it (the regression learns the signs).
    """
    rng = np.random.default_rng(seed)
    ((pf, pt), (uf, ut)), notes = _grouped_split(
        (P.shape[0], U.shape[0]), config.fit_fraction, rng, groups, ("suspects", "non-members"), "control_split"
    )
    Xp, Xu = _align(P, directions), _align(U, directions)
    model = _fit_linear(Xp[pf], Xu[uf], config)
    return _single_group(
        "control_split", model.decision_function(Xp[pt]), model.decision_function(Xu[ut]), pt, ut, pf, uf, tuple(notes)
    )


def _z_sum(
    X: NDArray[np.float64], directions: NDArray[np.float64] | None, config: ScorerConfig, name: str, where: str
) -> tuple[Callable[[NDArray[np.float64]], NDArray[np.float64]], tuple[str, ...]]:
    """The normalized sum's score: each indicator z-scored with the mean and standard
    deviation (floored at ``config.std_floor``) of the clips ``X``, aligned to its
    direction (all "higher = member" when none are given, with a note) and summed; and the
    notes, naming ``name`` and saying ``where`` an indicator was constant."""
    notes: list[str] = []
    signs = np.ones(X.shape[1]) if directions is None else directions
    if directions is None:
        notes.append(f"{name}: no directions given; assuming higher = member for every indicator")
    mu = X.mean(axis=0)
    sd = X.std(axis=0, ddof=1)
    flat = np.flatnonzero(sd < config.std_floor)
    if flat.size:
        notes.append(f"{name}: indicator(s) {flat.tolist()} constant {where}")
    sd = np.maximum(sd, config.std_floor)

    def score(A: NDArray[np.float64]) -> NDArray[np.float64]:
        z: NDArray[np.float64] = (((A - mu) / sd) * signs).sum(axis=1)
        return z

    return score, tuple(notes)


@register_scorer(
    "normalized_sum",
    description="Direction-aligned indicators standardized by a control half of U and summed; "
    "all of P tested against the other half of U (the paper's scorer for token models).",
)
def normalized_sum(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    seed: int,
    config: ScorerConfig,
) -> ScoredSplit:
    """Sum of z-scored, direction-aligned indicators; z-scores from control non-members only.

    The control half of U sets each indicator's mean and standard deviation (floored at
    ``config.std_floor``) and is never tested, so the tested U clips stay exchangeable with
    suspects drawn from the same distribution. Nothing is fitted on P, so every suspect is
    tested.
    """
    rng = np.random.default_rng(seed)
    # Registered without groups: nothing is fitted on labels, and a control half drawn by
    # whole groups would leave the tested non-members with only half of the speakers
    # while every suspect is tested, which makes the clip-level Welch test anti-conservative
    # when speakers are shared (measured: 8.5% rejections at alpha = 0.05, 0.5% ungrouped).
    uc, ut = _split(U.shape[0], config.fit_fraction, rng, "non-members")
    score, notes = _z_sum(U[uc], directions, config, "normalized_sum", "on the control non-members")
    pt = np.arange(P.shape[0], dtype=np.int64)
    return _single_group("normalized_sum", score(P), score(U[ut]), pt, ut, np.zeros(0, dtype=np.int64), uc, notes)


@register_scorer(
    "pooled_sum",
    description="Direction-aligned indicators standardized on every clip (suspects and non-members pooled, "
    "labels unused) and summed; every suspect tested against every non-member.",
    splits=False,
)
def pooled_sum(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    seed: int,
    config: ScorerConfig,
) -> ScoredSplit:
    """The normalized sum with its z-scores taken over all clips, suspects and non-members
    pooled, instead of over a control half of the non-members.

    The standardization reads no label: it is the same function of the pooled clips
    whichever of them are suspects, so under H0 (suspects drawn from the non-members'
    distribution) the suspect and non-member scores stay exchangeable and no clip has to be
    set aside. Every suspect is tested against every non-member, and the result does not
    depend on a seeded split (``seed`` is unused). It differs from the audio-generative DI
    paper's scorer (``normalized_sum``), which standardizes on held-out non-members.
    """
    del seed  # nothing is drawn
    score, notes = _z_sum(np.vstack([P, U]), directions, config, "pooled_sum", "over the clips")
    none = np.zeros(0, dtype=np.int64)
    return _single_group(
        "pooled_sum", score(P), score(U), np.arange(P.shape[0], dtype=np.int64),
        np.arange(U.shape[0], dtype=np.int64), none, none, notes,
    )


CALIBRATED_LOSS_KEYS = ("resid:loss_mean", "resid:ppl")
MEAN_LOSS_KEYS = CALIBRATED_LOSS_KEYS + ("loss_mean", "ppl")


def mean_loss_column(keys: tuple[str, ...], *, calibrated_only: bool = False) -> int | None:
    """The column of the clip's mean loss, calibrated against the reference(s) when the
    run has them (``resid:loss_mean`` for denoising evidence, ``resid:ppl`` for token
    evidence; else ``loss_mean``, ``ppl``), or None."""
    for key in CALIBRATED_LOSS_KEYS if calibrated_only else MEAN_LOSS_KEYS:
        if key in keys:
            return keys.index(key)
    return None


@register_scorer(
    "mean_loss",
    description="The clip's mean loss, calibrated against the reference(s) when the run has them "
    "(resid:loss_mean, resid:ppl), fixed in advance: nothing is fitted, so every suspect is tested "
    "against every non-member.",
    splits=False,
)
def mean_loss(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    seed: int,
    config: ScorerConfig,
) -> ScoredSplit:
    """One indicator chosen before any clip is read: the clip's mean loss, less the
    reference's when the run was calibrated against one (lower = member, so the score is
    its negative).

    With a reference, the loss a clip's difficulty explains is removed and what is left is
    the memorization the reference-calibrated loss attack reads; without one it is the
    plain loss attack. No weight is learnt, so no clip is spent on fitting: every suspect
    is tested against every non-member (the flags and the share bound then rest on all of
    them, :mod:`core.di.which`).
    """
    col = mean_loss_column(tuple(config.keys))
    if col is None:
        raise ValueError(
            f"mean_loss needs a mean-loss indicator ({', '.join(MEAN_LOSS_KEYS)}); these indicators are "
            f"{list(config.keys) or 'unnamed'}"
        )
    if P.shape[1] != len(config.keys) or U.shape[1] != len(config.keys):
        raise ValueError(f"mean_loss: {len(config.keys)} keys for {P.shape[1]} indicator columns")
    sign = -1.0 if directions is None else float(directions[col])  # lower loss = member
    pt, ut = np.arange(P.shape[0], dtype=np.int64), np.arange(U.shape[0], dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    return _single_group("mean_loss", sign * P[:, col], sign * U[:, col], pt, ut, none, none)


@register_scorer(
    "cross_fit",
    description="Two-fold cross-fitted linear scorer: every clip scored by the model fitted "
    "on the other half; folds combined by a dependence-robust Welch statistic.",
    uses_groups=True,
)
def cross_fit(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    seed: int,
    config: ScorerConfig,
    groups: Groups = None,
) -> ScoredSplit:
    """Fit on half A, score half B; fit on half B, score half A: every clip is tested.

    Each fold's scores are standardized by the mean and standard deviation of that fold's
    tested scores, P and U pooled. The pooled statistics ignore the labels, so under H0
    the labels inside a fold remain a uniformly random assignment given them.

    Why the folds are not simply pooled into one Welch test: under H0 both models fit the
    chance mean difference of their own half, so fold B's difference is about
    ``<Delta_A, Delta_B>/|Delta_A|`` and fold A's about ``<Delta_B, Delta_A>/|Delta_B|``:
    the two have the same sign and are nearly perfectly correlated with several
    indicators, which doubles the variance of the pooled difference and roughly doubles the
    false-positive rate (0.12 instead of 0.05 with 10 indicators). The test therefore uses
    ``t = (d_A + d_B) / (se_A + se_B)`` (:func:`core.di.welch.combine_groups`), whose
    level holds for any correlation because ``sd(d_A + d_B) <= sd(d_A) + sd(d_B)``; it is
    exact when the folds are perfectly correlated (H0 with many indicators) and
    conservative otherwise (a single indicator, or a strong true signal).

    Power: with independent folds under H1 the robust denominator costs a factor sqrt(2),
    which is what testing twice as many clips gains, so for a given number of suspects
    ``cross_fit`` is about as powerful as ``control_split``; it tests every clip, and its
    p-value depends less on the luck of one fit/test split.
    """
    rng = np.random.default_rng(seed)
    if P.shape[0] < 2 * MIN_PER_SIDE or U.shape[0] < 2 * MIN_PER_SIDE:
        raise ValueError(f"cross_fit needs at least {2 * MIN_PER_SIDE} suspects and non-members")
    masks = None if groups is None else _group_fit_masks(groups, 0.5, rng)
    notes: tuple[str, ...] = ()
    if masks is not None:
        ph, uh = (list(_mask_rows(m)) for m in masks)
    else:
        if groups is not None:
            notes = ("cross_fit: too few groups to keep each group in one fold; clips were split ungrouped",)
        ph = [np.sort(h) for h in np.array_split(rng.permutation(P.shape[0]), 2)]
        uh = [np.sort(h) for h in np.array_split(rng.permutation(U.shape[0]), 2)]
    Xp, Xu = _align(P, directions), _align(U, directions)
    sp, su, gp, gu = [], [], [], []
    for g in (0, 1):
        model = _fit_linear(Xp[ph[1 - g]], Xu[uh[1 - g]], config)
        a, b = model.decision_function(Xp[ph[g]]), model.decision_function(Xu[uh[g]])
        pooled = np.concatenate([a, b])
        m, s = pooled.mean(), max(pooled.std(ddof=1), config.std_floor)
        sp.append((a - m) / s)
        su.append((b - m) / s)
        gp.append(np.full(a.size, g, dtype=np.int64))
        gu.append(np.full(b.size, g, dtype=np.int64))
    return ScoredSplit(
        scorer="cross_fit",
        p_scores=np.concatenate(sp),
        u_scores=np.concatenate(su),
        p_index=np.concatenate(ph),
        u_index=np.concatenate(uh),
        p_group=np.concatenate(gp),
        u_group=np.concatenate(gu),
        fit_p_index=(ph[1], ph[0]),
        fit_u_index=(uh[1], uh[0]),
        notes=notes,
    )


def scorer_reads(scorer: str, keys: list[str] | tuple[str, ...]) -> str:
    """What the scorer read, in words: ``mean_loss`` its one column, the others every indicator."""
    if scorer == "mean_loss" and (col := mean_loss_column(tuple(keys))) is not None:
        return f"the indicator {keys[col]}"
    return f"{len(keys)} indicators"


def split_grouping(scorer: str, grouping: str | None) -> str:
    """How the scorer's fit/test split treated groups, in words (page and report).

    A run may still note that too few groups forced a clip-by-clip split (its warnings).
    """
    if scorer in scorer_names() and not get_scorer(scorer).splits:  # a stored run may name a scorer no longer registered
        return "nothing fitted: every suspect and every non-member tested"
    if not grouping or grouping == "none":
        return "fit/test split clip by clip (no speaker or source known)"
    if get_scorer(scorer).uses_groups:
        return f"fit/test split by whole {grouping} groups (no {grouping} on both sides)"
    return f"clip by clip: {scorer} fits nothing on labels, so {grouping} groups need no split"


def resolve_auto(n_features: int, directions: NDArray[np.float64] | None, config: ScorerConfig) -> str:
    """The scorer ``auto`` stands for.

    By evidence kind, as the audio-generative DI paper does: token targets (audio-language
    and autoregressive models, whose indicators' member direction is known) get
    ``normalized_sum``, and so do output-only indicators (error rates, similarities: their
    direction is known too); diffusion targets get ``control_split`` (learned weights over
    per-timestep losses whose useful combination is not known in advance), except when
    the run is calibrated against a reference: then the calibrated mean loss is the
    statistic known in advance, and ``mean_loss`` tests it on every clip where
    ``control_split`` would spend half of them learning weights (measured on the zoo's
    diffusion targets: docs/di.md). Measured on the
    reference targets, the normalized sum also needs the fewest suspects for the weak
    token targets (README, "What the built-in demo shows").

    When the evidence kind is unknown, ``normalized_sum`` with directions and at most
    ``config.auto_max_features`` indicators, else ``control_split``.
    """
    if config.evidence in ("tokens", "outputs") and directions is not None:
        return "normalized_sum"
    if config.evidence == "diffusion":
        return "mean_loss" if mean_loss_column(tuple(config.keys), calibrated_only=True) is not None else "control_split"
    if directions is not None and n_features <= config.auto_max_features:
        return "normalized_sum"
    return "control_split"


@register_scorer("auto", description="normalized_sum for token targets (audio-language, autoregressive), control_split for diffusion targets (mean_loss when calibrated against a reference).", uses_groups=True)
def auto(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    seed: int,
    config: ScorerConfig,
    groups: Groups = None,
) -> ScoredSplit:
    """Delegate to the scorer chosen by :func:`resolve_auto`; the result names that scorer."""
    name = resolve_auto(P.shape[1], directions, config)
    return get_scorer(name).score(P, U, directions=directions, seed=seed, config=config, groups=groups)
