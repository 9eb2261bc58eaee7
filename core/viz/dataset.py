"""Figures of the Dataset page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.viz.theme import LABEL_COLORS, LABEL_NAMES, shared_bins, style


def waveform(audio: np.ndarray, sr: int, *, max_points: int = 4000) -> go.Figure:
    """Waveform, min/max-decimated to at most ``max_points`` columns."""
    n = audio.shape[0]
    step = max(1, int(np.ceil(n / max_points)))
    m = (n // step) * step
    if step > 1 and m > 0:
        blocks = audio[:m].reshape(-1, step)
        t = np.arange(blocks.shape[0]) * step / sr
        y = np.stack([blocks.min(1), blocks.max(1)], 1).ravel()
        t = np.repeat(t, 2)
    else:
        t, y = np.arange(n) / sr, audio
    fig = go.Figure(go.Scattergl(x=t, y=y, mode="lines", line=dict(width=1, color="#555")))
    fig.update_xaxes(title="time (s)")
    fig.update_yaxes(title="amplitude", range=[-1.05, 1.05])
    return style(fig, height=220)


def spectrogram(logmel_db: np.ndarray, sr: int, hop: int) -> go.Figure:
    """Log-mel spectrogram heatmap (dB), ``logmel_db`` shape ``[n_mels, frames]``."""
    t = np.arange(logmel_db.shape[1]) * hop / sr
    fig = go.Figure(go.Heatmap(z=logmel_db, x=t, colorscale="Viridis", zmin=float(logmel_db.max() - 80), colorbar=dict(title="dB")))
    fig.update_xaxes(title="time (s)")
    fig.update_yaxes(title="mel band")
    return style(fig, height=260)


def label_histogram(df: pd.DataFrame, column: str, *, xlabel: str, nbins: int = 30) -> go.Figure:
    """Overlaid histograms of ``column`` for members and non-members, on shared bins."""
    fig = go.Figure()
    bins = shared_bins(*(df.loc[df["label"] == lab, column] for lab in ("member", "nonmember")), nbins=nbins)
    for label in ("member", "nonmember"):
        vals = df.loc[df["label"] == label, column]
        if len(vals):
            fig.add_trace(go.Histogram(x=vals, name=LABEL_NAMES[label], marker_color=LABEL_COLORS[label], opacity=0.65, xbins=bins, autobinx=bins is None))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=xlabel)
    fig.update_yaxes(title="clips")
    return style(fig, height=280)


def label_balance(df: pd.DataFrame) -> go.Figure:
    counts = df["label"].value_counts()
    labels = [lab for lab in ("member", "nonmember") if lab in counts]
    fig = go.Figure(go.Bar(x=[LABEL_NAMES[lab] for lab in labels], y=[int(counts[lab]) for lab in labels], marker_color=[LABEL_COLORS[lab] for lab in labels], text=[int(counts[lab]) for lab in labels], textposition="auto"))
    fig.update_yaxes(title="unique clips")
    return style(fig, height=280)
