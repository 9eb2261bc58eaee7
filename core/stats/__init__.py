"""Shared statistics for the blind baseline, MIA and DI stages (numpy, scipy, scikit-learn).

- :mod:`core.stats.basic`: AUC, its fixed-score bootstrap, the paired (DeLong) difference of two
  AUCs on the same clips, TPR at a fixed FPR, correlation.
- :mod:`core.stats.cv`: cross-validated AUCs an auditor can defend: grouped stratified
  folds, the whole CV procedure refitted under label permutations (batched), a
  permutation p-value and an interval that holds its level.
- :mod:`core.stats.logreg`: the batched logistic regression those refits use.
  Its unconstrained fits are in :mod:`core.stats.logreg_unconstrained`, what both kinds
  share in :mod:`core.stats.logreg_common`.
"""

from core.stats.basic import (
    MIN_PER_CLASS_FOR_HONEST_AUC,
    PairedAUC,
    TprAtFpr,
    auc,
    auc_ci,
    format_p,
    p_clause,
    bootstrap_auc,
    correlation,
    cv_scores,
    default_classifier,
    n_folds_for,
    normal_test,
    paired_auc_difference,
    roc,
    small_sample_warning,
    tpr_at_fpr,
)
from core.stats.cv import CVAUC, Folds, PermutationConfig, cv_auc, make_folds, row_aucs
from core.stats.logreg import fit_logreg_batched

__all__ = [
    "CVAUC", "Folds", "MIN_PER_CLASS_FOR_HONEST_AUC", "PermutationConfig", "TprAtFpr", "auc", "auc_ci",
    "bootstrap_auc", "correlation", "cv_auc", "cv_scores", "default_classifier", "fit_logreg_batched", "format_p", "p_clause",
    "make_folds", "n_folds_for", "normal_test", "PairedAUC", "paired_auc_difference", "roc", "row_aucs", "small_sample_warning", "tpr_at_fpr",
]
