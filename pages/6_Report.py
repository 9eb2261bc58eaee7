"""Report: one self-contained HTML audit report with every figure and the provenance."""

import streamlit as st

from core.ui import dataset_picker, page_setup
from core.ui.report_view import report_panel

ws = page_setup("Report", "📄")
st.title("Audit report")
st.caption("Everything run on a dataset — blind baseline, MIA, dataset inference, disentanglement — in one HTML file that opens offline, with dataset hashes, model fingerprints, configuration, seeds and package versions.")
dataset = dataset_picker(ws)
if dataset:
    report_panel(ws, dataset)
