"""Widgets of the Disentanglement page."""

from __future__ import annotations

import streamlit as st

from core.ui.export import show_figure

from core.data.spectral import log_mel
from core.pipeline.disentangle import render_variant
from core.runtime.store import Workspace
from core.ui.common import settings
from core.viz import dataset as dfigs
from core.viz.disentangle import condition_bars


def results(result: dict) -> None:
    details = result["details"]
    show_figure(condition_bars(details), key="dis-bars", caption=(
        "MIA AUC with the audio replaced. If the AUC collapses to ~0.5 under silence, noise and resynthesis, "
        "what the model remembers is the binding of this recording to its content, not the words alone."
    ))
    for cond, d in details.items():
        if "skipped" in d:
            st.warning(f"{cond}: skipped — {d['skipped']}")
        c = d.get("consistency")
        if c:
            st.caption(
                f"{cond}: the audited model's transcription of the resynthesis has a mean word error rate of "
                f"{c['mean_wer']:.0%}; {c['flagged']} clip(s) above {c['max_wer']:.0%} flagged as not carrying the same words"
                + (f", {c['dropped']} dropped." if c["dropped"] else " (kept).")
            )


def listening_panel(ws: Workspace, result: dict, dataset: str, conditions: list[str]) -> None:
    st.subheader("Listen side by side")
    clips = ws.analysis_clips(dataset)
    options = clips["path"].tolist()
    path = st.selectbox("Clip", options, key="dis-clip")
    row = clips[clips["path"] == path].iloc[0]
    sr = settings().analysis_sr
    cols = st.columns(len(conditions))
    for col, cond in zip(cols, conditions):
        with col:
            st.markdown(f"**{cond}**")
            try:
                audio = render_variant(ws, row["clip_hash"], row["text"] or "", cond, 0)
            except ValueError as exc:
                st.caption(str(exc))
                continue
            st.audio(audio, sample_rate=sr)
            st.plotly_chart(dfigs.spectrogram(log_mel(audio, sr=sr), sr, 160), width="stretch", key=f"dis-spec-{cond}")
            out = result.get("decoded", {}).get(cond, {}).get(row["clip_hash"])
            if out is not None:
                st.caption(f"model output: “{out}”")
    st.caption(f"transcript/caption: “{row['text']}” · label: {row['label']}")
