"""Widgets of the Blind Baseline page: verdict, AUC per group, ROC, giveaways, blind score
histogram, cross-dataset matrix and the matching tool."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.ui.common import inference_caption
from core.ui.export import show_figure

from core.pipeline.blind import BlindRunConfig
from core.runtime.store import Workspace
from core.viz import blind as figs

ALL = "all"
_LEVEL = {"fair": "success", "shift": "warning", "confounded": "error"}


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}–{ci[1]:.2f}]"


def group_picker(default: tuple[str, ...]) -> list[str]:
    """The feature groups to run: every registered group whose libraries are installed,
    each described in the help by its registration."""
    from core.blind.registry import get_group, list_groups

    names = list_groups(available_only=True)
    return st.multiselect("Feature groups", names, default=[g for g in default if g in names], key="blind-groups",
                          help="; ".join(f"{g}: {get_group(g).description}" for g in names))


def verdict(result: dict) -> tuple[str, str]:
    """(Streamlit level, sentence) of :func:`core.blind.verdict.blind_verdict`, the rule
    every surface uses: "error" when confounded, "warning" for a weak shift, "success"
    when fair."""
    from core.blind.verdict import verdict_of_run

    v = verdict_of_run(result)
    return _LEVEL[v.level], v.sentence


def giveaway(result: dict) -> str | None:
    """The strongest giveaway of the combined model, as '(group) sentence'."""
    top = result.get("top_features") or []
    if not top:
        return None
    t = top[0]
    return f"{t['sentence']} ({t['group']} feature `{t['feature']}`)"


def headline(result: dict) -> None:
    level, text = verdict(result)
    getattr(st, level)(text)
    if level != "success":
        g = giveaway(result)
        if g:
            st.markdown(f"**Biggest giveaway:** {g}.")
    c = st.columns(4)
    c[0].metric("Blind AUC (all groups)", f"{result['auc'][ALL]:.3f}", help="Out-of-fold AUC of a cross-validated logistic regression on every chosen feature group.")
    p = (result.get("auc_p_value") or {}).get(ALL)
    c[0].caption(f"95% CI {result['auc_ci'][ALL][0]:.3f}–{result['auc_ci'][ALL][1]:.3f}" + ("" if p is None else f" · permutation p = {p:.2g}"))
    per_group = {g: a for g, a in result["auc"].items() if g != ALL}
    if per_group:
        top = max(per_group.values())
        best = [g for g, a in per_group.items() if a >= top - 0.005]
        # a tie is said as one; the group of the giveaway named above comes first
        lead = ((result.get("top_features") or [{}])[0]).get("group")
        best.sort(key=lambda g: g != lead)
        c[1].metric("Most revealing group" if len(best) == 1 else "Most revealing groups (tied)", " = ".join(best),
                    help="The feature group whose model alone separates the split best; groups within 0.005 AUC of it tie.")
        c[1].caption(f"AUC {top:.3f} {_ci(result['auc_ci'][best[0]])}" + (" each, within 0.005" if len(best) > 1 else ""))
    c[2].metric("Clips", f"{result['n_members']} P / {result['n_nonmembers']} U")
    cfg = result.get("config", {})
    inf = (result.get("inference") or {}).get(ALL, {})
    folds = inf.get("folds", {})
    c[3].metric("Cross-validation", f"{folds.get('n_folds', cfg.get('n_splits', '?'))} folds",
                help="Stratified folds; grouped by speaker or source when the clips have one, so no group is on both sides.")
    c[3].caption(inference_caption(inf, cfg))
    for w in [*result.get("warnings", []), *result.get("notes", [])]:
        st.warning(w)


def auc_and_roc(result: dict) -> None:
    c1, c2 = st.columns(2)
    with c1:
        show_figure(figs.auc_by_group(result["auc"], result["auc_ci"]), key="blind-auc", caption="Blind AUC per feature group with its 95% interval (refits included; the p-values are in the report and the CLI): a bar whose interval stays right of the dotted 0.5 line means that group alone tells members from non-members.")
    with c2:
        show_figure(figs.roc_by_group(result["roc"], result["auc"]), key="blind-roc", caption="Out-of-fold ROC per group (thin) and for all groups together (thick): the closer a curve hugs the top-left corner, the easier the split is to tell without the model.")


def giveaways(result: dict) -> None:
    st.subheader("What gives the split away")
    if result["auc_ci"][ALL][0] <= 0.5:
        st.info("No shift was detected, so these are the classifier's strongest weights on noise, not real differences.")
    options = [ALL, *[g for g in result.get("top_by_group", {})]]
    group = st.radio("Model", options, horizontal=True, format_func=figs.group_label, key="blind-giveaway-group")
    top = result["top_features"] if group == ALL else result["top_by_group"][group]
    if not top:
        st.info("No feature in this group carries weight.")
        return
    df = pd.DataFrame({
        "giveaway": [t["sentence"] for t in top],
        "feature": [t["feature"] for t in top],
        "group": [t["group"] for t in top],
        "weight": [t["coef"] for t in top],
    })
    st.dataframe(df, hide_index=True, width="stretch", column_config={"weight": st.column_config.NumberColumn(format="%+.2f")})
    st.caption("Features ranked by standardized logistic-regression weight (fitted on all clips; positive = pushes towards “member”). Sentences compare the medians of the two groups; correlated features share weight, so read the list as a whole.")


def score_histogram(ws: Workspace, run: dict) -> None:
    clips = ws.run_table(run, "clips")
    show_figure(figs.score_histogram(clips["score"].to_numpy(float), clips["label"].to_numpy(int)), key="blind-hist", caption="Per-clip blind score by label (out-of-fold, so no clip is scored by a model that saw it): overlapping histograms mean a fair comparison, separated ones mean a shift a model could exploit.")


# -- cross-dataset matrix ---------------------------------------------------------------


def crossdata(run: dict | None) -> None:
    if run is None:
        st.info("No cross-dataset matrix yet: choose which subsets to compare and press **Compute matrix**. It runs in the background.")
        return
    res = run["result"]
    st.plotly_chart(figs.cross_heatmap(res["auc"], res["datasets"], status=res["status"], shared=res.get("shared")), width="stretch", key="blind-cross")
    who = "members" if res["status"] == "member" else "non-members"
    st.caption(f"Each off-diagonal cell is the blind AUC of telling one dataset's {who} from another's ({', '.join(res['groups'])} features): white (0.5) means the collections look alike, dark means a domain shift. The diagonal is each dataset's own member-vs-non-member AUC.")
    cells = [c for c in res.get("cells", []) if c.get("auc") is not None]
    if cells and "p_value" in cells[0]:
        st.dataframe(pd.DataFrame([{
            "A": c["a"], "B": c["b"], "clips A / B": f"{c['n_a']} / {c['n_b']}", "blind AUC": round(c["auc"], 3),
            "95% interval": "–".join(f"{v:.2f}" for v in c["ci"]) if c.get("ci") else "",
            "permutation p": c.get("p_value"),
        } for c in cells]), hide_index=True, width="stretch")
        st.caption("Each cell's interval includes the refits and its p-value comes from refitting under permuted labels, as for the blind baseline: p < 0.05 means the two collections can be told apart without the model.")
    for n in res.get("notes", []):
        st.warning(n)
    st.caption(f"Run `{run['id']}` · {len(res['datasets'])} datasets · {run['provenance'].get('seconds') or 0:.0f} s")


# -- matching ---------------------------------------------------------------------------


def match_tool(ws: Workspace, dataset: str, config: BlindRunConfig) -> None:
    """Caliper, new name and a button that saves a propensity-matched subset, in a
    background job with progress; its report once done."""
    from core.runtime import jobs
    from core.ui.common import job_panel
    from core.ui.runs import active_job

    st.header("Matched subset")
    st.markdown("Keep only member/non-member pairs with nearly the same blind score, save them as a new dataset, and re-check.")
    m1, m2 = st.columns(2)
    caliper = m1.slider("Caliper (SD of the logit blind score)", 0.05, 1.0, 0.2, 0.05, key="caliper", help="Narrower keeps fewer, closer pairs; 0.2 is the usual choice (Austin 2011).")
    new_name = m2.text_input("New dataset name", value=f"{dataset}-matched", key=f"match-name-{dataset}").strip()
    job_id = active_job(ws, "match", {"dataset": dataset})
    row = job_panel(ws, job_id) if job_id else None
    busy = row is not None and row["status"] in ("queued", "running")
    if st.button("Build matched subset", key="match-go", disabled=busy):
        if not new_name or new_name in ws.dataset_names():
            st.error(f"Choose a new, unused dataset name (“{new_name}” is taken or empty).")
        else:  # a job: features of a large dataset may not be cached yet, and the page stays live
            jobs.submit(ws, "match", {"dataset": dataset, "new_name": new_name, "caliper": caliper, "config": config.to_dict()})
            st.rerun()
    matched = latest_match(ws, dataset)
    if matched is None:
        st.info("No matched subset built from this dataset yet.")
    else:
        match_report(matched)


def latest_match(ws: Workspace, dataset: str) -> dict | None:
    """The newest matching run built from ``dataset`` (survives reloads)."""
    for run_id in ws.runs("match")["id"]:
        run = ws.load_run(run_id)
        if run["config"].get("source") == dataset:
            return run
    return None


def match_report(run: dict) -> None:
    res = run["result"]
    m = res["matching"]
    before, after = res["before"], res["after"]
    c = st.columns(3)
    c[0].metric("Pairs kept", f"{m['n_pairs']}", help="Each pair is one member and one non-member whose blind scores lie within the caliper.")
    c[0].caption(f"{m['members_kept']:.0%} of {m['n_members_before']} members, {m['nonmembers_kept']:.0%} of {m['n_nonmembers_before']} non-members")
    c[1].metric("Blind AUC before", f"{before['auc'][ALL]:.3f}")
    c[1].caption(f"95% CI {before['auc_ci'][ALL][0]:.3f}–{before['auc_ci'][ALL][1]:.3f}")
    if after is not None:
        c[2].metric("Blind AUC after", f"{after['auc'][ALL]:.3f}", delta=f"{after['auc'][ALL] - before['auc'][ALL]:+.3f}", delta_color="inverse")
        c[2].caption(f"95% CI {after['auc_ci'][ALL][0]:.3f}–{after['auc_ci'][ALL][1]:.3f} · held-out re-check",
                     help="Estimated on clips not used to select them: the clips are split in three; one third fits the propensity "
                          "model, the other two are matched on its scores and each is scored by a classifier fitted on the other; "
                          "the AUC is averaged over the three rotations.")
    else:
        c[2].metric("Blind AUC after", "n/a")
        c[2].caption("too few pairs for a held-out re-check")
    for w in res.get("warnings", []):
        st.warning(w)
    if after is None and m["n_pairs"] >= 2:
        st.info(f"The matched subset was saved, but {m['n_pairs']} pairs are too few to re-check it on held-out clips "
                "(each third of the clips needs at least two pairs): audit it with this caveat, or bring more clips.")
    elif after is None:
        st.error(
            f"No usable matched subset: only {m['n_pairs']} member/non-member pairs have blind scores within "
            f"{m['caliper_sd']:.2f} SD of each other, because the features separate the classes almost perfectly. "
            "Widen the caliper, or report this split as confounded."
        )
    show_figure(figs.match_chart(before, after), key="blind-match", caption="Blind AUC per group on the full dataset (grey) and on the matched subset (green), with 95% intervals: after matching, intervals that include 0.5 mean the features no longer tell the pairs apart.")
    if after is not None and after["auc_ci"][ALL][0] > 0.5:
        st.warning("The matched subset still carries a detectable shift: try a narrower caliper, or audit it with this caveat.")
    st.caption(f"Saved as dataset **{res['dataset']}** ({res['n_clips']} clips) · run `{run['id']}` · caliper {m['caliper_sd']:.2f} SD of the logit blind score")
