"""Blind-baseline diagnostics: can members and non-members be told apart without the model?

Phase 1 of the LALM membership-inference audit (multi-modal blind baseline): a linear
classifier on model-free features (metadata, transcript TF-IDF, acoustics), evaluated by
stratified 10-fold cross-validation. A high blind AUC means the member/non-member split
carries a distribution shift, and MIA scores that correlate with the blind score are
suspect. Every preprocessing step (imputation, scaling, TF-IDF vocabulary and IDF) is a
Pipeline step, so it is fitted on the training folds only.

Label convention: 1 = member, 0 = non-member; a higher blind score means "looks like a
member".
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core import stats
from core.blind.describe import giveaway_sentence
from core.config import DEFAULT_N_BOOT, DEFAULT_N_SPLITS, Config

__all__ = [
    "ALL",
    "BlindConfig",
    "BlindResult",
    "blind_mia_correlation",
    "cross_dataset_auc",
    "numeric_pipeline",
    "run_blind",
    "text_pipeline",
]

ALL = "all"
Table = pd.DataFrame | pd.Series


@dataclass(frozen=True)
class BlindConfig(Config):
    """Settings of :func:`run_blind` (recorded with every result)."""

    n_splits: int = DEFAULT_N_SPLITS
    seed: int = 0
    n_boot: int = DEFAULT_N_BOOT
    C: float = 1.0
    top_k: int = 10
    ngram_range: tuple[int, int] = (1, 2)


class MedianImputer(TransformerMixin, BaseEstimator):
    """Missing entries (NaN) -> the column's median over the training clips; a column
    without any value -> 0.

    What ``SimpleImputer(strategy="median", keep_empty_features=True)`` computes, to the
    bit (the mean of the two middle values for an even count), at a fraction of the cost
    on the training folds that the cross-validation and its permutation refits preprocess:
    ``np.median`` partitions where the masked-array median sorts, and the medians are only
    computed when first needed (a transform that meets a missing entry), which for
    complete tables is never.
    """

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> MedianImputer:
        self.train_ = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = self.train_.shape[1]
        self.__dict__.pop("statistics_", None)
        return self

    @functools.cached_property
    def statistics_(self) -> NDArray[np.float64]:
        X = self.train_
        if not np.isnan(X).any():
            return np.median(X, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            median = np.nanmedian(X, axis=0)
        return np.where(np.isnan(median), 0.0, median)

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        X = np.array(X, dtype=np.float64, copy=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        rows, cols = np.nonzero(np.isnan(X))
        if rows.size:
            X[rows, cols] = self.statistics_[cols]
        return X

    def fold_apply(self, train: NDArray[np.float64], test: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Fitted on a fold's ``train`` rows, applied to them and to its ``test`` rows (the
        cross-validation's numpy path, :func:`core.stats.cv._fold_steps`)."""
        if not (np.isnan(train).any() or np.isnan(test).any()):
            return train, test
        fitted = MedianImputer().fit(train)
        return fitted.transform(train), fitted.transform(test)


def _numeric_steps() -> list[tuple[str, object]]:
    return [
        ("impute", MedianImputer()),  # it reads its input as floats
        ("scale", StandardScaler()),
    ]


def _lr(C: float) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=5000)


def numeric_pipeline(*, C: float = 1.0) -> Pipeline:
    """Median imputation, standardization, L2 logistic regression (all fitted per fold)."""
    return Pipeline([*_numeric_steps(), ("lr", _lr(C))])


def text_pipeline(*, C: float = 1.0, ngram_range: tuple[int, int] = (1, 2)) -> Pipeline:
    """TF-IDF of unigrams and bigrams then logistic regression; the vocabulary and IDF
    weights are fitted on the training fold only."""
    return Pipeline([("tfidf", TfidfVectorizer(ngram_range=ngram_range)), ("lr", _lr(C))])


@dataclass(frozen=True)
class _Design:
    """Row-indexable design matrix and the estimator that consumes it."""

    X: NDArray
    estimator: Pipeline
    numeric: list[tuple[str, str]]  # (group, column) for numeric columns, in order
    text_group: str | None


