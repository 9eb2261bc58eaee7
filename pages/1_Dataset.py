"""Dataset: upload or pick a dataset, browse and listen to its clips, see what was rejected."""

import streamlit as st

from core.ui import cache_panel, dataset_picker, page_setup
from core.ui import dataset_view as view

ws = page_setup("Dataset", "📁")
st.title("Dataset")
view.upload_panel(ws)
name = dataset_picker(ws)
if name:
    items = ws.items(name)
    clips = ws.analysis_clips(name)
    summary = view.summary(ws, name, clips)
    selected = view.clip_table(items)
    if selected is not None:
        view.player(ws, selected)
    view.distributions(clips)
    view.problems(ws, name, summary)
    cache_panel(ws, name)
