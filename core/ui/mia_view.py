"""Widgets of the MIA Audit page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.ui.common import inference_caption
from core.ui.export import show_figure, table_downloads

from core.runtime.store import Workspace
from core.config import access_text
from core.stages import family_of
from core.viz import mia as figs


def mode_picker(ws: Workspace, dataset: str | None, access: str = "white-box") -> tuple[str, bool]:
    """The "text scored" choice, and whether it can run on ``dataset``: ``given`` needs a
    transcript for every clip, which is checked (and said) at selection time. At the
    outputs access level nothing is scored: the model's own answer is read."""
    from core.pipeline.mia import clips_without_text

    if access == "outputs":
        st.selectbox("Text scored", ["the model's answer"], disabled=True, key="mia-mode-outputs",
                     help="At the outputs access level the model's answers are compared with the transcripts; nothing is scored.")
        return "generated", True
    mode = st.selectbox("Text scored", ["generated", "given"], key="mia-mode",
                        help="generated: the model's own greedy output, re-scored (two-stage protocol); given: the clip's transcript.")
    missing = clips_without_text(ws, dataset) if dataset else []
    if missing:
        st.caption(f"⚠ {len(missing)} clip(s) have no transcript (e.g. {missing[0]}): 'given' is not available on this dataset.")
    if mode == "given" and missing:
        st.error(f"Mode 'given' scores each clip's transcript, but {len(missing)} clip(s) have none: "
                 + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "") + ". Choose 'generated' or add transcripts.")
        return mode, False
    return mode, True


def shown_run(ws: Workspace, dataset: str, target: str, access: str, mode: str, references: tuple[str, ...] = (),
              cross_fit: bool = False) -> dict | None:
    """The run the page shows: the newest at ``access`` in the chosen text ``mode`` (the
    mode is not read at the outputs level) against the chosen ``references`` (cross-fitted
    or not, as chosen); else the newest at ``access`` and ``mode`` whatever its
    references (:func:`core.ui.runs.run_for_references`), or the newest at ``access``:
    each fallback said so."""
    from core.stages import at_access
    from core.ui.runs import run_for_references

    def in_mode(c: dict) -> bool:
        return at_access(access)(c) and (access == "outputs" or c.get("mode", "generated") == mode)

    run = run_for_references(ws, "mia", dataset, target, in_mode, references, cross_fit, scope="in this mode", button="Run MIA")
    if run is not None:
        return run
    other = ws.latest_run("mia", dataset, target, where=at_access(access))
    if other is not None:
        st.info(f"No run in {mode} mode yet: showing the newest at the {access} level ({other['config'].get('mode', 'generated')} "
                "mode). Press **Run MIA** for this mode.")
    return other


def headline(result: dict) -> None:
    wrong = (result.get("transcript_check") or {}).get("warning")
    if wrong:  # above the numbers it puts in doubt
        st.warning(wrong[:1].upper() + wrong[1:], icon="⚠️")
    c = st.columns(4)
    lo, hi = result["auc_ci"]
    c[0].metric("Aggregate AUC", f"{result['auc']:.3f}", help="Out-of-fold AUC of the cross-validated logistic regression over all indicators.")
    p = result.get("auc_p_value")
    c[0].caption(f"95% CI {lo:.3f}–{hi:.3f}" + ("" if p is None else f" · permutation p = {p:.2g}"))
    t1 = result["tpr_at_1pct_fpr"]
    t01 = result["tpr_at_0.1pct_fpr"]
    c[1].metric("TPR @ 1% FPR", "n/a" if t1 is None else f"{t1:.1%}")
    c[1].caption(result["tpr_at_fpr_text"][0])
    c[2].metric("TPR @ 0.1% FPR", "n/a" if t01 is None else f"{t01:.1%}")
    c[2].caption(result["tpr_at_fpr_text"][1])
    c[3].metric("Clips", f"{result['n_members']} P / {result['n_nonmembers']} U")
    held = result.get("held_out_best") or {}
    c[3].caption(f"best single indicator: {result['best_indicator']} ({result['best_indicator_auc']:.3f} on these clips, descriptive)"
                 + ("" if held.get("auc") is None else f"; held out (chosen on training folds): {held['auc']:.3f}"))
    st.caption("Cross-validation: " + inference_caption(result.get("inference") or {}, result.get("config") or {}))
    transcripts_caption(result, language=False)  # the run's caption names the language
    for w in result.get("warnings", []):
        if w != wrong:
            st.warning(w)