def _design(tables: Mapping[str, Table], cfg: BlindConfig) -> _Design:
    numeric: list[tuple[str, str]] = []
    blocks: list[NDArray] = []
    text_group = None
    text: NDArray | None = None
    for g, t in tables.items():
        if isinstance(t, pd.Series):
            if text_group is not None:
                raise ValueError(f"only one text group is supported, got {text_group!r} and {g!r}")
            text_group = g
            text = np.asarray(["" if v is None else str(v) for v in t.tolist()], dtype=object)
        else:
            blocks.append(t.to_numpy(dtype=np.float64, na_value=np.nan))
            numeric += [(g, str(c)) for c in t.columns]
    if numeric and text is None:
        return _Design(np.concatenate(blocks, 1), numeric_pipeline(C=cfg.C), numeric, None)
    if text is not None and not numeric:
        return _Design(text, text_pipeline(C=cfg.C, ngram_range=cfg.ngram_range), [], text_group)
    if text is None:
        raise ValueError("no feature tables given")
    d = len(numeric)
    X = np.empty((len(text), d + 1), dtype=object)
    X[:, :d] = np.concatenate(blocks, 1)
    X[:, d] = text
    ct = ColumnTransformer(
        [
            ("num", Pipeline(_numeric_steps()), list(range(d))),
            ("text", TfidfVectorizer(ngram_range=cfg.ngram_range), d),
        ]
    )
    return _Design(X, Pipeline([("features", ct), ("lr", _lr(cfg.C))]), numeric, text_group)


def _check_tables(tables: Mapping[str, Table], n: int) -> None:
    if not tables:
        raise ValueError("no feature tables given")
    for g, t in tables.items():
        if not isinstance(t, (pd.DataFrame, pd.Series)):
            raise TypeError(f"table {g!r} must be a DataFrame or a text Series, got {type(t).__name__}")
        if len(t) != n:
            raise ValueError(f"table {g!r} has {len(t)} rows for {n} labels")
        if g == ALL:
            raise ValueError(f"{ALL!r} is reserved for the combined model")


def _cv(design: _Design, y: NDArray[np.int64], cfg: BlindConfig) -> NDArray[np.float64]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return stats.cv_scores(
            design.X, y, estimator=design.estimator, n_splits=cfg.n_splits, seed=cfg.seed
        )


