"""Widgets of the Report page."""

from __future__ import annotations

import streamlit as st
import streamlit.components.v1 as components

from core.runtime.store import Workspace
from core.viz.report import build_report


def report_panel(ws: Workspace, dataset: str) -> None:
    runs = ws.runs(dataset=dataset)
    targets = sorted({t for t in runs["target"] if t}) if not runs.empty else []
    target = st.selectbox("Target", ["(latest MIA target)", *targets], key="report-target")
    target = None if target.startswith("(") else target
    if runs.empty:
        st.info("No analysis has been run on this dataset yet: start with the Blind Baseline or MIA Audit page.")
    counts = runs.groupby("kind").size().to_dict() if not runs.empty else {}
    st.caption("Runs on this dataset: " + (", ".join(f"{k} × {v}" for k, v in counts.items()) or "none"))
    # The slot replaces the previous selection's button at once, so while this report is
    # being built no stale button can download another dataset's file.
    slot = st.empty()
    slot.caption(f"Building the report for {dataset}…")
    html = build_report(ws, dataset, target)
    slot.download_button("Download report (HTML)", html.encode("utf-8"), file_name=f"overheard-report-{dataset}.html",
                         mime="text/html", type="primary", key=f"report-dl-{dataset}-{target or 'latest'}")
    with st.expander("Preview", expanded=True):
        components.html(html, height=900, scrolling=True)
