"""Widgets of the Dataset page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.ui.export import show_figure

from core.data.audio import AudioError, load_analysis
from core.data.ingest import IngestError, IngestReport, LayoutPreview, path_files, preview_layout, upload_files
from core.data.layouts import LAYOUTS, LabelRules, layout_names
from core.data.paths import resolve_under_roots
from core.data.spectral import log_mel
from core.data.summary import DatasetSummary, dataset_summary
from core.runtime.store import Workspace
from core.pipeline import ingest_params, ingest_report, stage_uploads
from core.runtime import jobs
from core.ui.common import job_panel, settings
from core.viz import dataset as figs


def _show_report(rep: IngestReport) -> None:
    st.success(f"Ingested **{rep.dataset}** (read as {rep.layout}): {rep.headline}.")
    if rep.rejected:
        st.warning(f"{len(rep.rejected)} file(s) rejected; they are listed below with their reasons.")
        st.dataframe(pd.DataFrame(rep.rejected), hide_index=True, width="stretch")
    for w in rep.warnings:
        st.warning(w)


def _preview(uploads: list[tuple[str, bytes]], folder: str, layout: str) -> LayoutPreview | None:
    """The layout preview of the chosen files (None when none are chosen); errors are shown."""
    try:
        if uploads:
            return preview_layout(upload_files(uploads, limits=settings().limits), layout=layout)
        if folder:
            path = resolve_under_roots(folder, settings().roots)
            return preview_layout(path_files(path, limits=settings().limits), layout=layout)
    except (IngestError, PermissionError, FileNotFoundError) as exc:
        st.error(str(exc))
    return None


def _label_rules(pv: LayoutPreview | None) -> LabelRules:
    """Members/non-members widgets: the previewed splits, and free patterns (folder globs, column=value)."""
    if pv is not None:
        parts = [f"Read as **{pv.layout}**: {pv.items} audio item(s)"]
        if pv.splits:
            parts.append("splits " + ", ".join(f"`{k}` ({v})" for k, v in pv.splits.items()))
        if pv.layout_labels:
            parts.append("labelled by the layout: " + ", ".join(f"{v} {k}" for k, v in sorted(pv.layout_labels.items())))
        st.caption("; ".join(parts) + ".")
        if pv.columns:
            st.caption("Columns for `column=value` rules: " + "; ".join(f"`{k}` ({', '.join(v[:3])}{', …' if len(v) > 3 else ''})" for k, v in list(pv.columns.items())[:12]))
    splits = list(pv.splits) if pv is not None else []
    sides = {}
    for col, side, title in zip(st.columns(2), ("members", "nonmembers"), ("Members (P)", "Non-members (U)")):
        chosen = col.multiselect(f"{title}: splits", splits, key=f"upload_{side}_splits") if splits else []
        rule = col.text_input(f"{title}: patterns", key=f"upload_{side}", placeholder="folder glob or column=value, comma-separated")
        sides[side] = [*chosen, rule]
    return LabelRules.parse(sides["members"], sides["nonmembers"])


def upload_panel(ws: Workspace) -> None:
    with st.expander("Add a dataset", expanded=ws.datasets().empty):
        st.caption(
            "Layouts (detected, or chosen below): `members/` + `nonmembers/` folders or a `metadata.csv` "
            "(`path,label[,text,speaker,source,split]`), LibriSpeech, Hugging Face audiofolder and `datasets` on disk "
            "(save_to_disk, Parquet), Common Voice, lhotse. Label by split, folder glob or `column=value`; "
            "without rules the layout's own labels (folder names, a `label` column) are used."
        )
        name = st.text_input("Dataset name", key="upload_name", placeholder="my-audit")
        tab_folder, tab_zip, tab_server = st.tabs(["Upload a folder", "Upload a zip", "Server folder"])
        with tab_folder:
            files = st.file_uploader("Audio folder", accept_multiple_files="directory", key="upload_dir")
        with tab_zip:
            zips = st.file_uploader("Zip archive(s)", type=["zip"], accept_multiple_files=True, key="upload_zip")
        with tab_server:
            folder = st.text_input("Folder or .zip on the server", key="server_path", help="Only folders under the workspace or the current directory (or $OVERHEARD_ROOTS).")
        layout = st.selectbox("Layout", layout_names(), key="upload_layout",
                              help="; ".join(f"{n}: {LAYOUTS.get(n).summary}" for n in LAYOUTS.names()))
        uploads = [(f.name, f.getvalue()) for f in (files or [])] + [(z.name, z.getvalue()) for z in (zips or [])]
        labels = _label_rules(_preview(uploads, folder, layout) if (uploads or folder) else None)
        job_id = _ingest_job(ws)
        busy = job_id is not None and jobs.job(ws, job_id)["status"] in ("queued", "running")
        if st.button("Ingest", type="primary", disabled=not name or busy):
            _start_ingest(ws, name, uploads, folder, layout, labels)
    # outside the expander, which folds away once a dataset exists
    row = job_panel(ws, job_id) if job_id else None
    if row is not None and row["status"] == "done" and row["run_id"] in ws.dataset_names():
        _show_report(ingest_report(ws, row["run_id"]))


def _ingest_job(ws: Workspace) -> str | None:
    """This session's ingest job, or one still running or interrupted (found again after a reload)."""
    if st.session_state.get("_ingest_job"):
        return st.session_state["_ingest_job"]
    latest = jobs.jobs(ws, kind="ingest", limit=1)
    if not latest.empty and latest.iloc[0]["status"] in ("queued", "running", "interrupted", "stalled"):
        return str(latest.iloc[0]["id"])
    return None