def _standardized_coefficients(
    design: _Design, y: NDArray[np.int64]
) -> tuple[list[tuple[str, str, float, NDArray]], Pipeline]:
    """Fit on all clips; (group, feature, standardized coef, column values) per input column.

    Numeric columns are standardized inside the pipeline, so their coefficients are
    already per standard deviation; a TF-IDF term's coefficient is multiplied by the
    term column's standard deviation to put it on the same scale.
    """
    from sklearn.base import clone

    model = clone(design.estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(design.X, y)
    coef = model.named_steps["lr"].coef_.ravel()
    out: list[tuple[str, str, float, NDArray]] = []
    d = len(design.numeric)
    if design.text_group is not None:
        if d:
            tf = model.named_steps["features"].named_transformers_["text"]
            docs = design.X[:, d]
        else:
            tf = model.named_steps["tfidf"]
            docs = design.X
    for j, (g, c) in enumerate(design.numeric):
        col = np.asarray(design.X[:, j], dtype=np.float64) if design.X.ndim == 2 else None
        out.append((g, c, float(coef[j]), col))
    if design.text_group is not None:
        M = tf.transform(docs).tocsc()
        mean = np.asarray(M.mean(axis=0)).ravel()
        sq = np.asarray(M.multiply(M).mean(axis=0)).ravel()
        sd = np.sqrt(np.maximum(sq - mean**2, 0.0))
        terms = tf.get_feature_names_out()
        tcoef = coef[d:] * sd
        # Only the strongest terms are described, so the dense columns stay small.
        for k in np.argsort(-np.abs(tcoef))[:50]:
            out.append((design.text_group, str(terms[k]), float(tcoef[k]), M[:, k].toarray().ravel()))
    return out, model


def _top(
    entries: list[tuple[str, str, float, NDArray]], y: NDArray[np.int64], k: int, text_group: str | None
) -> list[dict]:
    ranked = sorted(entries, key=lambda e: -abs(e[2]))[:k]
    out = []
    for g, c, w, col in ranked:
        out.append(
            {
                "feature": c,
                "group": g,
                "coef": w,
                "sentence": giveaway_sentence(c, col[y == 0], col[y == 1], text_term=(g == text_group)),
            }
        )
    return out


@dataclass(frozen=True)
class BlindResult:
    """Blind-baseline result; ``groups`` lists the per-group models and ``all``.

    Attributes
    ----------
    auc, auc_ci : mapping group -> AUC and its 95% interval (refits included, see
        :mod:`core.stats.cv`).
    auc_p_value : mapping group -> permutation p-value of "AUC above chance" (None when
        permutations were turned off).
    scores : mapping group -> out-of-fold blind score per clip ``[n_clips]``.
    roc : mapping group -> (fpr, tpr).
    top_features : giveaways of the combined model, ``{feature, group, coef, sentence}``.
    top_by_group : the same, per group model.
    """

    groups: tuple[str, ...]
    labels: NDArray[np.int64]
    auc: dict[str, float]
    auc_ci: dict[str, tuple[float, float]]
    scores: dict[str, NDArray[np.float64]]
    roc: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]
    top_features: list[dict]
    top_by_group: dict[str, list[dict]]
    warnings: list[str]
    config: BlindConfig = field(default_factory=BlindConfig)
    auc_p_value: dict[str, float | None] = field(default_factory=dict)
    inference: dict[str, dict] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def n_nonmembers(self) -> int:
        return int((self.labels == 0).sum())

    @property
    def blind_score(self) -> NDArray[np.float64]:
        """Out-of-fold score of the combined model (the propensity used for matching)."""
        return self.scores[ALL]

    def verdict(self, group: str = ALL):
        """The blind verdict of ``group`` (:func:`core.blind.verdict.blind_verdict`)."""
        from core.blind.verdict import blind_verdict

        return blind_verdict(self.auc[group], self.auc_ci[group], self.auc_p_value.get(group))

    def shift_detected(self, group: str = ALL) -> bool:
        """True when the verdict of ``group`` is a shift (or a confound)."""
        return self.verdict(group).level != "fair"

    def to_dict(self) -> dict:
        """JSON-safe summary (plain floats, ints, strings and lists)."""
        return {
            "groups": list(self.groups),
            "auc": {g: float(v) for g, v in self.auc.items()},
            "auc_ci": {g: [float(v[0]), float(v[1])] for g, v in self.auc_ci.items()},
            "auc_p_value": {g: (None if v is None else float(v)) for g, v in self.auc_p_value.items()},
            "inference": {g: dict(v) for g, v in self.inference.items()},
            "verdict": {g: self.verdict(g).to_dict() for g in self.auc},
            "shift_detected": {g: self.shift_detected(g) for g in self.auc},
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "roc": {g: {"fpr": f.tolist(), "tpr": t.tolist()} for g, (f, t) in self.roc.items()},
            "scores": [float(v) for v in self.scores[ALL]],
            "scores_by_group": {g: [float(v) for v in s] for g, s in self.scores.items()},
            "labels": [int(v) for v in self.labels],
            "top_features": [dict(t) for t in self.top_features],
            "top_by_group": {g: [dict(t) for t in v] for g, v in self.top_by_group.items()},
            "warnings": list(self.warnings),
            "config": self.config.to_dict(),
        }