def transcripts_caption(result: dict, *, language: bool = True) -> None:
    """How a speech model's own transcriptions measured up and (``language``) the language
    it decoded in; a warning when they look wrong is among the run's warnings."""
    from core.config import language_text

    text = language_text(result)
    parts = [text[:1].upper() + text[1:]] if language and text else []
    check = result.get("transcript_check") or {}
    if check.get("median_wer") is not None:
        members = check.get("median_wer_members")
        parts.append(f"median WER {check['median_wer']:.2f} on {check['n_wer']} non-members"
                     + ("" if members is None else f", {members:.2f} on {check['n_wer_members']} members"))
    if check:
        parts.append(f"{check['degenerate']} of {check['n']} degenerate")
    if parts:
        st.caption("Transcriptions: " + " · ".join(parts))


def access_comparison(ws: Workspace, run: dict) -> None:
    """The same model at the other access level, when a run of it exists: what white-box
    access adds over the outputs alone (or the reverse)."""
    from core.pipeline.di import latest_mia

    access = run["config"].get("access", "white-box")
    other = "white-box" if access == "outputs" else "outputs"
    twin = latest_mia(ws, run["dataset"], run["target"], access=other, references=tuple(run["config"].get("references") or ()))
    if twin is None:
        return
    r = twin["result"]
    lo, hi = r["auc_ci"]
    st.caption(f"Same model at the **{other}** level (run `{twin['id']}`, {access_text(twin['config'], family_of(run['target']))}): "
               f"AUC {r['auc']:.3f} (95% CI {lo:.3f}–{hi:.3f}) against {run['result']['auc']:.3f} here.")


def calibration_comparison(result: dict) -> None:
    """Calibrated and uncalibrated results side by side, and what the reference(s) bought."""
    from core.ui.shadow_view import shadow_cards_caption
    from core.viz.report import HELD_OUT_COLUMN, calibration_rows

    rows = calibration_rows(result)
    if not rows:
        return
    cal = result["calibration"]
    st.subheader("With and without the reference model(s)")
    # the references' names can be long paths (the caption below has them in full): the row
    # label keeps a fixed width so every column, the held-out best's included, stays in view
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"": st.column_config.TextColumn(width="small"), HELD_OUT_COLUMN: st.column_config.TextColumn(width="medium")})
    st.caption(f"Calibrated against {', '.join(cal['references'])} ({', '.join(cal['calibrations'])}); the headline above is the "
               "calibrated aggregate. The gain's interval and p-value compare the two aggregates on the same clips (DeLong's paired "
               "test, widened by each aggregate's refit noise: conservative). A reference must not have trained on the suspects: "
               "one that did cancels the signal it shares.")
    shadow_cards_caption(cal["references"], result.get("excluded_clips"), cal.get("cross_fit"))


def roc_and_scores(ws: Workspace, run: dict) -> None:
    from core.pipeline.mia import mia_scores

    result = run["result"]
    aucs = dict(result["indicators"])
    aucs["aggregate"] = result["auc"]
    roc = dict(result["roc"])
    if result.get("uncalibrated"):
        roc["uncalibrated aggregate"] = result["uncalibrated"]["roc"]["aggregate"]
        aucs["uncalibrated aggregate"] = result["uncalibrated"]["auc"]
    c1, c2 = st.columns(2)
    with c1:
        show_figure(figs.roc_figure(roc, aucs), key="mia-roc", caption="ROC per indicator (thin) and the cross-validated aggregate (thick); log FPR shows the low-FPR regime that matters for membership claims.")
    clips = mia_scores(ws, run)
    with c2:
        show_figure(figs.score_distributions(clips["score"].to_numpy(float), clips["label"].to_numpy(int), xlabel="out-of-fold membership probability"), key="mia-dist", caption="Aggregate scores by label: the more the two histograms separate, the stronger the per-sample signal.")


def indicator_table(result: dict) -> None:
    df = pd.DataFrame({"indicator": list(result["indicators"]), "AUC": list(result["indicators"].values())}).sort_values("AUC", ascending=False)
    with st.expander(f"All {len(df)} indicator AUCs (direction-aligned)"):
        st.dataframe(df, hide_index=True, width="stretch", height=300)


