"""Figures of the Disentanglement page."""

from __future__ import annotations

import plotly.graph_objects as go

from core.viz.theme import style


def condition_bars(details: dict[str, dict]) -> go.Figure:
    """MIA AUC per condition with 95% intervals and the 0.5 chance line."""
    names = [c for c, d in details.items() if "auc" in d and d["auc"] is not None]
    aucs = [details[c]["auc"] for c in names]
    lo = [details[c]["auc"] - details[c]["auc_ci"][0] for c in names]
    hi = [details[c]["auc_ci"][1] - details[c]["auc"] for c in names]
    colors = ["#000000" if c == "original" else "#0072B2" for c in names]
    fig = go.Figure(go.Bar(x=names, y=aucs, marker_color=colors, error_y=dict(type="data", array=hi, arrayminus=lo, color="#333"), text=[f"{a:.2f}" for a in aucs], textposition="inside", insidetextanchor="start"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999", annotation_text="chance", annotation_position="top left")
    fig.update_yaxes(title="MIA AUC (aggregate, 95% CI)", range=[0, 1.05])
    fig.update_xaxes(title="audio condition")
    return style(fig, height=360)
