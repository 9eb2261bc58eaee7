"""The MIA aggregate's regularization, measured on stored runs: the out-of-fold AUC of the
logistic-regression aggregate (the headline's design: the calibrated indicators of a
calibrated run, all of an uncalibrated one; the run's folds) refitted with C from 0.01 to
3, and with C chosen inside each training fold by an inner 5-fold cross-validation, beside
the run's own aggregate (C = 1) and its held-out best single indicator.

No permutations: AUCs only, to see whether a stronger or a chosen regularization would move
an audit (it answers "does the aggregate overfit its many correlated indicators?").

usage: python -m bench.measure_aggregate_c --workspace DIR RUN_ID [RUN_ID ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def oof_auc(X: np.ndarray, y: np.ndarray, folds, choose) -> float:
    """Out-of-fold AUC of the aggregate with C from ``choose(X_train, y_train)``."""
    from core.mia.aggregate import mia_classifier

    s = np.zeros(y.size)
    for train, test in folds.splits():
        s[test] = mia_classifier(C=choose(X[train], y[train])).fit(X[train], y[train]).decision_function(X[test])
    return float(roc_auc_score(y, s))


def inner_c(X: np.ndarray, y: np.ndarray) -> float:
    """The C of :data:`GRID` with the largest inner 5-fold out-of-fold AUC on one training fold."""
    from core.mia.aggregate import mia_classifier

    inner = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    aucs = []
    for C in GRID:
        s = np.zeros(y.size)
        for tr, te in inner:
            s[te] = mia_classifier(C=C).fit(X[tr], y[tr]).decision_function(X[te])
        aucs.append(roc_auc_score(y, s))
    return GRID[int(np.argmax(aucs))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", required=True)
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    from core.mia.aggregate import aligned_matrix
    from core.mia.calibration import is_calibrated
    from core.runtime.store import Workspace
    from core.stats import make_folds

    ws = Workspace(Path(args.workspace))
    for run_id in args.runs:
        run = ws.load_run(run_id)
        table = ws.run_table(run, "indicators")
        y = ws.run_table(run, "clips")["label"].to_numpy().astype(int)
        cols = [c for c in table.columns if is_calibrated(str(c))] or list(table.columns)
        X = aligned_matrix(table[cols])
        folds = make_folds(y, n_splits=run["config"].get("n_splits", 10), seed=run["config"].get("seed", 0))
        row = {f"C={C:g}": round(oof_auc(X, y, folds, lambda a, b, C=C: C), 3) for C in GRID}
        row["C inner-CV"] = round(oof_auc(X, y, folds, inner_c), 3)
        held = run["result"].get("held_out_best") or {}
        print(json.dumps({"run": run_id, "target": run["target"], "references": run["config"].get("references") or [],
                          "indicators": len(cols), "aggregate (stored)": round(run["result"]["auc"], 3)} | row
                         | {"held_out_best": held.get("auc")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
