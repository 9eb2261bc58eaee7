"""Overheard home page: what the tool does, the workspace at a glance, where to go next."""

import streamlit as st

from core.ui import cache_panel, page_setup
from core.ui.home import overview

ws = page_setup("Home")
st.title("Overheard")
st.markdown(
    "**Was this audio used to train that model?** Overheard audits audio models for training-data "
    "membership, with the statistics to defend the answer in writing."
)
c1, c2, c3 = st.columns(3)
c1.markdown("**1 · Is the comparison fair?**  \nBlind baseline: can members and non-members be told apart *without* the model?")
c1.page_link("pages/3_Blind_Baseline.py", label="Open the Blind Baseline", icon=":material/balance:")
c2.markdown("**2 · Does the model remember clips?**  \nPer-sample membership inference with ROC, AUC intervals and TPR at low FPR.")
c2.page_link("pages/2_MIA_Audit.py", label="Open the MIA Audit", icon=":material/search:")
c3.markdown("**3 · Was this collection used?**  \nDataset inference: many weak signals into one Welch t-test, with a null check.")
c3.page_link("pages/4_Dataset_Inference.py", label="Open Dataset Inference", icon=":material/functions:")
overview(ws)
cache_panel(ws)
