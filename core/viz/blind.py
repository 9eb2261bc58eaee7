"""Figures of the Blind Baseline page: AUC per feature group, ROC curves, the blind score
by label, the cross-dataset AUC heatmap and the before/after matching chart."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from core.viz.mia import auc_bars, score_distributions
from core.viz.theme import SEQUENCE, style

__all__ = ["auc_by_group", "cross_heatmap", "match_chart", "roc_by_group", "score_histogram"]

ALL = "all"
_AFTER_COLOR = "#009E73"
_BEFORE_COLOR = "#999999"


def _order(groups: Sequence[str]) -> list[str]:
    """Feature groups in their given order, the combined model last."""
    return [g for g in groups if g != ALL] + ([ALL] if ALL in groups else [])


def group_label(group: str) -> str:
    return "all groups (combined)" if group == ALL else group


def auc_by_group(auc: Mapping[str, float], auc_ci: Mapping[str, Sequence[float]]) -> go.Figure:
    """Horizontal bars: blind AUC of each feature group and of the combined model, with
    95% intervals and the 0.5 chance line.

    ``auc``: group -> AUC; ``auc_ci``: group -> (low, high).
    """
    names = _order(list(auc))
    fig = auc_bars(
        [group_label(g) for g in names],
        [float(auc[g]) for g in names],
        [tuple(auc_ci[g]) for g in names],
        xlabel="blind AUC (0.5 = chance, 1 = perfectly separable)",
    )
    fig.update_traces(insidetextanchor="start", textfont_color="white")
    fig.update_yaxes(title="feature group")
    return fig


def roc_by_group(roc: Mapping[str, Mapping[str, Sequence[float]]], auc: Mapping[str, float]) -> go.Figure:
    """Out-of-fold ROC curve of each group (thin) and of the combined model (thick), on
    linear axes: the blind baseline is read by its AUC, not by its low-FPR tail.

    ``roc``: group -> {"fpr": [...], "tpr": [...]}.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), name="chance", hoverinfo="skip"))
    for i, g in enumerate(_order(list(roc))):
        r = roc[g]
        combined = g == ALL
        fig.add_trace(
            go.Scatter(
                x=r["fpr"], y=r["tpr"], mode="lines",
                line=dict(width=3.5 if combined else 1.6, color="#000" if combined else SEQUENCE[(i + 2) % len(SEQUENCE)]),
                name=f"{group_label(g)} ({auc[g]:.2f})",
            )
        )
    fig.update_xaxes(title="false positive rate (non-members flagged)", range=[0, 1])
    fig.update_yaxes(title="true positive rate (members flagged)", range=[0, 1.02])
    fig.update_layout(legend=dict(orientation="v", yanchor="bottom", y=0.02, xanchor="right", x=0.98))
    return style(fig, height=400)


def score_histogram(scores: np.ndarray, labels: np.ndarray) -> go.Figure:
    """Overlaid histograms of the per-clip out-of-fold blind score, members vs non-members."""
    fig = score_distributions(
        np.asarray(scores, dtype=np.float64), np.asarray(labels), xlabel="blind score: out-of-fold P(member | model-free features)"
    )
    fig.update_xaxes(range=[0, 1])
    return fig


def cross_heatmap(
    matrix: Sequence[Sequence[float | None]],
    names: Sequence[str],
    *,
    status: str,
    shared: Sequence[Sequence[int]] | None = None,
) -> go.Figure:
    """Blind AUC between every pair of datasets (same membership status on both sides).

    Off-diagonal cells compare ``status`` subsets of two datasets (anything above 0.5 is
    domain shift); the diagonal is each dataset's own member-vs-non-member AUC. The colour
    scale runs from 0.5 (white, indistinguishable) to 1 (dark, perfectly separable); cells
    whose datasets share clips are marked with the shared count.
    """
    z = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=np.float64)
    text = []
    for i, row in enumerate(z):
        cells = []
        for j, v in enumerate(row):
            s = "n/a" if not np.isfinite(v) else f"{v:.2f}"
            if i == j:
                s += "<br>(P vs U)"
            elif shared is not None and shared[i][j]:
                s += f"<br>({shared[i][j]} shared)"
            cells.append(s)
        text.append(cells)
    who = {"member": "members", "nonmember": "non-members"}.get(status, status)
    fig = go.Figure(
        go.Heatmap(
            z=np.clip(z, 0.5, 1.0), x=list(names), y=list(names), zmin=0.5, zmax=1.0,
            colorscale="Blues", text=text, texttemplate="%{text}", textfont=dict(size=14),
            colorbar=dict(title="blind AUC"),
            customdata=z, hovertemplate="%{y} vs %{x}: AUC %{customdata:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title=f"dataset ({who})", side="bottom")
    fig.update_yaxes(title=f"dataset ({who})", autorange="reversed")
    return style(fig, height=160 + 70 * len(names))


def match_chart(before: Mapping, after: Mapping | None) -> go.Figure:
    """Blind AUC per group before and after matching, with 95% intervals.

    ``before`` / ``after``: blind results with ``auc`` and ``auc_ci`` (``after`` None when
    too few pairs survived).
    """
    fig = go.Figure()
    groups = _order(list(before["auc"]))
    for name, res, color in (("before matching", before, _BEFORE_COLOR), ("after matching", after, _AFTER_COLOR)):
        if res is None:
            continue
        gs = [g for g in groups if g in res["auc"]]
        a = np.array([res["auc"][g] for g in gs])
        lo = np.array([res["auc_ci"][g][0] for g in gs])
        hi = np.array([res["auc_ci"][g][1] for g in gs])
        fig.add_trace(
            go.Bar(
                y=[group_label(g) for g in gs], x=a, orientation="h", name=name, marker_color=color,
                error_x=dict(type="data", array=hi - a, arrayminus=a - lo, color="#333"),
                text=[f"{v:.2f}" for v in a], textposition="inside", insidetextanchor="start",
            )
        )
    fig.add_vline(x=0.5, line_dash="dot", line_color="#999")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="blind AUC (0.5 = chance)", range=[0, 1])
    fig.update_yaxes(title="feature group")
    return style(fig, height=120 + 60 * len(groups))
