"""Disentanglement: re-run the MIA with the audio replaced by silence, noise or resynthesis."""

import streamlit as st

from core.disentangle import variant_names
from core.pipeline import DisentangleConfig, MIAConfig
from core.config import decoding_text
from core.stages import DEFAULT_CONDITIONS, at_access, family_of
from core.ui import dataset_picker, failed_clips, page_setup, record_details
from core.ui import disentangle_view as view
from core.ui.runs import access_picker, loader_options_input, reference_picker, run_controls, run_for_references, target_picker

ws = page_setup("Disentanglement", "🎛️")
st.title("Modality disentanglement")
c1, c2, c3 = st.columns([2, 3, 1])  # the target box is the widest: its labels name the training data
with c1:
    dataset = dataset_picker(ws)
with c2:
    target = target_picker(ws, dataset=dataset)
with c3:
    access = access_picker(target, key="dis-access")
last = ws.latest_run("disentangle", dataset, target, where=lambda c: at_access(access)(c.get("mia") or {})) if dataset and target else None
defaults = last["config"]["conditions"] if last else list(DEFAULT_CONDITIONS)
conditions = st.multiselect("Conditions", variant_names(), default=[c for c in defaults if c in variant_names()])
options, clap = view.variant_options_form(conditions, last)
if dataset and target and conditions:
    references = reference_picker(target)
    loader = loader_options_input(key="dis-loader-options")
    if loader is not None:
        config = DisentangleConfig(conditions=tuple(conditions), mia=MIAConfig(references=references, access=access, target_options=loader),
                                   variant_options=options, clap_model=clap)
        run_controls(ws, "disentangle", {"dataset": dataset, "target": target, "config": config.to_dict()}, {"dataset": dataset, "target": target}, label="Run disentanglement")
    run = run_for_references(ws, "disentangle", dataset, target, lambda c: at_access(access)(c.get("mia") or {}), references, False,
                             scope=f"at the {access} level", button="Run disentanglement", calibration_of=lambda c: c.get("mia") or {})
    if run is None:
        st.info("No disentanglement run yet for this dataset and target: press **Run disentanglement**.")
    else:
        st.caption(f"Run `{run['id']}` · {run['result']['n']} clips · {decoding_text(run['config'].get('mia') or {}, run['result'], family_of(target))}")
        view.results(run["result"])
        failed_clips(run["result"])
        record_details(run)
        view.listening_panel(ws, run, dataset, list(run["result"]["details"]),
                             run["config"].get("variant_options", {}))