def _start_ingest(ws: Workspace, name: str, uploads: list[tuple[str, bytes]], folder: str, layout: str, labels: LabelRules) -> None:
    """Check what can be checked at once, then ingest in a background job (the page stays live)."""
    existing = ws.datasets()
    if ((existing["name"] == name) & (existing["status"] == "ready")).any():
        st.error(f"A dataset named {name!r} already exists; choose another name.")
        return
    if uploads:
        params = ingest_params(name, upload=stage_uploads(ws, uploads), layout=layout, labels=labels)
    elif folder:
        try:
            path = resolve_under_roots(folder, settings().roots)
        except (PermissionError, FileNotFoundError) as exc:
            st.error(str(exc))
            return
        params = ingest_params(name, path=str(path), layout=layout, labels=labels)
    else:
        st.error("Choose files, a zip or a server folder first.")
        return
    st.session_state["_ingest_job"] = jobs.submit(ws, "ingest", params)
    st.session_state["_dataset"] = name
    st.rerun()


def summary(ws: Workspace, name: str, clips: pd.DataFrame) -> DatasetSummary:
    """The dataset's counts (``clips``: its analysis clips) and its warnings."""
    s = dataset_summary(ws, name)
    c = st.columns(6)
    c[0].metric("Unique clips analysed", s.analysed)
    c[1].metric("Members (P)", s.members)
    c[2].metric("Non-members (U)", s.nonmembers)
    c[3].metric("Duplicate copies", s.duplicate_files, help="Extra files with the content of another file under the same label; the clip is analysed once.")
    c[4].metric("Label conflicts", s.conflicts, help="Clips whose content appears under both labels; excluded from every analysis.")
    c[5].metric("Rejected files", s.rejected)
    st.caption(s.headline() + ".")
    from core.stats import small_sample_warning

    small = small_sample_warning(clips["y"].to_numpy()) if s.analysed else None
    if small:
        st.warning(small)
    if s.conflicts:
        st.warning("Some clips appear under both labels; they are excluded from every analysis until resolved (see below).")
    return s


