"""Page scaffolding: settings, workspace, dataset picker, job progress panel, cache panel."""

from __future__ import annotations

import os
import re
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.runtime.settings import Settings
from core.runtime.store import Workspace


@st.cache_resource(max_entries=1)
def _settings(env_workspace: str | None) -> Settings:
    return Settings.from_env(env_workspace)


def settings() -> Settings:
    return _settings(os.environ.get("OVERHEARD_WORKSPACE"))


def workspace() -> Workspace:
    return Workspace(settings().workspace)


def page_setup(title: str, icon: str = "🎧") -> Workspace:
    """First call of every page: config, sidebar, and the demo on a fresh workspace."""
    st.set_page_config(page_title=f"{title} · Overheard", page_icon=icon, layout="wide")
    with st.sidebar:
        _navigation()
    ws = workspace()
    if ws.datasets().query("status == 'ready'").empty and os.environ.get("OVERHEARD_AUTO_DEMO", "1") != "0":
        _demo_load(ws)
    with st.sidebar:
        st.caption(f"Workspace: `{ws.root}`")
    return ws


_APP_ROOT = Path(__file__).resolve().parents[2]


def _navigation() -> None:
    """The page list, drawn here because Streamlit's own (switched off in
    ``.streamlit/config.toml``) names the home page after its file, "app", until a script
    run could relabel it."""
    links = [("app.py", "Home", ":material/home:")]
    for page in sorted((_APP_ROOT / "pages").glob("*.py")):
        links.append((f"pages/{page.name}", re.sub(r"^\d+_", "", page.stem).replace("_", " "), None))
    try:
        for path, label, icon in links:
            st.page_link(path, label=label, icon=icon)
    except StreamlitAPIException:
        return  # a page run on its own (AppTest of one file) has no other pages to link to
    st.divider()


def _demo_load(ws: Workspace) -> None:
    """The demo datasets of a fresh workspace, loaded by a background job (started once:
    datasets the user deleted later are not loaded again); its progress meanwhile."""
    from core.pipeline import DEMO_DATASETS, demo_root
    from core.runtime import jobs

    missing = [n for n in DEMO_DATASETS if not (demo_root() / n).exists()]
    if missing:
        st.warning(f"demo dataset folder {demo_root() / missing[0]} is missing; run `overheard demo build-corpus`")
        return
    earlier = jobs.jobs(ws, kind="demo", limit=1)
    job_id = jobs.submit(ws, "demo", {"names": list(DEMO_DATASETS)}) if earlier.empty else str(earlier.iloc[0]["id"])
    row = jobs.job(ws, job_id)
    if row["status"] in ("queued", "running"):
        st.info("Loading the built-in demo datasets in the background; the pages fill in when it is done.", icon="⏳")
    if row["status"] != "done":
        job_panel(ws, job_id)


def empty_state(message: str) -> None:
    st.info(message, icon="ℹ️")


def dataset_picker(ws: Workspace, *, key: str = "dataset", label: str = "Dataset") -> str | None:
    """A selectbox over ready datasets, remembered across pages."""
    df = ws.datasets()
    names = df[df["status"] == "ready"]["name"].tolist()
    if not names:
        empty_state("No dataset yet: upload one on the Dataset page, or run `overheard demo`.")
        return None
    current = st.session_state.get("_dataset")
    if current is None and st.query_params.get("dataset") in names:
        current = st.query_params["dataset"]  # a reload, a bookmark or a shared link
    # a dataset still being ingested stays the choice: it is selected once it is ready
    pending = current if current is not None and current not in names and current in df["name"].tolist() else None
    if current in names:
        st.session_state[key] = current  # the dataset chosen on another page, or just ingested
    elif st.session_state.get(key) not in names:
        st.session_state[key] = names[0]
    name = st.selectbox(label, names, key=key, on_change=lambda: st.session_state.update(_dataset=st.session_state[key]))
    if pending is not None and st.session_state.get("_dataset") == pending:
        st.caption(f"{pending!r} is being ingested: it is shown here once it is ready.")
        return name
    st.session_state["_dataset"] = name
    st.query_params["dataset"] = name  # the choice lives in the URL
    return name