def run_blind(
    tables: Mapping[str, Table],
    labels: ArrayLike,
    *,
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    C: float = 1.0,
    top_k: int = 10,
    groups: ArrayLike | None = None,
    grouping: str = "group",
    permutations: stats.PermutationConfig = stats.PermutationConfig(),
    progress: Callable[[int, int, str], None] | None = None,
) -> BlindResult:
    """Blind AUC of each feature group and of all groups together.

    ``progress(done, planned, what)`` reports each group's label permutations as they are
    refitted (``what`` names the group).

    Parameters
    ----------
    tables : mapping name -> pandas.DataFrame [n_clips, F] (numeric) or pandas.Series
        [n_clips] of strings (text, TF-IDF fitted inside each fold), rows in clip order.
    labels : array-like [n_clips]
        1 = member, 0 = non-member.
    n_splits : folds of stratified CV (reduced to the minority class size if needed).
    seed : fold shuffling and bootstrap seed.
    n_boot : bootstrap resamples for the 95% AUC interval.
    C : inverse L2 strength of the logistic regressions.
    top_k : giveaway features reported.
    groups : ``[n_clips]`` group of each clip (speaker, source), optional: stratified
        group folds keep each group on one side; ``grouping`` names it.
    permutations : label permutations of the whole CV procedure (p-values, intervals).

    Returns
    -------
    BlindResult
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    cfg = BlindConfig(n_splits=n_splits, seed=seed, n_boot=n_boot, C=C, top_k=top_k)
    _check_tables(tables, y.size)
    notes: list[str] = []
    w = stats.small_sample_warning(y)
    if w:
        notes.append(w)
    k = stats.n_folds_for(y, n_splits)
    if k < n_splits:
        notes.append(f"only {k} folds possible (smallest class has {k} clips)")
    folds = stats.make_folds(y, groups=groups, grouping=grouping, n_splits=n_splits, seed=seed)
    notes.extend(folds.notes)
    pvals: dict[str, float | None] = {}
    inference: dict[str, dict] = {}

    auc: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    scores: dict[str, NDArray[np.float64]] = {}
    roc: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
    top_by_group: dict[str, list[dict]] = {}
    for name, sub in [*((g, {g: t}) for g, t in tables.items()), (ALL, dict(tables))]:
        design = _design(sub, cfg)
        report = None if progress is None else (lambda d, t, _n=name: progress(d, t, f"statistics: {_n} group, label permutations"))
        cv = stats.cv_auc(design.X, y, estimator=design.estimator, folds=folds, permutations=permutations, n_boot=n_boot, seed=seed,
                          progress=report)
        s = cv.scores
        scores[name] = s
        auc[name] = cv.auc
        ci[name] = cv.ci
        pvals[name] = cv.p_value
        inference[name] = cv.to_dict()
        roc[name] = stats.roc(y, s)
        entries, _ = _standardized_coefficients(design, y)
        top = _top(entries, y, top_k, design.text_group)
        if name == ALL:
            top_all = top
        else:
            top_by_group[name] = top
    for g, t in tables.items():
        if isinstance(t, pd.DataFrame):
            const = [str(c) for c in t.columns if t[c].nunique(dropna=True) <= 1]
            if len(const) == t.shape[1]:
                notes.append(f"group {g!r}: every feature is constant; its AUC is meaningless")
    return BlindResult(
        groups=(*tables.keys(), ALL), labels=y, auc=auc, auc_ci=ci, scores=scores, roc=roc,
        top_features=top_all, top_by_group=top_by_group, warnings=notes, config=cfg,
        auc_p_value=pvals, inference=inference,
    )


def _union(tables: Sequence[Table]) -> Table:
    if all(isinstance(t, pd.Series) for t in tables):
        return pd.concat([t.reset_index(drop=True) for t in tables], ignore_index=True)
    if any(isinstance(t, pd.Series) for t in tables):
        raise ValueError("a group is text in one dataset and numeric in another")
    cols: list[str] = []
    for t in tables:
        cols += [c for c in t.columns if c not in cols]
    parts = []
    for t in tables:
        t = t.reset_index(drop=True)
        missing = [c for c in cols if c not in t.columns]
        # A codec one-hot column absent from a dataset means "none of its clips".
        fill = {c: (0.0 if "=" in str(c) else np.nan) for c in missing}
        parts.append(t.assign(**fill)[cols] if missing else t[cols])
    return pd.concat(parts, ignore_index=True)


def _as_groups(table: Table | Mapping[str, Table]) -> dict[str, Table]:
    if isinstance(table, (pd.DataFrame, pd.Series)):
        return {"features": table}
    return dict(table)


def _subset(table: Table, mask: NDArray[np.bool_]) -> Table:
    return table.iloc[np.flatnonzero(mask)]


def _pair_tables(a: dict[str, Table], b: dict[str, Table]) -> tuple[dict[str, Table], NDArray[np.int64]]:
    """The clips of ``a`` (label 1) and of ``b`` (label 0) in one table per group."""
    if set(a) != set(b):
        raise ValueError(f"datasets have different feature groups: {sorted(a)} vs {sorted(b)}")
    na, nb = len(next(iter(a.values()))), len(next(iter(b.values())))
    return {g: _union([a[g], b[g]]) for g in a}, np.r_[np.ones(na, np.int64), np.zeros(nb, np.int64)]


def _pair_auc(a: dict[str, Table], b: dict[str, Table], cfg: BlindConfig) -> float:
    merged, y = _pair_tables(a, b)
    return stats.auc(y, _cv(_design(merged, cfg), y, cfg))


def pair_inference(
    a: Table | Mapping[str, Table],
    b: Table | Mapping[str, Table],
    *,
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
    C: float = 1.0,
    permutations: stats.PermutationConfig = stats.PermutationConfig(),
    n_boot: int = DEFAULT_N_BOOT,
) -> stats.CVAUC:
    """Cross-validated blind AUC of telling clips of ``a`` from clips of ``b``, with the
    permutation p-value and the refit-including interval of :func:`core.stats.cv_auc`
    (labels permuted between the two sets; stratified folds).

    A cell of the cross-dataset matrix; ``a`` and ``b`` are feature tables, or mappings
    group -> table with the same groups.
    """
    merged, y = _pair_tables(_as_groups(a), _as_groups(b))
    cfg = BlindConfig(n_splits=n_splits, seed=seed, C=C)
    return own_inference(merged, y, cfg=cfg, permutations=permutations, n_boot=n_boot)


def own_inference(
    tables: Table | Mapping[str, Table],
    y: ArrayLike,
    *,
    cfg: BlindConfig = BlindConfig(),
    permutations: stats.PermutationConfig = stats.PermutationConfig(),
    n_boot: int = DEFAULT_N_BOOT,
) -> stats.CVAUC:
    """Cross-validated blind AUC of the labels ``y`` from all feature groups of ``tables``
    (ungrouped stratified folds), with its permutation p-value and interval."""
    y = np.asarray(y).astype(np.int64).ravel()
    design = _design(_as_groups(tables), cfg)
    folds = stats.make_folds(y, n_splits=cfg.n_splits, seed=cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return stats.cv_auc(design.X, y, estimator=design.estimator, folds=folds, permutations=permutations, n_boot=n_boot, seed=cfg.seed)


def cross_dataset_auc(
    groups_by_dataset: Mapping[str, Table | Mapping[str, Table]],
    labels_by_dataset: Mapping[str, ArrayLike] | None = None,
    *,
    status: str = "member",
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
    C: float = 1.0,
) -> pd.DataFrame:
    """Blind AUC matrix between datasets (the LALM paper's Figure 2).

    Off-diagonal cell (A, B) is the cross-validated blind AUC of separating a subset of
    A from the same-status subset of B (e.g. A's members vs B's members): membership is
    identical on both sides, so anything above 0.5 is domain shift. With
    ``labels_by_dataset``, the diagonal is each dataset's own member-vs-non-member
    blind AUC; otherwise it is NaN and each table is taken whole.

    Parameters
    ----------
    groups_by_dataset : mapping dataset -> feature table, or mapping group -> table
        (same groups in every dataset; numeric columns are aligned by name).
    labels_by_dataset : mapping dataset -> labels [n_clips], optional.
    status : "member" or "nonmember" for both triangles, or "both" (members above the
        diagonal, non-members below).

    Returns
    -------
    pandas.DataFrame [shape=(n_datasets, n_datasets)]
    """
    if status not in ("member", "nonmember", "both"):
        raise ValueError("status must be 'member', 'nonmember' or 'both'")
    cfg = BlindConfig(n_splits=n_splits, seed=seed, C=C)
    names = list(groups_by_dataset)
    data = {d: _as_groups(groups_by_dataset[d]) for d in names}
    out = pd.DataFrame(np.nan, index=names, columns=names, dtype=np.float64)

    def part(d: str, member: bool) -> dict[str, Table]:
        if labels_by_dataset is None:
            return data[d]
        y = np.asarray(labels_by_dataset[d]).astype(np.int64)
        return {g: _subset(t, y == int(member)) for g, t in data[d].items()}

    for i, a in enumerate(names):
        if labels_by_dataset is not None:
            ya = np.asarray(labels_by_dataset[a]).astype(np.int64)
            out.loc[a, a] = stats.auc(ya, _cv(_design(data[a], cfg), ya, cfg))
        for b in names[i + 1 :]:
            if status in ("member", "nonmember"):
                m = status == "member"
                v = _pair_auc(part(a, m), part(b, m), cfg)
                out.loc[a, b] = out.loc[b, a] = v
            else:
                out.loc[a, b] = _pair_auc(part(a, True), part(b, True), cfg)
                out.loc[b, a] = _pair_auc(part(b, False), part(a, False), cfg)
    return out


def blind_mia_correlation(blind: ArrayLike, mia: ArrayLike) -> dict[str, float]:
    """Pearson and Spearman correlation of blind scores with MIA scores (per clip).

    A high blind AUC together with a clearly positive correlation means the MIA signal
    is likely riding on the distribution shift rather than on memorization.

    Returns
    -------
    dict with ``pearson``, ``pearson_p``, ``spearman``, ``spearman_p`` and ``n``.
    """
    b = np.asarray(blind, dtype=np.float64).ravel()
    m = np.asarray(mia, dtype=np.float64).ravel()
    if b.shape != m.shape:
        raise ValueError(f"blind and MIA scores differ in length: {b.size} vs {m.size}")
    if b.size < 3:
        raise ValueError("correlation needs at least 3 clips")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(m))):
        raise ValueError("scores contain NaN or Inf")
    c = stats.correlation(b, m)
    return {k: (float("nan") if v is None else v) for k, v in c.items()}
