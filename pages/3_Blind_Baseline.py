"""Blind Baseline: can members and non-members be told apart without the model?"""

import streamlit as st

from core.pipeline.blind import DEFAULT_GROUPS, BlindRunConfig
from core.pipeline.crossdata import CrossDataConfig, latest_crossdata
from core.ui import dataset_picker, page_setup, record_details
from core.ui import blind_view as view
from core.ui.runs import run_controls

ws = page_setup("Blind Baseline", "🙈")
st.title("Blind baseline: is the comparison fair?")
c1, c2 = st.columns([2, 3])
with c1:
    dataset = dataset_picker(ws)
with c2:
    groups = view.group_picker(DEFAULT_GROUPS)
if dataset and not groups:
    st.info("Choose at least one feature group.")
elif dataset:
    config = BlindRunConfig(groups=tuple(groups))
    run_controls(ws, "blind", {"dataset": dataset, "config": config.to_dict()}, {"dataset": dataset}, label="Run blind baseline")
    run = ws.latest_run("blind", dataset)
    if run is None:
        st.info("No blind baseline for this dataset yet: press **Run blind baseline**. It runs in the background; you can leave the page.")
    else:
        st.caption(f"Run `{run['id']}` · groups {', '.join(run['config']['groups'])} · {run['provenance'].get('seconds') or 0:.0f} s")
        view.headline(run["result"])
        view.auc_and_roc(run["result"])
        view.giveaways(run["result"])
        view.score_histogram(ws, run)
        record_details(run)

    view.match_tool(ws, dataset, config)

st.header("Across datasets")
status = st.radio("Compare", ["member", "nonmember"], horizontal=True, key="cross-status", format_func=lambda s: f"{s}s of each dataset")
cross = CrossDataConfig(status=status)
if len(ws.dataset_names()) < 2:
    st.info("The cross-dataset matrix needs at least two datasets: add one on the Dataset page.")
else:
    run_controls(ws, "crossdata", {"datasets": None, "config": cross.to_dict()}, {"config": cross.to_dict()}, label="Compute matrix")
    view.crossdata(latest_crossdata(ws, status))
