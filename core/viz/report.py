"""One self-contained HTML audit report over the latest runs of a dataset (and target).

Everything is embedded: plotly.js once, every figure inline, provenance tables, so the
file opens offline and another auditor can reproduce each number from its run record.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from core import __version__
from core.config import ACCESS_LEVELS, at_access, decoding_text, di_mia_config
from core.di.curve import DEFAULT_SPLITS, suspects_needed
from core.di.scorers import split_grouping
from core.mia.calibration import gain_interval_text, gain_text, suspects_gain_text
from core.mia.links import BlindLink, blind_link
from core.records import needed_text, record_of
from core.runtime.store import Workspace
from core.viz import blind as vblind
from core.viz import di as vdi
from core.viz import disentangle as vdis
from core.viz import mia as vmia
from core.viz.theme import verdict_style

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:0}h2{border-bottom:2px solid #0072B2;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f6f8}.warn{background:#fff4e5;border-left:4px solid #E69F00;padding:.5em .8em;margin:.5em 0}
.ok{background:#eef7f1;border-left:4px solid #009E73;padding:.5em .8em;margin:.5em 0}
.bad{background:#fdecea;border-left:4px solid #D55E00;padding:.5em .8em;margin:.5em 0}
.caption{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
details{margin:.5em 0}
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _fig(fig: go.Figure, caption: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}) + f'<p class="caption">{_esc(caption)}</p>'


def _table(rows: list[tuple[str, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows) + "</table>"


def _details(kind: str, result: dict) -> str:
    """The record's detail fields (:mod:`core.records`), as every surface shows them."""
    rows = record_of(kind).rows(result)
    return "<h3>Details</h3>" + _table(rows) if rows else ""


def _warnings(ws: list[str]) -> str:
    return "".join(f'<div class="warn">⚠ {_esc(w)}</div>' for w in ws)


def _failed(r: dict) -> str:
    """The clips a run could not score, with their reasons."""
    failed = r.get("failed_clips") or []
    if not failed:
        return ""
    return (f"<details open><summary>{len(failed)} clip(s) could not be scored and are left out</summary>"
            "<table><tr><th>path</th><th>clip</th><th>reason</th></tr>" + "".join(
                f"<tr><td>{_esc(f.get('path', ''))}</td><td><code>{_esc(f['clip_hash'][:12])}</code></td><td>{_esc(f['reason'])}</td></tr>"
                for f in failed) + "</table></details>")


def _fmt_p(p) -> str:
    return "not computed (run made without permutations)" if p is None else f"{p:.3g}"


def _inference_note(inf: dict | None) -> str:
    """Which folds, which interval method and how many permutations a CV AUC used."""
    if not inf:
        return '<p class="caption">Interval: stratified bootstrap of fixed out-of-fold scores (refits not included); no permutation p-value.</p>'
    folds = inf.get("folds", {})
    grouping = folds.get("grouping", "none")
    g = f"stratified group folds by {grouping} ({folds.get('n_groups')} groups)" if grouping != "none" else "stratified folds (no grouping)"
    return (f'<p class="caption">{folds.get("n_folds")} {_esc(g)}; interval: {_esc(inf.get("ci_method"))}; '
            f'p-value from {inf.get("n_perm")} label permutations of the whole cross-validated procedure '
            f'({_esc(inf.get("permutation", ""))}).</p>')


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "n/a"


def _provenance(run: dict) -> str:
    p = run["provenance"]
    rows = [
        ("run id", run["id"]), ("created", p.get("created")), ("dataset fingerprint", p.get("dataset_fingerprint")),
        ("clips", len(p.get("clip_hashes", []))), ("model fingerprint", p.get("model_fingerprint") or "—"),
        ("seed", p.get("seed")), ("seconds", f"{p['seconds']:.1f}" if p.get("seconds") else "—"),
        ("configuration", json.dumps(run["config"], sort_keys=True)),
        ("runs used", ", ".join(f"{k}: {v}" for k, v in sorted((run.get("refs") or {}).items())) or "none"),
        *([("reference models (fingerprints)", ", ".join(f"{k} ({v})" for k, v in p["reference_fingerprints"].items()))]
          if p.get("reference_fingerprints") else []),
        ("versions", ", ".join(f"{k} {v}" for k, v in p.get("versions", {}).items())),
        ("platform", p.get("platform")),
    ]
    if run["config"].get("trust_remote_code") or p.get("trust_remote_code"):
        rows.append(("trust_remote_code", "ON (code from the checkpoint folder was executed)"))
    return "<details><summary>Provenance</summary>" + _table(rows) + "</details>"


