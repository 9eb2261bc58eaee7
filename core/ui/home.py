"""Home page body."""

from __future__ import annotations

import streamlit as st

from core.data.summary import workspace_summary
from core.runtime.store import Workspace


_HEADERS = {"members": "members (P)", "nonmembers": "non-members (U)", "conflicts": "label conflicts (excluded)",
            "duplicate_files": "duplicate copies", "files": "files seen", "rejected": "rejected files"}


def overview(ws: Workspace) -> None:
    st.subheader("Datasets in this workspace")
    df = workspace_summary(ws)
    if df.empty:
        st.info("No datasets yet. Open **Dataset** in the sidebar to upload a folder or a zip.")
        return
    # a static table: a few rows, drawn with the page (the interactive grid's canvas showed as
    # an empty grey bar for seconds while its code loaded in the browser)
    st.table(df.rename(columns=_HEADERS), hide_index=True)
    st.caption("Open **Dataset** in the sidebar to listen to clips and inspect what was rejected.")
