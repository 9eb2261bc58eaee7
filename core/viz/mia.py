"""Figures of the MIA and blind-baseline pages: ROC curves, score distributions, scatter."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.viz.theme import LABEL_COLORS, LABEL_NAMES, SEQUENCE, shared_bins, style


def roc_figure(roc: dict[str, dict], aucs: dict[str, float | None], *, highlight: str = "aggregate", max_curves: int = 8) -> go.Figure:
    """ROC curves on log-FPR axes (low FPR is where membership claims live).

    ``roc``: name -> {"fpr": [...], "tpr": [...]}; the ``highlight`` curve is drawn thick
    and the ``max_curves - 1`` best others thin.
    """
    # a comparison curve ("uncalibrated aggregate") is always drawn, then the best indicators
    others = sorted((k for k in roc if k != highlight and aucs.get(k) is not None),
                    key=lambda k: (not k.startswith("uncalibrated"), -(aucs.get(k) or 0)))[: max_curves - 1]
    fig = go.Figure()
    # TPR = FPR is a curve on a log x-axis: drawn through many points, not two
    chance = np.geomspace(1e-3, 1.0, 80)
    fig.add_trace(go.Scatter(x=chance, y=chance, mode="lines", line=dict(dash="dot", color="#999"), name="chance (TPR = FPR)", hoverinfo="skip"))
    for i, k in enumerate(others):
        r = roc[k]
        fig.add_trace(go.Scatter(x=np.maximum(r["fpr"], 1e-3), y=r["tpr"], mode="lines", line=dict(width=1.2, color=SEQUENCE[(i + 2) % len(SEQUENCE)]), name=f"{k} ({aucs[k]:.2f})"))
    if highlight in roc:
        r = roc[highlight]
        label = f"{highlight} ({aucs[highlight]:.2f})" if aucs.get(highlight) is not None else highlight
        fig.add_trace(go.Scatter(x=np.maximum(r["fpr"], 1e-3), y=r["tpr"], mode="lines", line=dict(width=3.5, color="#000"), name=label))
    fig.update_xaxes(title="false positive rate (log)", type="log", range=[-3, 0])
    fig.update_yaxes(title="true positive rate", range=[0, 1.02])
    fig.update_layout(legend=dict(orientation="v", yanchor="bottom", y=0.02, xanchor="right", x=0.98))
    return style(fig, height=420)


def score_distributions(scores: np.ndarray, labels: np.ndarray, *, xlabel: str, nbins: int = 30) -> go.Figure:
    """Overlaid histograms of a score for members and non-members, on shared bins."""
    fig = go.Figure()
    bins = shared_bins(scores[labels == 1], scores[labels == 0], nbins=nbins)
    for lab, val in (("member", 1), ("nonmember", 0)):
        s = scores[labels == val]
        fig.add_trace(go.Histogram(x=s, name=LABEL_NAMES[lab], marker_color=LABEL_COLORS[lab], opacity=0.6, xbins=bins, autobinx=bins is None))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=xlabel)
    fig.update_yaxes(title="clips")
    return style(fig, height=320)


def score_scatter(x: np.ndarray, y: np.ndarray, labels: np.ndarray, *, xlabel: str, ylabel: str) -> go.Figure:
    fig = go.Figure()
    for lab, val in (("member", 1), ("nonmember", 0)):
        m = labels == val
        fig.add_trace(go.Scatter(x=x[m], y=y[m], mode="markers", name=LABEL_NAMES[lab], marker=dict(color=LABEL_COLORS[lab], size=7, opacity=0.7)))
    fig.update_xaxes(title=xlabel)
    fig.update_yaxes(title=ylabel)
    return style(fig, height=360)


def auc_bars(names: list[str], aucs: list[float], cis: list[tuple[float, float]], *, xlabel: str = "AUC") -> go.Figure:
    """Horizontal AUC bars with their 95% intervals and the 0.5 chance line."""
    lo = [a - c[0] for a, c in zip(aucs, cis)]
    hi = [c[1] - a for a, c in zip(aucs, cis)]
    fig = go.Figure(go.Bar(y=names, x=aucs, orientation="h", marker_color="#0072B2", error_x=dict(type="data", array=hi, arrayminus=lo, color="#333"), text=[f"{a:.2f}" for a in aucs], textposition="inside"))
    fig.add_vline(x=0.5, line_dash="dot", line_color="#999")
    fig.update_xaxes(title=xlabel, range=[0, 1])
    return style(fig, height=80 + 40 * len(names))