def clip_table(items: pd.DataFrame) -> pd.Series | None:
    st.subheader("Clips")
    c1, c2 = st.columns([1, 2])
    labels = c1.multiselect("Label", ["member", "nonmember"], default=["member", "nonmember"])
    query = c2.text_input("Search path, text or speaker", "")
    view = items[items["label"].isin(labels)]
    if query:
        q = query.lower()
        mask = view["path"].str.lower().str.contains(q, regex=False) | view["text"].str.lower().str.contains(q, regex=False) | view["speaker"].str.lower().str.contains(q, regex=False)
        view = view[mask]
    cols = ["path", "label", "duration", "sample_rate", "speaker", "text"]
    event = st.dataframe(
        view[cols].reset_index(drop=True),
        hide_index=True,
        width="stretch",
        height=300,
        on_select="rerun",
        selection_mode="single-row",
        column_config={"duration": st.column_config.NumberColumn("duration (s)", format="%.2f"), "sample_rate": st.column_config.NumberColumn("sample rate (Hz)")},
        key="clip_table",
    )
    st.caption(f"{len(view)} of {len(items)} files. Select a row to listen to it.")
    rows = event.selection.rows if event is not None else []
    if rows:
        return view.iloc[rows[0]]
    return view.iloc[0] if len(view) else None


def player(ws: Workspace, row: pd.Series) -> None:
    st.subheader(f"Listen: {row['path']}")
    data = ws.read_audio(row["clip_hash"])
    st.audio(data)
    meta = f"{row['label']} · {row['duration']:.2f} s · {row['sample_rate']} Hz · {row['channels']} ch · {row['format']}/{row['subtype']}"
    st.caption(meta + (f" · “{row['text']}”" if row["text"] else ""))
    sr = settings().analysis_sr
    try:
        audio = load_analysis(data, sr)
    except AudioError as exc:
        st.error(str(exc))
        return
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs.waveform(audio, sr), width="stretch", key="wave")
    c2.plotly_chart(figs.spectrogram(log_mel(audio, sr=sr), sr, 160), width="stretch", key="spec")


def distributions(labelled: pd.DataFrame) -> None:
    """Label balance, durations and sample rates of the analysis clips ``labelled``."""
    st.subheader("Distributions")
    c = st.columns(3)
    with c[0]:
        show_figure(figs.label_balance(labelled), key="balance", caption="Unique clips analysed per label (label conflicts excluded, duplicates once).")
    with c[1]:
        show_figure(figs.label_histogram(labelled, "duration", xlabel="duration (s)"), key="dur", caption="Clip durations: different shapes per label hint at a confounded comparison.")
    rates = labelled.assign(sample_rate=labelled["sample_rate"].map(lambda r: f"{r / 1000:g} kHz"))
    with c[2]:
        show_figure(figs.label_histogram(rates, "sample_rate", xlabel="original sample rate"), key="sr", caption="Original sample rates, before resampling to the analysis rate.")


def problems(ws: Workspace, name: str, s: DatasetSummary) -> None:
    rejected = ws.rejected(name)
    conflicts = ws.label_conflicts(name)
    st.subheader("Rejected files, duplicates and label conflicts")
    if rejected.empty and conflicts.empty and s.duplicates.empty:
        st.caption("Every uploaded file was ingested; no duplicates, no label conflicts.")
        return
    if not rejected.empty:
        st.markdown(f"**{len(rejected)} rejected file(s)** — each with its reason:")
        st.dataframe(rejected, hide_index=True, width="stretch")
    if not s.duplicates.empty:
        st.markdown(f"**{s.duplicate_files} duplicate cop{'ies' if s.duplicate_files != 1 else 'y'}** — the same content under one label, analysed once:")
        shown = s.duplicates.assign(paths=s.duplicates["paths"].map(" = ".join), clip_hash=s.duplicates["clip_hash"].str[:12])
        st.dataframe(shown[["paths", "label", "files", "clip_hash"]], hide_index=True, width="stretch",
                     column_config={"paths": st.column_config.TextColumn("files with the same content", width="large"),
                                    "clip_hash": "content hash (first 12)"})
    if not conflicts.empty:
        st.markdown("**Label conflicts** — the same content under both labels:")
        st.dataframe(conflicts, hide_index=True, width="stretch")