def _dataset_section(ws: Workspace, dataset: str) -> str:
    clips = ws.analysis_clips(dataset)
    rejected = ws.rejected(dataset)
    conflicts = ws.label_conflicts(dataset)
    from core.data.ingest import clips_fingerprint
    from core.data.summary import dataset_summary

    s = dataset_summary(ws, dataset)
    rows = [
        ("dataset", dataset), ("fingerprint (sha256 of clip hashes and labels)", clips_fingerprint(clips)),
        ("summary", s.headline()),
        ("members (P)", s.members), ("non-members (U)", s.nonmembers),
        ("total duration", f"{clips['duration'].sum() / 60:.1f} min"),
        ("sample rates", ", ".join(f"{r} Hz" for r in sorted(clips["sample_rate"].unique()))),
        ("duplicate copies (analysed once)", s.duplicate_files),
        ("rejected files", s.rejected), ("label conflicts (excluded)", s.conflicts),
    ]
    out = "<h2>Dataset</h2>" + _table(rows)
    if not rejected.empty:
        out += "<details><summary>Rejected files</summary><table><tr><th>path</th><th>reason</th></tr>" + "".join(
            f"<tr><td>{_esc(r.path)}</td><td>{_esc(r.reason)}</td></tr>" for r in rejected.itertuples()) + "</table></details>"
    if not s.duplicates.empty:
        out += "<details><summary>Duplicate copies</summary><table><tr><th>label</th><th>files (same content)</th></tr>" + "".join(
            f"<tr><td>{_esc(r.label)}</td><td>{_esc(' = '.join(r.paths))}</td></tr>" for r in s.duplicates.itertuples()) + "</table></details>"
    warn = []
    if not conflicts.empty:
        warn.append(f"{conflicts['clip_hash'].nunique()} label conflict(s) unresolved: excluded from every analysis")
    from core.stats import small_sample_warning

    sw = small_sample_warning(clips["y"].to_numpy()) if len(clips) else None
    if sw:
        warn.append(sw)
    return out + _warnings(warn)


def _blind_section(ws: Workspace, run: dict) -> str:
    from core.blind.verdict import verdict_of_run

    r = run["result"]
    v = verdict_of_run(r)
    cls = {"fair": "ok", "shift": "warn", "confounded": "bad"}[v.level]
    out = f'<h2>1 · Blind baseline</h2><div class="{cls}"><b>{_esc(v.level)}</b> — {_esc(v.sentence)}</div>'
    pv = r.get("auc_p_value") or {}
    out += "<table><tr><th>feature group</th><th>AUC</th><th>95% CI</th><th>permutation p</th></tr>" + "".join(
        f"<tr><td>{_esc(g)}</td><td>{a:.3f}</td><td>{_fmt_ci(r['auc_ci'][g])}</td><td>{_fmt_p(pv.get(g))}</td></tr>" for g, a in r["auc"].items()) + "</table>"
    out += _inference_note((r.get("inference") or {}).get("all"))
    if r.get("top_features"):
        out += "<p><b>What gives the split away:</b></p><ul>" + "".join(f"<li>{_esc(t['sentence'])}</li>" for t in r["top_features"][:5]) + "</ul>"
    out += _fig(vblind.auc_by_group(r["auc"], r["auc_ci"]), "Blind AUC per feature group with 95% intervals (refits included); 0.5 = indistinguishable.")
    clips = ws.run_table(run, "clips")
    out += _fig(vblind.score_histogram(clips["score"].to_numpy(np.float64), clips["label"].to_numpy(np.int64)),
                "Out-of-fold blind scores by label: overlapping histograms mean a fair comparison.")
    return out + _details("blind", r) + _warnings(r.get("warnings", [])) + _provenance(run)


