"""Every phase of a long job reports progress: after the evidence, the statistics (label
permutations that refit every fold) report theirs, on the MIA, blind and disentanglement
runs alike, in words a user can read."""

from __future__ import annotations

import numpy as np
import pytest

from core.stats.cv import PermutationConfig, cv_auc, make_folds
from tests.conftest import demo_workspace

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_cv_auc_reports_its_permutations_as_they_are_refitted():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 4)), np.repeat([0, 1], 30)
    seen: list[tuple[int, int]] = []
    res = cv_auc(X, y, estimator=LogisticRegression(), folds=make_folds(y, n_splits=5), n_boot=20,
                 permutations=PermutationConfig(n_perm=120, chunk=40, min_perm=120), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 120), (40, 120), (80, 120), (120, 120)] and res.n_perm == 120


def test_runs_say_what_they_compute_after_the_evidence(tmp_path):
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.blind import BlindRunConfig, audit_blind
    from core.pipeline.disentangle import DisentangleConfig, audit_disentangle

    ws = demo_workspace(tmp_path, 4)
    seen: list[tuple[int, int, str]] = []
    fast = dict(n_boot=20, n_perm=20, n_splits=2)
    audit_mia(ws, "speech", "zoo:lalm-small", MIAConfig(**fast), progress=lambda d, t, m: seen.append((d, t, m)))
    stats = [s for s in seen if s[2].startswith("statistics:")]
    assert stats and stats[0][:2] == (0, 20) and stats[-1][:2] == (20, 20)
    assert stats[0][2] == "statistics: label permutations (each refits every fold)"
    assert seen.index(stats[0]) > max(i for i, s in enumerate(seen) if s[2].startswith("evidence"))  # after the evidence
    seen.clear()
    audit_blind(ws, "speech", BlindRunConfig(groups=("metadata",), **fast), progress=lambda d, t, m: seen.append((d, t, m)))
    assert any(m == "statistics: metadata group, label permutations" and d == t == 20 for d, t, m in seen)
    seen.clear()
    audit_disentangle(ws, "speech", "zoo:lalm-small", DisentangleConfig(conditions=("original", "noise"), max_realizations=2,
                                                                        mia=MIAConfig(**fast)),
                      progress=lambda d, t, m: seen.append((d, t, m)))
    msgs = {m for _, _, m in seen}
    assert "evidence: condition noise, realization 2 of 2 (pass 3 of 3: every clip once per condition and realization)" in msgs
    assert "statistics: condition noise, label permutations (each refits every fold)" in msgs
    assert max(d for d, t, m in seen if m.startswith("evidence")) == 3 * 8
