"""MIA Audit: per-sample membership inference of a target model on a dataset."""

import streamlit as st

from core.pipeline import MIAConfig
from core.config import decoding_text
from core.stages import family_of
from core.ui import dataset_picker, failed_clips, page_setup, record_details
from core.ui.common import blind_verdict_line
from core.ui import mia_view as view
from core.ui.shadow_view import shadow_builder
from core.ui.runs import (access_picker, cross_fit_picker, language_picker, loader_options_input, pia_picker, reference_picker, request_budget,
                          run_controls, target_picker)

ws = page_setup("MIA Audit", "🔎")
st.title("Per-sample membership inference")
c1, c2, c3, c4 = st.columns([2, 3, 1, 1])  # the target box is the widest: its labels name the training data
with c1:
    dataset = dataset_picker(ws)
with c2:
    target = target_picker(ws, dataset=dataset)
with c3:
    access = access_picker(target, key="mia-access")
with c4:
    mode, runnable = view.mode_picker(ws, dataset, access)
if dataset and target:
    references = reference_picker(target, ws=ws)
    cross_fit = cross_fit_picker(references)
    pia = pia_picker(target, access)
    budget = request_budget(target)
    language = language_picker(target)
    options = loader_options_input(key="mia-loader-options", chosen=language)
    shadow_builder(ws, dataset, target, options=options or ())
    if runnable and options is not None:
        config = MIAConfig(mode=mode, references=references, cross_fit=cross_fit, access=access, max_requests=budget, target_options=options,
                           pia=pia)
        params = {"dataset": dataset, "target": target, "config": config.to_dict()}
        run_controls(ws, "mia", params, {"dataset": dataset, "target": target}, label="Run MIA")
    run = view.shown_run(ws, dataset, target, access, mode, references, cross_fit)
    if run is None:
        st.info(f"No MIA run at the {access} level for this dataset and target yet: press **Run MIA**. "
                "It runs in the background; you can leave the page.")
    else:
        st.caption(f"Run `{run['id']}` · model fingerprint `{run['provenance']['model_fingerprint']}` · "
                   f"{decoding_text(run['config'], run['result'], family_of(target))}")
        view.headline(run["result"])
        blind_verdict_line(ws, run)
        view.access_comparison(ws, run)
        view.calibration_comparison(run["result"])
        failed_clips(run["result"])
        record_details(run)
        view.roc_and_scores(ws, run)
        view.indicator_table(run["result"])
        view.per_sample(ws, run, dataset)
        view.blind_scatter(ws, run)
