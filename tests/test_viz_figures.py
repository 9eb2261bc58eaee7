"""Figures tell the truth: a chance line that is TPR = FPR on the log axis, and member and
non-member histograms that count clips in the same bins."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.viz import dataset as vdataset
from core.viz import di as vdi
from core.viz import mia as vmia


def test_roc_chance_line_is_tpr_equals_fpr_on_the_log_axis() -> None:
    fig = vmia.roc_figure({"aggregate": {"fpr": [0, 0.5, 1], "tpr": [0, 0.6, 1]}}, {"aggregate": 0.55})
    chance = next(t for t in fig.data if t.name.startswith("chance"))
    x, y = np.asarray(chance.x), np.asarray(chance.y)
    assert x.size >= 50 and np.allclose(x, y)
    # evenly spread in log FPR, so the drawn line follows the diagonal between the points
    assert np.allclose(np.diff(np.log10(x)), np.diff(np.log10(x))[0])
    assert fig.layout.xaxis.type == "log"


def _same_bins(fig) -> None:
    hists = [t for t in fig.data if t.type == "histogram"]
    assert len(hists) == 2
    a, b = hists[0].xbins, hists[1].xbins
    assert a.size is not None and (a.start, a.end, a.size) == (b.start, b.end, b.size)


def test_histograms_share_bins() -> None:
    rng = np.random.default_rng(0)
    members, non = rng.normal(3.0, 0.1, 100), rng.normal(0.0, 1.0, 100)  # very different spreads
    s = np.r_[members, non]
    y = np.r_[np.ones(100, int), np.zeros(100, int)]
    _same_bins(vmia.score_distributions(s, y, xlabel="score"))
    _same_bins(vdi.di_score_distributions(list(members), list(non), scorer="normalized_sum"))
    df = pd.DataFrame({"label": ["member"] * 100 + ["nonmember"] * 100, "duration": s})
    _same_bins(vdataset.label_histogram(df, "duration", xlabel="duration (s)"))
    # the bins cover both samples
    b = vmia.score_distributions(s, y, xlabel="score").data[0].xbins
    assert b.start <= s.min() and b.end >= s.max()
