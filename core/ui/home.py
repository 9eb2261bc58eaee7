"""Home page body."""

from __future__ import annotations

import streamlit as st

from core.runtime.store import Workspace


def overview(ws: Workspace) -> None:
    st.subheader("Datasets in this workspace")
    df = ws.datasets()
    if df.empty:
        st.info("No datasets yet. Open **Dataset** in the sidebar to upload a folder or a zip.")
        return
    st.dataframe(df[["name", "members", "nonmembers", "files", "rejected", "status"]], hide_index=True, width="stretch")
    st.caption("Open **Dataset** in the sidebar to listen to clips and inspect what was rejected.")
