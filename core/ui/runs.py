"""Shared run/job plumbing for analysis pages: start a job, find it again after a reload."""

from __future__ import annotations

import json

import streamlit as st

import core.pipeline  # noqa: F401  (registers the job kinds the pages submit)
from core.runtime import jobs
from core.runtime.store import Workspace
from core.ui.common import job_panel


def target_picker(*, key: str = "target", families: tuple[str, ...] | None = None, dataset: str | None = None) -> str | None:
    """A selectbox over ready targets; zoo targets trained on ``dataset`` come first."""
    from core.targets import list_targets

    infos = [t for t in list_targets() if families is None or t.family in families]
    ready = [t for t in infos if t.available]
    if not ready:
        st.info("No built-in target is built yet: run `overheard zoo build`.")
        return None
    ready.sort(key=lambda t: t.detail.get("dataset") != dataset)
    specs = [t.spec for t in ready]
    desc = {t.spec: f"{t.spec} · {t.family}" + (f" · trained on {t.detail['dataset']}" if t.detail.get("dataset") else "") for t in ready}
    fits = {t.spec for t in ready if dataset is None or t.detail.get("dataset") in (None, dataset)}
    chosen = st.session_state.get("_target")
    if chosen is None and st.query_params.get("target") in specs:
        chosen = st.query_params["target"]  # a reload, a bookmark or a shared link
        st.session_state["_target_user"] = True
    if chosen not in specs or (chosen not in fits and not st.session_state.get("_target_user")):
        chosen = specs[0]
    st.session_state[key] = chosen
    spec = st.selectbox("Target model", specs, format_func=lambda s: desc.get(s, s), key=key,
                        on_change=lambda: st.session_state.update(_target=st.session_state[key], _target_user=True))
    st.session_state["_target"] = spec
    st.query_params["target"] = spec  # the choice lives in the URL
    return spec


def reference_picker(target: str | None, *, key: str = "references") -> tuple[str, ...]:
    """"Reference model(s)": ready targets of the audited target's family (never the target
    itself), plus local checkpoint folders typed one per line. Empty: no calibration."""
    from core.targets import list_targets

    infos = [t for t in list_targets() if t.available and t.spec != target]
    family = next((t.family for t in list_targets() if t.spec == target), None)
    specs = [t.spec for t in infos if family is None or t.family == family]
    chosen = st.multiselect("Reference model(s)", specs, key=key,
                            help="Models that did NOT train on the suspects (a base model, an earlier release, a model trained on "
                                 "public data). Each clip's indicators are calibrated against them; results are shown with and without.")
    folders = st.text_input("Reference checkpoint folder(s)", key=f"{key}-folders", placeholder="/path/to/model (one per line, optional)")
    return tuple(chosen) + tuple(line.strip() for line in folders.splitlines() if line.strip())


def active_job(ws: Workspace, kind: str, match: dict) -> str | None:
    """The newest job of ``kind`` whose params match ``match`` (survives reloads)."""
    df = jobs.jobs(ws, kind=kind, limit=20)
    for _, row in df.iterrows():
        params = json.loads(row["params"] or "{}")
        if all(params.get(k) == v for k, v in match.items()):
            return row["id"]
    return None


def run_controls(ws: Workspace, kind: str, params: dict, match: dict, *, label: str) -> dict | None:
    """A start button plus the progress panel of the matching job; returns the job row."""
    job_id = active_job(ws, kind, match)
    row = job_panel(ws, job_id) if job_id else None
    busy = row is not None and row["status"] in ("queued", "running")
    if st.button(label, type="primary", disabled=busy, key=f"start-{kind}"):
        jobs.submit(ws, kind, params)
        st.rerun()
    return row
