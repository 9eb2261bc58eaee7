"""Home page body."""

from __future__ import annotations

import streamlit as st

from core.data.summary import workspace_summary
from core.runtime.store import Workspace


def overview(ws: Workspace) -> None:
    st.subheader("Datasets in this workspace")
    df = workspace_summary(ws)
    if df.empty:
        st.info("No datasets yet. Open **Dataset** in the sidebar to upload a folder or a zip.")
        return
    st.dataframe(
        df, hide_index=True, width="stretch",
        column_config={"members": "members (P)", "nonmembers": "non-members (U)", "conflicts": "label conflicts (excluded)",
                       "duplicate_files": "duplicate copies", "files": "files seen", "rejected": "rejected files"},
    )
    st.caption("Open **Dataset** in the sidebar to listen to clips and inspect what was rejected.")


def cache_panel(ws: Workspace) -> None:
    """Cache size per model and feature set, with a guarded clear button (the cache never
    evicts on its own)."""
    from core.pipeline.common import cache_overview
    from core.runtime.cache import clear_cache

    df = cache_overview(ws)
    total = float(df["bytes"].sum()) if not df.empty else 0.0
    with st.expander(f"Cache: {total / 1e6:.1f} MB", expanded=False):
        if df.empty:
            st.caption(f"Empty. Evidence and features are cached in `{ws.cache_dir}` as audits run.")
            return
        st.dataframe(df.assign(MB=(df["bytes"] / 1e6).round(2)).drop(columns="bytes"), hide_index=True, width="stretch",
                     column_config={"name": "fingerprint / feature set", "used_by": "targets"})
        st.caption("Per-clip evidence and features, reused by every later run. Clearing keeps all runs; "
                   "a later audit recomputes what it needs.")
        choices = ["everything"] + [f"{r.part}/{r.name}" + (f" ({r.used_by})" if r.used_by else "") for r in df.itertuples()]
        pick = st.selectbox("Clear", choices, key="cache-clear-pick")
        sure = st.checkbox("I understand the next audits recompute this", key="cache-clear-sure")
        if st.button("Clear cache", disabled=not sure, key="cache-clear"):
            if pick == "everything":
                freed = clear_cache(ws.cache_dir)
            else:
                part, _, rest = pick.partition("/")
                freed = clear_cache(ws.cache_dir, part, rest.split(" ", 1)[0])
            st.success(f"Freed {freed / 1e6:.1f} MB.")
