"""Figures and tables with download buttons (export happens only when clicked)."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.viz.export import FIGURE_FORMATS, MIME, TABLE_FORMATS, figure_bytes, image_export_available, table_bytes


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "figure"


def show_figure(fig: go.Figure, *, key: str, caption: str = "", name: str | None = None) -> None:
    """Draw a plotly figure, its one-line caption, and PNG/SVG/PDF/HTML downloads."""
    st.plotly_chart(fig, width="stretch", key=key)
    if caption:
        st.caption(caption)
    # its own line, as wide as its label: a figure in a narrow column never squeezes it to "E…"
    with st.popover("Export", icon=":material/download:", help="Export this figure (PNG, SVG, PDF, HTML)", type="tertiary", width="content"):
        ok, why = image_export_available()
        stem = _slug(name or key)
        for fmt in FIGURE_FORMATS:
            disabled = fmt != "html" and not ok
            st.download_button(
                fmt.upper(), data=lambda f=fmt: figure_bytes(fig, f), file_name=f"{stem}.{fmt}", mime=MIME[fmt],
                key=f"{key}-dl-{fmt}", disabled=disabled, help=why if disabled else None, on_click="ignore",
            )


def table_downloads(df: pd.DataFrame, *, key: str, name: str) -> None:
    cols = st.columns(len(TABLE_FORMATS) + 4)
    for col, fmt in zip(cols, TABLE_FORMATS):
        col.download_button(fmt.upper(), data=lambda f=fmt: table_bytes(df, f), file_name=f"{_slug(name)}.{fmt}", mime=MIME[fmt], key=f"{key}-tbl-{fmt}", on_click="ignore")
