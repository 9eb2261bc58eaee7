"""Dataset Inference: was the suspect collection, as a whole, used to train the model?"""

import streamlit as st

from core.pipeline.di import DIRunConfig
from core.config import decoding_text, di_mia_config
from core.stages import at_access, family_of
from core.ui import dataset_picker, failed_clips, page_setup, record_details
from core.ui import di_view as view
from core.ui.shadow_view import shadow_builder
from core.ui.runs import (access_picker, cross_fit_picker, language_picker, loader_options_input, reference_picker, run_controls,
                          run_for_references, target_picker)

ws = page_setup("Dataset Inference", "🧮")
st.title("Dataset inference")
c1, c2, c3 = st.columns([2, 3, 1])  # the target box is the widest: its labels name the training data
with c1:
    dataset = dataset_picker(ws)
with c2:
    target = target_picker(ws, dataset=dataset)
with c3:
    access = access_picker(target, key="di-access")
scorer, alpha, compare = view.controls()
plan_nonmembers = view.plan_control()
if dataset and target:
    references = reference_picker(target, ws=ws)
    cross_fit = cross_fit_picker(references)
    options = loader_options_input(key="di-loader-options", chosen=language_picker(target, key="di-language"))
    shadow_builder(ws, dataset, target, key="di-shadow", options=options or ())
    if options is not None:
        config = DIRunConfig(scorer=scorer, alpha=alpha, compare=compare, references=references, cross_fit=cross_fit, mia_access=access,
                             plan_nonmembers=plan_nonmembers, target_options=options)
        params = {"dataset": dataset, "target": target, "config": config.to_dict()}
        run_controls(ws, "di", params, {"dataset": dataset, "target": target}, label="Run dataset inference")
    run = run_for_references(ws, "di", dataset, target, at_access(access, "mia_access"), references, cross_fit,
                             scope=f"at the {access} level", button="Run dataset inference")
    if run is None:
        st.info(f"No dataset-inference run at the {access} level for this dataset and target yet: press **Run dataset inference**. "
                "It reuses the latest MIA run (or runs one first) in the background.")
    else:
        cfg = run["config"]
        mia_access = di_mia_config(run["result"])
        st.caption(f"Run `{run['id']}` · from MIA run `{run['result']['mia_run']}` ({decoding_text(mia_access, run['result'], family_of(target))}) · scorer {cfg['scorer']} · α = {cfg['alpha']:g}")
        view.upstream_notice(ws, run)
        if (cfg["scorer"], cfg["alpha"], cfg["compare"], cfg.get("plan_nonmembers")) != (scorer, alpha, compare, plan_nonmembers):
            st.info("The settings above differ from this run's: press **Run dataset inference** to update it.")
        view.verdict(run["result"])
        view.metrics(run["result"])
        view.calibration_comparison(run["result"])
        failed_clips(run["result"])
        view.which(ws, run)
        view.curve(run["result"])
        view.score_distributions(ws, run)
        view.comparison(run["result"])
        record_details(run)