@st.fragment(run_every=1.0)
def _live_progress(ws: Workspace, job_id: str) -> None:
    from core.runtime import jobs

    row = jobs.job(ws, job_id)
    if row["status"] not in ("queued", "running"):
        st.rerun()
    total = int(row["total"] or 0)
    done = int(row["progress"] or 0)
    frac = done / total if total else 0.0
    st.progress(min(frac, 1.0), text=f"{row['kind']} job {row['status']}: {done}/{total} {row['message'] or ''}")
    if st.button("Cancel", key=f"cancel-{job_id}"):
        jobs.cancel(ws, job_id)


def job_panel(ws: Workspace, job_id: str | None) -> dict | None:
    """Progress of a background job (refreshed every second while it runs).

    Returns the job row (status, run_id, error) or None.
    """
    from core.runtime import jobs

    if not job_id:
        return None
    try:
        row = jobs.job(ws, job_id)
    except KeyError:
        return None
    status = row["status"]
    total = int(row["total"] or 0)
    done = int(row["progress"] or 0)
    if status in ("queued", "running"):
        # A fragment refreshes the progress alone, so the rest of the page renders fully
        # (no greyed results of an earlier selection stay below it); when the job ends it
        # reruns the whole page, which then shows the new results.
        _live_progress(ws, job_id)
    elif status == "failed":
        st.error(f"Job failed: {row['error']}")
        with st.expander("Log"):
            st.code("\n".join(jobs.job_log(ws, job_id)))
    elif status == "stalled":
        mins = float(row.get("silent_s") or 0) / 60
        st.warning(f"Job {job_id} has not reported for {mins:.0f} min (last: {done}/{total} {row['message'] or ''}); "
                   "its worker looks hung. Stop it and resume: finished batches are cached.")
        if st.button("Stop the worker", key=f"stop-{job_id}"):
            jobs.stop(ws, job_id)
            st.rerun()
    elif status == "interrupted":
        st.warning(f"Job {job_id} was interrupted at {done}/{total}; finished batches are cached.")
        if st.button("Resume", key=f"resume-{job_id}"):
            import core.pipeline  # noqa: F401  (registers the job kinds the worker runs)

            jobs.resume(ws, job_id)
            st.rerun()
    elif status == "cancelled":
        st.info("Job cancelled; finished batches are cached and a new run will reuse them.")
    return row


def failed_clips(result: dict) -> None:
    """The clips a run could not score, each with its reason (never silently dropped)."""
    failed = result.get("failed_clips") or []
    if not failed:
        return
    import pandas as pd

    with st.expander(f"⚠ {len(failed)} clip(s) could not be scored and are left out of this run", expanded=False):
        cols = [c for c in ("path", "clip_hash", "condition", "reason") if any(c in f for f in failed)]
        st.dataframe(pd.DataFrame(failed)[cols], hide_index=True, width="stretch")


def record_details(run: dict) -> None:
    """The run record's detail fields (:mod:`core.records`), labelled as the CLI and the
    report label them."""
    import pandas as pd

    from core.records import RECORDS

    if run.get("kind") not in RECORDS:
        return
    rows = RECORDS.get(run["kind"]).rows(run["result"])
    if rows:
        with st.expander("Details of this run", expanded=False):  # a static table: long values wrap, never cut
            st.table(pd.DataFrame(rows, columns=["", "value"]), hide_index=True)


