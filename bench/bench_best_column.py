"""Benchmark: the held-out best single indicator's refits (``core.stats.cv.BestSingleColumn``,
what ``run_mia`` reports as ``held_out_best``) against a loop written from its definition,
on an audit the size of the zoo's calibrated diffusion runs.

Synthetic audit: 200 clips x 46 correlated indicators (one shared factor, as a loss read
at several timesteps), a member shift on one; ten stratified folds; the observed labels
and ``--n-perm`` label permutations within folds. Prints JSON lines:

- ``best_column_vs_loop``: seconds of the loop (per label vector, per fold, scikit-learn's
  AUC of every indicator on the training clips, the largest picked, the held-out clips
  scored by their share of the training values below) / seconds of the batched refits
  (one matrix product per fold for every label vector), the same label vectors in one
  process, alternating (goal 20); ``same_scores`` says both gave the same held-out scores.
- ``best_column_share_of_mia``: seconds of the held-out best's ``cv_auc`` / seconds of the
  logistic-regression aggregate's ``cv_auc``, same audit, same permutations: what the
  second estimate adds to a run's statistics (goal <= 0.5).

Usage: python bench/bench_best_column.py [--n-perm 200] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.mia.aggregate import FiniteImputer, mia_classifier  # noqa: E402
from core.stats import PermutationConfig, cv_auc, make_folds  # noqa: E402
from core.stats.cv import BestSingleColumn, permuted_labels  # noqa: E402


def synthetic_audit(n: int = 200, d: int = 46, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(aligned indicators ``[n, d]``, labels ``[n]``): a shared factor (correlation about
    0.6), members shifted by 0.5 SD on indicator 7."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    X = 1.2 * rng.normal(size=(n, 1)) + rng.normal(size=(n, d))
    X[:, 7] += 0.5 * y
    return X, y


def loop_scores(X: np.ndarray, Y: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """The held-out scores of every label row, from the definition (one fit at a time)."""
    out = np.empty(Y.shape)
    for b, y in enumerate(Y):
        for f in range(int(fold_of.max()) + 1):
            train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            j = int(np.argmax([roc_auc_score(y[train], X[train, k]) for k in range(X.shape[1])]))
            col = np.sort(X[train, j])
            out[b, test] = (np.searchsorted(col, X[test, j], "left") + np.searchsorted(col, X[test, j], "right")) / (2.0 * train.size)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-perm", type=int, default=200)
    ap.add_argument("--loop-perm", type=int, default=40, help="label vectors the loop and the batch both score")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works (make test)")
    args = ap.parse_args()
    if args.smoke:
        args.n_perm, args.loop_perm, args.reps = 20, 4, 1
    X, y = synthetic_audit()
    folds = make_folds(y, n_splits=10, seed=0)
    Y = np.vstack([y[None, :], permuted_labels(y, folds.fold_of, args.loop_perm, np.random.default_rng(1))])
    rule = BestSingleColumn((FiniteImputer().fold_apply,))
    t_loop, t_batch, same = [], [], True
    for _ in range(args.reps):
        t0 = time.perf_counter()
        slow = loop_scores(X, Y, folds.fold_of)
        t_loop.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fast = rule.designs(X, folds).scores(Y)
        t_batch.append(time.perf_counter() - t0)
        same = same and bool(np.allclose(slow, fast, atol=1e-12))
    loop_s, batch_s = float(np.median(t_loop)), float(np.median(t_batch))
    print(json.dumps({"name": "best_column_vs_loop", "ratio": round(loop_s / batch_s, 1), "goal": 20,
                      "detail": {"loop_s": round(loop_s, 4), "batched_s": round(batch_s, 5), "label_vectors": int(Y.shape[0]),
                                 "clips": int(y.size), "indicators": int(X.shape[1]), "same_scores": same}}), flush=True)

    perms = PermutationConfig(n_perm=args.n_perm, min_perm=args.n_perm)  # no early stop: both run every permutation
    t_best, t_lr = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        best = cv_auc(X, y, estimator=rule, folds=folds, permutations=perms, n_boot=200, seed=0)
        t_best.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        agg = cv_auc(X, y, estimator=mia_classifier(), folds=folds, permutations=perms, n_boot=200, seed=0)
        t_lr.append(time.perf_counter() - t0)
    best_s, lr_s = float(np.median(t_best)), float(np.median(t_lr))
    print(json.dumps({"name": "best_column_share_of_mia", "ratio": round(best_s / lr_s, 3), "goal": 0.5, "goal_op": "<=",
                      "detail": {"held_out_best_s": round(best_s, 4), "logreg_aggregate_s": round(lr_s, 4), "permutations": args.n_perm,
                                 "held_out_best_auc": round(best.auc, 4), "logreg_aggregate_auc": round(agg.auc, 4)}}), flush=True)


if __name__ == "__main__":
    main()
