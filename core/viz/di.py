"""Figures of the Dataset Inference page: the p-value curve over the number of suspects
and the distributions of the scores the t-test compared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.viz.theme import LABEL_COLORS, LABEL_NAMES, shared_bins, style

P_FLOOR = 1e-300
"""p-values are drawn no lower than this on the log axis (0 cannot be drawn)."""

NULL_COLOR = "#999999"


def _col(points: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if p[key] is None else max(p[key], P_FLOOR) for p in points], dtype=np.float64)


def _band(fig: go.Figure, points: Sequence[dict[str, Any]], *, color: str, fill: str, name: str, band_name: str, dash: str | None = None) -> None:
    n = np.array([p["n"] for p in points], dtype=np.float64)
    fig.add_trace(go.Scatter(x=n, y=_col(points, "p_hi"), mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(x=n, y=_col(points, "p_lo"), mode="lines", line=dict(width=0), fill="tonexty", fillcolor=fill, name=band_name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=n, y=_col(points, "p_median"), mode="lines+markers", line=dict(color=color, width=2.5, dash=dash), marker=dict(size=5),
        name=name, hovertemplate="%{x} suspects: median p = %{y:.2g}<extra></extra>",
    ))


def curve_points(curve: Sequence[dict[str, Any]] | dict[str, Any] | None) -> list[dict[str, Any]]:
    """The points of a stored p-value curve: a run stores the null curve as
    ``{"points": [...], ...}`` and the suspects' curve as a bare list; both are accepted."""
    if curve is None:
        return []
    if isinstance(curve, dict):
        return list(curve.get("points") or [])
    return list(curve)


def pvalue_curve_figure(
    curve: Sequence[dict[str, Any]] | dict[str, Any],
    *,
    alpha: float,
    min_suspects: int | None = None,
    null_curve: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
) -> go.Figure:
    """Median p-value (and 10-90% band) of the DI test against the number of tested suspects.

    Parameters
    ----------
    curve : points ``{"n", "p_median", "p_lo", "p_hi"}`` of the suspects' curve (a list, or
        a stored curve ``{"points": [...]}``).
    alpha : significance level, drawn as a horizontal line.
    min_suspects : marked with a vertical line when given.
    null_curve : the same curve with non-members as pseudo-suspects (grey), if computed.
    """
    curve, null_curve = curve_points(curve), curve_points(null_curve)
    fig = go.Figure()
    if null_curve:
        _band(fig, null_curve, color=NULL_COLOR, fill="rgba(153,153,153,0.18)", name="null: non-members as suspects (median)", band_name="null 10-90%", dash="dot")
    _band(fig, curve, color=LABEL_COLORS["member"], fill="rgba(213,94,0,0.22)", name="suspects (median p)", band_name="suspects 10-90%")
    fig.add_hline(y=alpha, line_dash="dash", line_color="#000")
    # placed by hand: plotly puts add_hline's own annotation at the raw value on log axes
    fig.add_annotation(x=1, xref="paper", y=float(np.log10(alpha)), yref="y", text=f"α = {alpha:g}", showarrow=False, xanchor="right", yanchor="bottom")
    if min_suspects is not None:
        p_at = next((max(p["p_median"], P_FLOOR) for p in curve if p["n"] == min_suspects and p["p_median"] is not None), None)
        fig.add_vline(x=min_suspects, line_dash="dot", line_color=LABEL_COLORS["member"])
        if p_at is not None:
            fig.add_trace(go.Scatter(
                x=[min_suspects], y=[p_at], mode="markers", marker=dict(symbol="star", size=16, color="#000"),
                name=f"min suspects = {min_suspects}", hovertemplate="from %{x} suspects the median p stays below α<extra></extra>",
            ))
    ns = [p["n"] for p in curve] + [p["n"] for p in null_curve] or [1]
    ticks = [v for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if min(ns) / 1.5 <= v <= max(ns) * 1.5]
    fig.update_xaxes(title="number of tested suspects |P| (clips, log)", type="log", tickvals=ticks)
    ps = [max(p[k], P_FLOOR) for c in (curve, null_curve) for p in c for k in ("p_lo", "p_median", "p_hi") if p.get(k) is not None]
    decades = np.log10(max(ps + [1.0])) - np.log10(min(ps + [alpha]))
    # one label per decade up to ~8 decades, then every 2nd, 3rd, ... so labels never overlap
    fig.update_yaxes(title="p-value (one-sided Welch, log)", type="log", exponentformat="power", dtick=max(1, int(np.ceil(decades / 8))))
    fig.update_layout(legend=dict(orientation="v", yanchor="bottom", y=0.02, xanchor="left", x=0.02, bgcolor="rgba(255,255,255,0.7)"))
    return style(fig, height=440)


def di_score_distributions(p_scores: Sequence[float | None], u_scores: Sequence[float | None], *, scorer: str, nbins: int = 30) -> go.Figure:
    """Overlaid histograms of the scores of the tested suspects and non-members, with their means."""
    fig = go.Figure()
    clean = {lab: np.array([v for v in vals if v is not None], dtype=np.float64) for lab, vals in (("member", p_scores), ("nonmember", u_scores))}
    bins = shared_bins(*clean.values(), nbins=nbins)
    for lab, s in clean.items():
        name = "suspects (P)" if lab == "member" else LABEL_NAMES[lab]
        fig.add_trace(go.Histogram(x=s, name=f"{name}, n = {s.size}", marker_color=LABEL_COLORS[lab], opacity=0.6, xbins=bins, autobinx=bins is None))
        if s.size:
            fig.add_vline(x=float(s.mean()), line_color=LABEL_COLORS[lab], line_width=2, line_dash="dash")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=f"DI score ({scorer}; higher = member, arbitrary units)")
    fig.update_yaxes(title="clips")
    return style(fig, height=340)