def blind_verdict_line(ws: Workspace, run: dict) -> None:
    """The verdict of the blind baseline a run was compared with (its ``refs``, never a newer
    one), linked to the Blind Baseline page; when none was run, say so and where to run it."""
    from urllib.parse import quote

    from core.mia.links import blind_link

    link = blind_link(ws, run)
    page = f"[Blind Baseline](/Blind_Baseline?dataset={quote(str(run['dataset']))})"
    if link.ref.status == "deleted":
        st.warning(link.describe() + ".")
    elif link.verdict is not None:
        newer = f" (a newer blind run `{link.ref.newer}` exists)" if link.ref.newer else ""
        st.caption(f"Blind baseline checked ({page}): run `{link.run_id}`{newer} · {link.verdict.level}: {link.verdict.sentence}")
    else:
        st.caption(f"No blind baseline had been run on this dataset when this run was made: run one on the {page} page to "
                   "know whether members and non-members differ without the model, which would inflate this result.")


def inference_caption(inf: dict, cfg: dict) -> str:
    """How a cross-validated AUC's folds, interval and p-value were made, in one line."""
    if not inf:
        return f"{cfg.get('n_boot', '?')} bootstrap resamples for the intervals (refits not included)"
    folds = inf.get("folds", {})
    grouping = folds.get("grouping", "none")
    g = f"grouped by {grouping} ({folds.get('n_groups')} groups)" if grouping != "none" else "ungrouped"
    perm = f"{inf['n_perm']} label permutations" if inf.get("n_perm") else "no permutations"
    return f"{g} · {perm} · interval: {inf.get('ci_method', 'bootstrap')}"


@st.cache_data(ttl=30, max_entries=8, show_spinner=False)
def _dataset_cache(root: str, dataset: str, n_items: int):
    # reading each evidence file's header costs a file open per cached clip: measured at most
    # every 30 s per dataset rather than on every rerun of the page
    from core.pipeline.common import cache_overview

    return cache_overview(Workspace(root), dataset)


def cache_panel(ws: Workspace, dataset: str | None = None) -> None:
    """Cache size per model and feature set, with a guarded clear button (the cache never
    evicts on its own); with ``dataset``, only what is cached for that dataset's clips."""
    from core.pipeline.common import cache_overview, dataset_clips
    from core.runtime.cache import clear_cache

    df = cache_overview(ws) if dataset is None else _dataset_cache(str(ws.root), dataset, len(ws.items(dataset)))
    total = float(df["bytes"].sum()) if not df.empty else 0.0
    title = "Cache" if dataset is None else "Cached evidence and features of these clips"
    with st.expander(f"{title}: {total / 1e6:.1f} MB", expanded=False):
        if df.empty:
            st.caption(f"Empty. Evidence and features are cached in `{ws.cache_dir}` as audits run.")
            return
        st.dataframe(df.assign(MB=(df["bytes"] / 1e6).round(2)).drop(columns="bytes"), hide_index=True, width="stretch",
                     column_config={"name": "fingerprint / feature set", "used_by": "targets"})
        st.caption("Per-clip evidence and features, reused by every later run. Clearing keeps all runs; "
                   "a later audit recomputes what it needs."
                   + ("" if dataset is None else " Only this dataset's clips are counted and cleared (variants made for "
                      "disentanglement are not; the Home page clears everything)."))
        choices = ["everything"] + [f"{r.part}/{r.name}" + (f" ({r.used_by})" if r.used_by else "") for r in df.itertuples()]
        pick = st.selectbox("Clear", choices, key="cache-clear-pick")
        sure = st.checkbox("I understand the next audits recompute this", key="cache-clear-sure")
        if st.button("Clear cache", disabled=not sure, key="cache-clear"):
            clips = dataset_clips(ws, dataset)
            if pick == "everything":
                freed = clear_cache(ws.cache_dir, clips=clips)
            else:
                part, _, rest = pick.partition("/")
                freed = clear_cache(ws.cache_dir, part, rest.split(" ", 1)[0], clips=clips)
            _dataset_cache.clear()
            st.success(f"Freed {freed / 1e6:.1f} MB.")
