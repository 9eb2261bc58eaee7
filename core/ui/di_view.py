"""Widgets of the Dataset Inference page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.di.scorers import scorer_reads, split_grouping
from core.stages import DIRunConfig
from core.stats import format_p
from core.ui.export import show_figure, table_downloads

from core.viz import di as figs

ALPHAS = (0.05, 0.01, 0.001)


def controls() -> tuple[str, float, bool]:
    """Scorer, alpha and whether to compare every scorer (preset to the config's defaults)."""
    from core.di import get_scorer, scorer_names

    names = scorer_names()
    default = DIRunConfig()
    c1, c2, c3 = st.columns([2, 1, 1])
    scorer = c1.selectbox(
        "Scorer", names, index=names.index(default.scorer), key="di-scorer",
        format_func=lambda n: n, help="\n\n".join(f"**{n}**: {get_scorer(n).description}" for n in names),
    )
    alpha = c2.selectbox("α (significance level)", ALPHAS, index=ALPHAS.index(default.alpha), key="di-alpha", format_func=lambda a: f"{a:g}")
    compare = c3.checkbox("Compare all scorers", value=default.compare, key="di-compare", help="Also run every scorer and show a comparison table (slower).")
    return scorer, alpha, compare


def plan_control() -> int | None:
    """The known non-members the planner plans for (None: the run's own)."""
    c, _ = st.columns([1, 2])
    n = c.number_input("Plan for N known non-members (0: this run's)", min_value=0, value=0, step=10, key="di-plan-nonmembers",
                        help="How many suspects the test needs if the study has N known non-members in all (0: as many as "
                             "this run has). The planner's answer is under the flagged clips.")
    return int(n) if n and n >= 2 else None


def upstream_notice(ws, run: dict) -> None:
    """The runs this DI run used (its ``refs``): say so when the MIA run it read is deleted
    or is no longer the one a new run would read, and show the verdict of the blind run it
    was checked against (never a newer one)."""
    from core.pipeline.di import latest_mia
    from core.ui.common import blind_verdict_line

    ref = ws.run_ref(run, "mia")
    mode = run["result"].get("mia_mode", run["config"].get("mia_mode", "generated"))
    current = latest_mia(ws, run["dataset"], run["target"], mode, tuple(run["config"].get("references") or ()),
                         run["result"].get("access", "white-box"), run["config"].get("target_options") or None)
    if ref.status == "deleted":
        st.warning(ref.describe() + ".")
    if current is None:
        st.warning("The dataset changed since the MIA run this result reads: press **Run dataset inference** to redo both.")
    elif current["id"] != ref.run_id:
        st.info(f"A newer MIA run (`{current['id']}`) exists: press **Run dataset inference** to read it.")
    blind_verdict_line(ws, run)


def verdict(result: dict) -> None:
    """The outcome in one sentence, in the verdict's own style (blue: evidence of use; green:
    none; the report's too: red is for errors), then every caveat."""
    import html

    from core.viz.theme import verdict_style

    text = result.get("headline") or result["verdict"]
    st.markdown(f'<div class="di-verdict" style="{verdict_style(bool(result["rejected"]))}">{html.escape(text)}</div>',
                unsafe_allow_html=True)
    for w in result.get("warnings", []):
        st.warning(w)
    with st.expander("Full verdict with its caveats (for a report)"):
        st.write(result["verdict"])


def metrics(result: dict) -> None:
    c = st.columns(4)
    c[0].metric("p-value", format_p(result["p_value"]), help="One-sided Welch t-test, H1: the suspects score higher than the non-members.")
    c[0].caption(f"t = {result['t_statistic']:.2f}, df = {result['df']:.0f}, α = {result['alpha']:g}")
    from core.di.curve import suspects_needed
    from core.records import over_splits

    needed = suspects_needed(result)  # both numbers, each named: they answer two questions
    c[1].metric("Suspects needed", " · ".join(v for v, _ in needed),
                help="Smallest number of tested suspects from which the median p-value stays below α: against all held-out "
                     "non-members, then with as many non-members as suspects.")
    spread = result.get("needed_over_splits")
    c[1].caption("; ".join(f"{v} {what}" for v, what in needed)
                 + f" ({result['n_tested_suspects']} suspects tested vs {result['n_tested_nonmembers']} non-members)"
                 + (f". Over other splits: {over_splits(spread)}" if spread else ""))
    rate = result.get("null_rejection_rate")
    c[2].metric("Null rejection rate", "not run" if rate is None else f"{rate:.1%}", help="Share of non-member-only runs the test rejected; it should be about α.")
    if result.get("null_ci"):
        lo, hi = result["null_ci"]
        nc = result["null_check"]
        c[2].caption(f"95% CI {lo:.1%}–{hi:.1%} over {nc['n_resamples']} runs (target ≈ {result['alpha']:g})")
    mia_auc = result.get("mia_auc")
    c[3].metric("Per-sample MIA AUC", "n/a" if mia_auc is None else f"{mia_auc:.3f}", help="Aggregate AUC of the MIA run these indicators come from: DI can succeed where this is near 0.5.")
    c[3].caption(f"scorer {result['scorer']} over {scorer_reads(result['scorer'], result.get('indicators', []))}; "
                 f"{split_grouping(result['scorer'], result.get('grouping'))}")


def which(ws, run: dict) -> None:
    """Which suspects were used and how many: the share with its bounds, the flagged clips
    (each playable beside its score, p and q), the planner; the blind verdict beside them
    when it is not "fair"."""
    from core.di.which import flagged_table

    w = run["result"].get("which")
    if not w:
        return
    st.subheader("Which of the suspects, and how many")
    share, flags = w["share"], w["flags"]
    c = st.columns(3)
    c[0].metric("Share used, at least", f"{share['lower']:.0%}", help=f"{share['level']:.0%} lower confidence bound; assumes "
                f"only that the known non-members are exchangeable with the unused suspects.")
    c[1].metric("Share used, estimate", f"{share['estimate']:.0%}", help=f"Interval [{share['lower']:.0%}, {share['upper']:.0%}]: "
                + share["assumption"] + ".")
    c[2].metric(f"Clips flagged at FDR {flags['q']:.0%}", str(flags["n_flagged"]),
                help="Conformal p-value of each suspect against its fold's tested non-members, Benjamini-Hochberg over all: "
                     "on average at most this share of the flagged clips were not used.")
    st.markdown(w["sentence"][0].upper() + w["sentence"][1:] + ".")
    if w.get("caveat"):
        st.warning(w["caveat"][0].upper() + w["caveat"][1:] + ".")
    st.caption(f"Planner: {w['plan_sentence']}. Assumes {share['assumption']}.")
    table = flagged_table(ws, run)
    if table.empty:
        return
    flagged = table[table["flagged"]]
    with st.expander(f"{len(flagged)} flagged clip(s), most significant first", expanded=bool(len(flagged))):
        if flagged.empty:
            st.caption("No clip is flagged at this FDR: the planner says how many known non-members flagging needs.")
        event = st.dataframe(table.reset_index().drop(columns="clip_hash"), hide_index=True, width="stretch", height=260,
                             on_select="rerun", selection_mode="single-row", key="di-flags")
        st.caption("Every tested suspect, flagged ones first. Select a row to listen.")
        table_downloads(table.reset_index(), key="di-flags-csv", name=f"{run['dataset']}-di-flags")
        rows = event.selection.rows if event is not None else []
        if rows:
            row = table.iloc[rows[0]]
            st.audio(ws.read_audio(table.index[rows[0]]))
            st.caption(f"{row['path']} · score {row['score']:.3f} · p {row['p']:.3g} · q {row['q']:.3g}")


def curve(result: dict) -> None:
    fig = figs.pvalue_curve_figure(result["curve"], alpha=result["alpha"], min_suspects=result.get("min_suspects"), null_curve=result.get("null_curve"))
    show_figure(fig, key="di-curve", caption=(
        "Median p-value (line) and 10–90% band over resampled suspect subsets of each size; where the suspects' curve "
        "stays under the dashed α line, that many suspects suffice (★). The grey curve uses non-members as suspects "
        "and should stay above α."
    ))


def score_distributions(ws, run: dict) -> None:
    from core.pipeline.di import di_scores

    p_scores, u_scores = di_scores(ws, run)
    fig = figs.di_score_distributions(p_scores, u_scores, scorer=run["result"]["scorer"])
    show_figure(fig, key="di-scores", caption="Scores of the clips the t-test compared (means dashed): the test asks whether the suspects' mean is higher; a small shift over many clips is enough.")


def calibration_comparison(result: dict) -> None:
    """The test on calibrated indicators beside the same test on uncalibrated ones."""
    import pandas as pd

    from core.viz.report import di_calibration_rows

    rows = di_calibration_rows(result)
    if rows:
        st.subheader("With and without the reference model(s)")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        from core.viz.report import OVER_SPLITS

        st.caption("The verdict above uses the calibrated indicators. A reference must not have trained on the suspects."
                   + (" The median over splits redraws the clips a scorer fits or standardizes on, so one split's luck does not "
                      "decide the gain." if OVER_SPLITS in rows[0] else ""))
        from core.ui.shadow_view import shadow_cards_caption

        cal = result.get("calibration") or {}
        shadow_cards_caption(cal.get("references") or [], result.get("excluded_clips"), cal.get("cross_fit"))


def comparison(result: dict) -> None:
    rows = result.get("comparison")
    if not rows:
        st.caption("Tick **Compare all scorers** and run again to see every scorer side by side.")
        return
    st.subheader("Scorers compared")
    df = pd.DataFrame(rows)
    for c in ("null_rejection_rate", "null_ci_low", "null_ci_high"):
        if c in df:
            df[c] = df[c] * 100
    if "min_suspects" in df:  # in the words every other surface uses; blank where the scorer could not run
        from core.records import needed_text

        df["min_suspects"] = ["" if r.get("error") else needed_text(r.get("min_suspects")) for r in rows]
    cols = {
        "scorer": st.column_config.TextColumn("scorer"),
        "p_value": st.column_config.NumberColumn("p-value", format="%.2e"),
        "rejected": st.column_config.CheckboxColumn("p < α"),
        "min_suspects": st.column_config.TextColumn("suspects needed"),
        "null_rejection_rate": st.column_config.NumberColumn("null rejection (%)", format="%.1f"),
        "null_ci_low": st.column_config.NumberColumn("null 95% CI low (%)", format="%.1f"),
        "null_ci_high": st.column_config.NumberColumn("null 95% CI high (%)", format="%.1f"),
        "error": st.column_config.TextColumn("error"),
    }
    keep = [c for c in cols if c in df]
    st.dataframe(df[keep], hide_index=True, width="stretch", column_config={c: cols[c] for c in keep})
    st.caption(f"Each scorer on the same clips at α = {result['alpha']:g}: a useful scorer needs few suspects and keeps its null rejection rate near α.")