def _opt(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def calibration_rows(result: dict) -> list[dict[str, str]]:
    """An MIA result calibrated against reference models, beside its uncalibrated
    aggregate, and the gain: one row each (empty for an uncalibrated result)."""
    cal, unc = result.get("calibration"), result.get("uncalibrated")
    if not cal or not unc:
        return []
    gain = cal.get("gain", {})

    def row(name: str, r: dict) -> dict[str, str]:
        return {"": name, "AUC": _opt(r.get("auc"), ".3f"), "95% CI": _fmt_ci(r.get("auc_ci")),
                "TPR at 1% FPR": _opt(r.get("tpr_at_1pct_fpr"), ".1%"), "best single indicator": str(r.get("best_indicator")),
                HELD_OUT_COLUMN: _opt((r.get("held_out_best") or {}).get("auc"), ".3f")}

    held = gain.get("held_out_best")
    return [row(f"calibrated ({reference_names(cal['references'])})", result), row("uncalibrated", unc),
            {"": "gain", "AUC": _opt(gain.get("auc"), "+.3f"), "95% CI": gain_interval_text(gain),
             "TPR at 1% FPR": _opt(gain.get("tpr_at_1pct_fpr"), "+.1%"), "best single indicator": "",
             HELD_OUT_COLUMN: gain_text(held) if held else "n/a"}]


HELD_OUT_COLUMN = "best single indicator, held out: AUC"
"""The side-by-side's column of the held-out best indicator (:func:`core.mia.aggregate.held_out_best`)."""


def di_calibration_rows(result: dict) -> list[dict[str, str]]:
    """A DI result on calibrated indicators beside the same test on uncalibrated ones."""
    cal, unc = result.get("calibration"), result.get("uncalibrated")
    if not cal or not unc:
        return []
    gain = cal.get("gain", {})
    splits = "suspects_factor_over_splits" in gain  # a side drew a split: its spread is shown beside it
    n = needed_text

    def row(name: str, r: dict) -> dict[str, str]:
        out = {"": name, "scorer": str(r.get("scorer") or ""), "p-value": _opt(r.get("p_value"), ".3g"),
               "rejected": "yes" if r.get("rejected") else "no", "suspects needed": n(r.get("min_suspects"))}
        if splits:
            sp = r.get("needed_over_splits")
            out[OVER_SPLITS] = f"{n(sp['median'])} [{n(sp['p10'])}, {n(sp['p90'])}]" if sp else f"{n(r.get('min_suspects'))} (no split drawn)"
        return out | {"null rejection rate": _opt(r.get("null_rejection_rate"), ".1%")}

    # each side names its scorer: auto resolves per side (a calibrated diffusion run reads
    # the calibrated mean loss, its uncalibrated side the learned control split)
    last = {"": "gain", "scorer": "", "p-value": "", "rejected": "", "suspects needed": suspects_gain_text(gain.get("suspects_factor"))}
    if splits:
        last[OVER_SPLITS] = suspects_gain_text(gain["suspects_factor_over_splits"])
    return [row(f"calibrated ({reference_names(cal['references'])})", result), row("uncalibrated", unc),
            last | {"null rejection rate": ""}]


def reference_names(references: Sequence[str]) -> str:
    """References by name, a folder by its last part (the page's caption and the report's
    provenance give the path)."""
    return ", ".join(r.rstrip("/").rsplit("/", 1)[-1] for r in references)


OVER_SPLITS = f"median over {DEFAULT_SPLITS} splits [10%, 90%]"
"""The side-by-side's column of the suspects needed over redrawn fit/test splits."""


def _rows_table(rows: list[dict[str, str]], caption: str) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{_esc(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<h3>With and without the reference model(s)</h3><table><tr>{head}</tr>{body}</table><p class=\"caption\">{_esc(caption)}</p>"


_REFERENCE_CAVEAT = ("Calibrated: each clip's indicators relative to the reference model(s), which must not have trained on the "
                     "suspects (a reference that did cancels the signal it shares with the target).")


def _shadow_note(result: dict) -> str:
    """One caption line per shadow reference of a calibrated result, read from its card."""
    from core.recipes.shadow import shadow_lines
    from core.records import cross_fit

    cal = result.get("calibration") or {}
    crossed = cal.get("cross_fit")
    lines = shadow_lines(cal.get("references") or (), result.get("excluded_clips"), cross_fitted=crossed is not None)
    return ("".join(f"<p class=\"caption\">Shadow reference {_esc(line)}.</p>" for line in lines)
            + (f"<p class=\"caption\">Cross-fitted shadows: {_esc(cross_fit(crossed))}.</p>" if crossed else ""))


def _mia_section(ws: Workspace, run: dict) -> str:
    r = run["result"]
    out = f"<h2>2 · Per-sample membership inference — <code>{_esc(run['target'])}</code> · {_esc(_access_of(run))}</h2>"
    rows = [
        ("aggregate AUC (10-fold CV logistic regression)", f"{r['auc']:.3f}  95% CI {_fmt_ci(r['auc_ci'])}"),
        ("permutation p-value (AUC above chance)", _fmt_p(r.get("auc_p_value"))),
        ("TPR at 1% FPR", r["tpr_at_fpr_text"][0]), ("TPR at 0.1% FPR", r["tpr_at_fpr_text"][1]),
        ("best single indicator (selected on these clips, descriptive)", f"{r['best_indicator']} ({r['best_indicator_auc']:.3f})"),
        ("members / non-members", f"{r['n_members']} / {r['n_nonmembers']}"),
        _access_row(run),
    ]
    clips = ws.run_table(run, "clips")
    link = blind_link(ws, run, clips["score"].astype(np.float64))
    rows += _blind_rows(link)
    if link.correlation is not None:
        c = link.correlation
        rows.append(("correlation with the linked blind run's scores", f"Pearson {_fmt_r(c['pearson_r'])}, Spearman {_fmt_r(c['spearman_rho'])} over {c['n']} clips"))
    out += _table(rows) + _inference_note(r.get("inference"))
    out += _rows_table(calibration_rows(r), _REFERENCE_CAVEAT) + _shadow_note(r)
    aucs = dict(r["indicators"])
    aucs["aggregate"] = r["auc"]
    roc = dict(r["roc"])
    if r.get("uncalibrated"):
        roc["uncalibrated aggregate"] = r["uncalibrated"]["roc"]["aggregate"]
        aucs["uncalibrated aggregate"] = r["uncalibrated"]["auc"]
    out += _fig(vmia.roc_figure(roc, aucs), "ROC curves (log FPR) of the best single indicators and the cross-validated aggregate.")
    out += _fig(vmia.score_distributions(clips["score"].to_numpy(np.float64), clips["label"].to_numpy(np.int64), xlabel="out-of-fold membership probability"),
                "Aggregate membership scores by label.")
    return out + _details("mia", r) + _warnings(r.get("warnings", [])) + _failed(r) + _provenance(run)


def _fmt_r(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _blind_rows(link: BlindLink) -> list[tuple[str, object]]:
    """The blind run a result was compared with (its ``refs``), and that run's verdict."""
    if link.ref.status == "none":
        return [("blind baseline compared with", "none recorded with this run")]
    if link.ref.status == "deleted":
        return [("blind baseline compared with", f"{link.run_id} — deleted since; its verdict cannot be shown")]
    newer = f" (a newer blind run, {link.ref.newer}, exists; this result has not seen it)" if link.ref.newer else ""
    verdict = f"{link.verdict.level}: {link.verdict.sentence}" if link.verdict is not None else "no verdict (older run)"
    return [("blind baseline compared with", f"{link.run_id}{newer}"), ("its verdict", verdict)]


def _ref_row(ws: Workspace, run: dict, stage: str) -> tuple[str, object]:
    ref = ws.run_ref(run, stage)
    if ref.status == "none":
        return (f"{stage} run read", "none")
    return (f"{stage} run read", ref.run_id + (" — deleted since" if ref.status == "deleted" else ""))


def _di_section(ws: Workspace, run: dict) -> str:
    r = run["result"]
    out = (f"<h2>3 · Dataset inference — <code>{_esc(run['target'])}</code> · {_esc(_access_of(run))}</h2>"
           f"<div class=\"verdict\" style=\"{verdict_style(bool(r.get('rejected')))}\">{_esc(r['verdict'])}</div>")
    out += _table([
        ("scorer", r["scorer"]),
        _access_row(run),
        ("fit/test split", split_grouping(r["scorer"], r.get("grouping")) if "grouping" in r else "clip by clip (older run: grouping not recorded)"),
        ("p-value (Welch, one-sided)", f"{r['p_value']:.3g}"), ("alpha", r["alpha"]),
        *((f"suspects needed (median p < alpha), {what}", v) for v, what in suspects_needed(r)),
        ("null check: rejection rate on non-members only", f"{r['null_rejection_rate']:.1%}" if r.get("null_rejection_rate") is not None else "n/a"),
        _ref_row(ws, run, "mia"),
        ("indicators", f"recomputed from the {r['indicator_source']}" if r.get("indicator_source") == "evidence cache"
         else "read from the MIA run's stored table"),
        *_blind_rows(blind_link(ws, run)),
    ])
    out += _rows_table(di_calibration_rows(r), _REFERENCE_CAVEAT) + _shadow_note(r)
    out += _which_section(ws, run)
    out += _fig(vdi.pvalue_curve_figure(r["curve"], alpha=r["alpha"], min_suspects=r.get("min_suspects"), null_curve=r.get("null_curve")),
                "p-value against the number of suspects (log-log): median with 10–90% band; grey = the same test on non-members only.")
    return out + _details("di", r) + _warnings(r.get("warnings", [])) + _failed(r) + _provenance(run)


WHICH_METHOD = ("Each suspect's conformal p-value against the tested non-members of its scorer's fold (scored by a model "
                "fitted on other clips), Benjamini-Hochberg over all suspects for the flags; the share's lower bound counts "
                "the suspects below each p-value threshold beyond a simultaneous band for unused ones, computed from their "
                "distribution-free joint law.")


def _which_section(ws: Workspace, run: dict) -> str:
    """Which suspects were used and how many, with the method, its assumption and the blind
    verdict beside it."""
    from core.di.which import flagged_table

    w = run["result"].get("which")
    if not w:
        return ""
    out = "<h3>Which of the suspects, and how many</h3>"
    out += f"<p><b>{_esc(w['sentence'][0].upper() + w['sentence'][1:])}.</b></p>"
    rows = [("method", WHICH_METHOD), ("assumes", w["share"]["assumption"]),
            ("blind baseline", run["result"].get("blind_verdict") or "not run"), ("planner", w["plan_sentence"])]
    if w.get("caveat"):
        rows.insert(0, ("caveat", w["caveat"]))
    out += _table(rows)
    flagged = flagged_table(ws, run)
    flagged = flagged[flagged["flagged"]] if not flagged.empty else flagged
    if not flagged.empty:
        out += "<table><tr><th>flagged clip</th><th>score</th><th>p</th><th>q</th></tr>" + "".join(
            f"<tr><td>{_esc(r.path or h[:12])}</td><td>{r.score:.3f}</td><td>{r.p:.3g}</td><td>{r.q:.3g}</td></tr>"
            for h, r in flagged.iterrows()) + "</table>"
    return out


def _disentangle_section(ws: Workspace, run: dict) -> str:
    r = run["result"]
    out = f"<h2>4 · Modality disentanglement — <code>{_esc(run['target'])}</code> · {_esc(_access_of(run))}</h2>"
    out += "<table><tr><th>condition</th><th>MIA AUC</th><th>95% CI</th><th>p (AUC &gt; 0.5)</th><th>realizations</th></tr>" + "".join(
        f"<tr><td>{_esc(c)}</td><td>{d['auc']:.3f}</td><td>{_fmt_ci(d['auc_ci'])}</td><td>{_fmt_p(d.get('auc_p_value'))}</td><td>{d['realizations']}</td></tr>" if "auc" in d else f"<tr><td>{_esc(c)}</td><td colspan=4>skipped: {_esc(d['skipped'])}</td></tr>"
        for c, d in r["details"].items()) + "</table>"
    uncal = [(c, d["uncalibrated"]) for c, d in r["details"].items() if d.get("uncalibrated")]
    if uncal:
        out += (f"<p class=\"caption\">Calibrated against {_esc(', '.join(r.get('references', [])))}; uncalibrated AUC per condition: "
                + ", ".join(f"{_esc(c)} {u['auc']:.3f}" for c, u in uncal) + ".</p>")
    out += _fig(vdis.condition_bars(r["details"]), "MIA AUC with the audio replaced; a collapse to 0.5 means the signal needs this recording, not just its content.")
    out += _table([_access_row(run), *_blind_rows(blind_link(ws, run))])
    return out + _details("disentangle", r) + _warnings(r.get("warnings", [])) + _failed(r) + _provenance(run)


def _section(fn, ws: Workspace, run: dict) -> str:
    """One section; a run record the renderer cannot read (an older or damaged format)
    becomes a visible error box naming the run, never a failed report."""
    try:
        return fn(ws, run)
    except Exception as exc:  # noqa: BLE001 - the rest of the report must still be written
        return (f'<h2>{_esc(run.get("kind", "run"))} — <code>{_esc(run.get("id"))}</code></h2>'
                f'<div class="bad">This run could not be rendered ({_esc(type(exc).__name__)}: {_esc(exc)}). '
                "Its stored record is unchanged; re-run the analysis to include it.</div>")


def _access_of(run: dict) -> str:
    """The access level a run read its target at (an older run: white-box)."""
    cfg = run["config"]
    if run["kind"] == "di":
        return run["result"].get("access", cfg.get("mia_access", "white-box"))
    return (cfg.get("mia") or {} if run["kind"] == "disentangle" else cfg).get("access", "white-box")


def _access_row(run: dict) -> tuple[str, str]:
    cfg = run["config"]
    if run["kind"] == "di":
        cfg = di_mia_config(run["result"]) | {"access": _access_of(run)}
    elif run["kind"] == "disentangle":
        cfg = cfg.get("mia") or {}
    from core.targets.registry import family_of

    return ("access level", decoding_text(cfg, run.get("result"), family_of(run.get("target"))))


def _latest_per_access(ws: Workspace, kind: str, dataset: str, target: str | None) -> list[dict]:
    """The newest run of ``kind``, one per access level (white-box first); the blind baseline
    reads no model, so it has one."""
    if kind == "blind":
        run = ws.latest_run(kind, dataset, target)
        return [run] if run is not None else []
    key = {"di": "mia_access"}.get(kind, "access")
    runs = []
    for level in ACCESS_LEVELS:
        where = at_access(level, key)
        run = ws.latest_run(kind, dataset, target, where=(lambda c, w=where: w(c.get("mia") or {})) if kind == "disentangle" else where)
        if run is not None:
            runs.append(run)
    return runs


def build_report(ws: Workspace, dataset: str, target: str | None = None) -> str:
    """HTML of the audit report for ``dataset`` (and ``target``; default: the target of
    the latest MIA run), from whatever runs exist."""
    ws.dataset_id(dataset)  # raises with the list of datasets when unknown
    if target is None:
        runs = ws.runs("mia", dataset)
        target = runs.iloc[0]["target"] if not runs.empty else None
    parts = [_dataset_section(ws, dataset)]
    ran = []
    for kind, fn, tgt in (("blind", _blind_section, None), ("mia", _mia_section, target), ("di", _di_section, target), ("disentangle", _disentangle_section, target)):
        if kind != "blind" and tgt is None:
            continue
        for run in _latest_per_access(ws, kind, dataset, tgt):
            parts.append(_section(fn, ws, run))
            ran.append(kind if kind == "blind" else f"{kind} ({_access_of(run)})")
    if not ran:
        parts.append('<div class="warn">No analysis has been run on this dataset yet: run the blind baseline, MIA or DI first.</div>')
    title = f"Overheard audit report — {dataset}" + (f" · {target}" if target else "")
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>")
    meta = f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by Overheard {__version__}. Sections: {', '.join(['dataset', *ran])}.</p>"
    return head + f"<h1>{_esc(title)}</h1>" + meta + "".join(parts) + "</body></html>"