def per_sample(ws: Workspace, run: dict, dataset: str) -> None:
    from core.pipeline.mia import mia_scores

    st.subheader("Per-sample scores")
    clips = ws.analysis_clips(dataset).set_index("clip_hash")
    scores = mia_scores(ws, run)
    order = list(scores.index)
    df = pd.DataFrame({
        "clip_hash": order,
        "path": [clips.loc[h, "path"] if h in clips.index else "?" for h in order],
        "label": ["member" if v else "nonmember" for v in scores["label"]],
        "score": scores["score"].to_numpy(float),
        "decoded": scores["decoded"].fillna("").tolist(),
    }).sort_values("score", ascending=False)
    event = st.dataframe(df.drop(columns="clip_hash"), hide_index=True, width="stretch", height=280, on_select="rerun", selection_mode="single-row", key="mia-table")
    st.caption("Sorted by membership score (highest first). Select a row to listen.")
    table_downloads(df, key="mia-scores", name=f"{dataset}-mia-scores")
    rows = event.selection.rows if event is not None else []
    if rows:
        h = df.iloc[rows[0]]["clip_hash"]
        st.audio(ws.read_audio(h))
        if family_of(run["target"]) in ("autoregressive", "diffusion"):  # text-to-audio: the text is the prompt
            st.caption(f"caption: “{clips.loc[h, 'text']}”")
            if run["config"].get("access") == "outputs":
                _generation_player(ws, run, h)
        else:
            st.caption(f"text: “{clips.loc[h, 'text']}” · model output: “{df.iloc[rows[0]]['decoded']}”")


def _generation_player(ws: Workspace, run: dict, clip_hash: str) -> None:
    """One of the run's generations from the selected clip's caption, drawn again from its
    seed on request (the model runs here), with its similarities to the clip."""
    from core.data.audio import wav_bytes
    from core.pipeline.outputs import generation_of

    k = int(run["config"].get("n_generations", 4))
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    i = int(c1.number_input("Generation", min_value=1, max_value=k, value=1, key=f"gen-index-{run['id']}"))
    key = f"gen-{run['id']}-{clip_hash}-{i}"
    if c2.button(f"Play generation {i} of {k} from this caption", key=f"gen-go-{run['id']}"):
        with st.spinner("Generating from the caption (same seed as the run)…"):
            try:
                audio, sr, sim = generation_of(ws, run, clip_hash, i - 1)
            except Exception as exc:  # noqa: BLE001 - shown in one line; the page goes on
                st.error(f"Could not generate: {exc}")
                return
        st.session_state[key] = (wav_bytes(audio, sr), sim)
    if key in st.session_state:
        data, sim = st.session_state[key]
        st.audio(data)
        st.caption(f"Generation {i} of {k}, drawn from the run's seed: mel_dist {_num(sim.get('mel_dist'))} (lower is closer), "
                   f"chroma_sim {_num(sim.get('chroma_sim'))} against the clip above.")


def blind_scatter(ws: Workspace, run: dict) -> None:
    """MIA scores against the scores of the blind run this MIA run was compared with
    (its ``refs``), whichever blind run is newest now."""
    from core.mia.links import blind_link
    from core.pipeline.mia import mia_scores

    clips = mia_scores(ws, run)
    link = blind_link(ws, run, clips["score"])
    if link.ref.status == "none":
        st.caption("Run the blind baseline on this dataset, then this MIA, to see how MIA scores correlate with model-free scores.")
        return
    if link.ref.status == "deleted":
        st.warning(link.describe())
        return
    if link.ref.newer:
        st.info(link.describe() + ": run the MIA again to compare with it.")
    corr = link.correlation
    labels = clips["label"].reindex(link.scores.index).to_numpy(int)
    show_figure(figs.score_scatter(link.blind_scores.to_numpy(float), link.scores.to_numpy(float), labels, xlabel=f"blind score (no model; run {link.run_id})", ylabel="MIA score"),
                key="mia-blind", caption=f"Pearson r = {_num(corr['pearson_r'])}, Spearman ρ = {_num(corr['spearman_rho'])}: a strong correlation means the MIA may only detect the data shift the blind baseline sees.")


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
