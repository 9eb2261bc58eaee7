"""Figures and tables with download buttons (export happens only when clicked)."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.ui.common import settings
from core.viz.export import MIME, TABLE_FORMATS, ExportTimeout, figure_bytes, image_export_available, table_bytes

IMAGE_FORMATS = ("png", "svg", "pdf")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "figure"


def show_figure(fig: go.Figure, *, key: str, caption: str = "", name: str | None = None) -> None:
    """Draw a plotly figure, its one-line caption, and PNG/SVG/PDF/HTML downloads."""
    st.plotly_chart(fig, width="stretch", key=key)
    if caption:
        st.caption(caption)
    _export_popover(fig, key=key, stem=_slug(name or key))


@st.fragment
def _export_popover(fig: go.Figure, *, key: str, stem: str) -> None:
    # a fragment, so that rendering an image reruns the popover alone, not the page behind
    # it; images are rendered when asked for, under a time limit with a spinner (a loaded
    # machine can stall Chromium for minutes); the HTML needs no browser and downloads at once.
    # Its own line, as wide as its label: a figure in a narrow column never squeezes it to "E…"
    with st.popover("Export", icon=":material/download:", help="Export this figure (PNG, SVG, PDF, HTML)", type="tertiary", width="content"):
        st.download_button("HTML", data=lambda: figure_bytes(fig, "html"), file_name=f"{stem}.html", mime=MIME["html"],
                           key=f"{key}-dl-html", help="Interactive, plotly.js inline; needs no browser to export", on_click="ignore")
        ok, why = image_export_available()
        limit = settings().export_timeout_s
        for fmt in IMAGE_FORMATS:
            if st.button(fmt.upper(), key=f"{key}-make-{fmt}", disabled=not ok,
                         help=why if not ok else f"Render a {fmt.upper()} with Chromium (stopped after {limit:g} s)"):
                _render(fig, fmt, key=key, stem=stem, limit=limit)


def _render(fig: go.Figure, fmt: str, *, key: str, stem: str, limit: float) -> None:
    try:
        with st.spinner(f"Rendering the {fmt.upper()} with Chromium (stopped after {limit:g} s)…", show_time=True):
            data = figure_bytes(fig, fmt, timeout_s=limit)
    except ExportTimeout as e:
        st.error(f"Export stopped: {e}; the machine is probably busy. Try again in a moment, or download the HTML "
                 "(or the table as CSV), which needs no browser. `OVERHEARD_EXPORT_TIMEOUT_S` sets the limit.",
                 icon=":material/timer_off:")
        return
    except RuntimeError as e:
        st.error(f"Export failed: {e}. The HTML (or the table as CSV) needs no browser.")
        return
    st.download_button(f"Save {stem}.{fmt}", data=data, file_name=f"{stem}.{fmt}", mime=MIME[fmt], key=f"{key}-dl-{fmt}",
                       type="primary", on_click="ignore", icon=":material/download:")


def table_downloads(df: pd.DataFrame, *, key: str, name: str) -> None:
    cols = st.columns(len(TABLE_FORMATS) + 4)
    for col, fmt in zip(cols, TABLE_FORMATS):
        col.download_button(fmt.upper(), data=lambda f=fmt: table_bytes(df, f), file_name=f"{_slug(name)}.{fmt}", mime=MIME[fmt], key=f"{key}-tbl-{fmt}", on_click="ignore")
