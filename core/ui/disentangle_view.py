"""Widgets of the Disentanglement page."""

from __future__ import annotations

import json

import streamlit as st

from core.ui.export import show_figure

from core.data.audio import wav_bytes
from core.data.spectral import log_mel
from core.pipeline.disentangle import render_variant
from core.runtime.store import Workspace
from core.ui.common import inference_caption, settings
from core.viz import dataset as dfigs
from core.viz.disentangle import condition_bars


def results(result: dict) -> None:
    from core.ui.mia_view import transcripts_caption

    details = result["details"]
    for w in result.get("warnings", []):
        st.warning(w)
    transcripts_caption(result, language=False)  # the run's caption names the language
    show_figure(condition_bars(details), key="dis-bars", caption=(
        "MIA AUC with the audio replaced. If the AUC collapses to ~0.5 under silence, noise and resynthesis, "
        "what the model remembers is the binding of this recording to its content, not the words alone."
    ))
    rows = [{"condition": c, "MIA AUC": d["auc"], "95% interval": f"[{d['auc_ci'][0]:.3f}, {d['auc_ci'][1]:.3f}]" if None not in d["auc_ci"] else "n/a",
             "p (AUC > 0.5)": d.get("auc_p_value"), "realizations": d["realizations"]}
            | ({"uncalibrated AUC": d["uncalibrated"]["auc"]} if d.get("uncalibrated") else {})
            for c, d in details.items() if "auc" in d]
    if rows:
        st.dataframe(rows, hide_index=True, width="content", column_config={
            "MIA AUC": st.column_config.NumberColumn(format="%.3f"), "p (AUC > 0.5)": st.column_config.NumberColumn(format="%.3f",
            help="Label-permutation test of the whole cross-validated procedure; empty for runs made before p-values were stored")})
        first = next(d for d in details.values() if "auc" in d)
        st.caption("Each condition: " + inference_caption(first.get("inference", {}), first) + ".")
    for cond, d in details.items():
        if "skipped" in d:
            st.warning(f"{cond}: skipped — {d['skipped']}")
        c = d.get("consistency")
        if c and "mean_clap" in c:
            st.caption(
                f"{cond}: mean CLAP similarity of the resynthesis to its caption {c['mean_clap']:.2f} "
                f"(the original clips: {c['original_mean_clap']:.2f}); {c['flagged']} clip(s) below {c['min_clap']:.2f} "
                "flagged as not carrying the caption's content"
                + (f", {c['dropped']} dropped." if c["dropped"] else " (kept).")
            )
        elif c:
            st.caption(
                f"{cond}: the audited model's transcription of the resynthesis has a mean word error rate of "
                f"{c['mean_wer']:.0%}; {c['flagged']} clip(s) above {c['max_wer']:.0%} flagged as not carrying the same words"
                + (f", {c['dropped']} dropped." if c["dropped"] else " (kept).")
            )


def variant_options_form(conditions: list[str], last_run: dict | None = None) -> tuple[dict, str | None]:
    """The options of the chosen conditions' generators, as each variant family declares
    them (:class:`core.disentangle.registry.VariantOption`), and the CLAP folder when a
    condition is checked by caption: (variant options, CLAP folder). Prefilled from the last
    run of this dataset and target (its id keys the inputs, so they follow when the user
    picks another dataset or target), else the options' defaults."""
    from core.disentangle import get_variant

    last = (last_run or {}).get("config", {})
    tag = (last_run or {}).get("id", "new")
    prev = last.get("variant_options", {})
    families = [get_variant(c) for c in conditions]
    offered = [(f, o) for f in families for o in f.option_specs]
    captioned = any(f.check == "caption" for f in families)
    options: dict = {}
    clap = None
    if not offered and not captioned:
        return options, clap
    with st.expander("How the conditions render", expanded=False):
        for fam, opt in offered:
            shown = prev.get(fam.name, {}).get(opt.name, opt.default)
            raw = st.text_input(opt.label or f"{fam.name}: {opt.name}", value="" if shown is None else str(shown),
                                help=opt.help or None, key=f"dis-{fam.name}-{opt.name}-{tag}").strip()
            if raw:
                try:
                    options.setdefault(fam.name, {})[opt.name] = opt.parse(raw)
                except ValueError as exc:
                    st.error(str(exc))
        if captioned:
            clap = st.text_input("CLAP model folder for the consistency check (optional)",
                                 value=last.get("clap_model") or "", key=f"dis-clap-{tag}").strip() or None
    return options, clap


@st.cache_data(max_entries=64, show_spinner="Rendering the variant…")
def _rendered(root: str, clip_hash: str, text: str, cond: str, options_json: str):
    """Variant audio for the listening panel, rendered once per clip and options (a
    text-to-audio resynthesis takes seconds)."""
    return render_variant(Workspace(root), clip_hash, text, cond, 0, options=json.loads(options_json) or None)


def listening_panel(ws: Workspace, run: dict, dataset: str, conditions: list[str], variant_options: dict | None = None) -> None:
    st.subheader("Listen side by side")
    clips = ws.analysis_clips(dataset)
    options = clips["path"].tolist()
    path = st.selectbox("Clip", options, key="dis-clip")
    row = clips[clips["path"] == path].iloc[0]
    sr = settings().analysis_sr
    result = run["result"]
    try:
        table = ws.run_table(run, "decoded")
        decoded = {c: table[c].dropna().to_dict() for c in table.columns}
    except KeyError:  # a run stored before decoded texts were kept
        decoded = {}
    shows_output = result.get("decoded_is_output")
    if shows_output is None:  # runs saved before the flag: the text is an output if it ever differs from the clip's
        shows_output = any(d.get(row["clip_hash"]) not in (None, row["text"]) for d in decoded.values())
    cols = st.columns(len(conditions))
    for col, cond in zip(cols, conditions):
        with col:
            st.markdown(f"**{cond}**")
            try:
                audio = _rendered(str(ws.root), row["clip_hash"], row["text"] or "", cond,
                                  json.dumps((variant_options or {}).get(cond) or {}, sort_keys=True))
            except (ValueError, FileNotFoundError, RuntimeError) as exc:
                st.caption(str(exc))
                continue
            st.audio(wav_bytes(audio, sr), format="audio/wav")
            st.plotly_chart(dfigs.spectrogram(log_mel(audio, sr=sr), sr, 160), width="stretch", key=f"dis-spec-{cond}")
            out = decoded.get(cond, {}).get(row["clip_hash"])
            if out is not None and shows_output:
                st.caption(f"model output: “{out}”")
    st.caption(f"transcript/caption: “{row['text']}” · label: {row['label']}")
