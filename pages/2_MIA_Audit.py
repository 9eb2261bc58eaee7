"""MIA Audit: per-sample membership inference of a target model on a dataset."""

import streamlit as st

from core.pipeline import MIAConfig
from core.ui import dataset_picker, failed_clips, page_setup
from core.ui import mia_view as view
from core.ui.runs import reference_picker, run_controls, target_picker

ws = page_setup("MIA Audit", "🔎")
st.title("Per-sample membership inference")
c1, c2, c3 = st.columns([2, 2, 1])
with c1:
    dataset = dataset_picker(ws)
with c2:
    target = target_picker(ws, dataset=dataset)
with c3:
    mode, runnable = view.mode_picker(ws, dataset)
if dataset and target:
    references = reference_picker(target)
    if runnable:
        config = MIAConfig(mode=mode, references=references)
        params = {"dataset": dataset, "target": target, "config": config.to_dict()}
        run_controls(ws, "mia", params, {"dataset": dataset, "target": target}, label="Run MIA")
    run = ws.latest_run("mia", dataset, target)
    if run is None:
        st.info("No MIA run for this dataset and target yet: press **Run MIA**. It runs in the background; you can leave the page.")
    else:
        st.caption(f"Run `{run['id']}` · model fingerprint `{run['provenance']['model_fingerprint']}` · {run['config']['mode']} text")
        view.headline(run["result"])
        view.calibration_comparison(run["result"])
        failed_clips(run["result"])
        view.roc_and_scores(ws, run)
        view.indicator_table(run["result"])
        view.per_sample(ws, run, dataset)
        view.blind_scatter(ws, run)
