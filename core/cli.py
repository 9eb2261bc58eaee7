"""``overheard``: the same operations as the dashboard, headless.

Every command accepts ``--workspace DIR`` and ``--json`` (one JSON object on stdout;
logs and progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from core.cli_common import TARGET_HELP, _card_summary, _emit, _log, _progress, _target, _target_options, _workspace
from core.cli_flags import CLIError, _comma_list, _key_values, add_config_flags, config_from_args, flag_of  # noqa: F401  (flag_of: the CLI's API)
from core.cli_reference import add_reference_parser
from core.cli_serve import cmd_serve, cmd_serve_api
from core.runtime.settings import Settings
from core.config import Listing, decoding_text, di_mia_config, language_text
from core.records import needed_text, record_of
from core.runtime.store import Workspace
from core.stages import BlindRunConfig, DIRunConfig, DisentangleConfig, MIAConfig


# -- commands ------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from core.data.ingest import IngestError, ingest_path
    from core.data.layouts import LabelRules

    settings, ws = _workspace(args)
    labels = LabelRules.parse(args.members or (), args.nonmembers or ())
    try:
        rep = ingest_path(ws, args.path, args.name, limits=settings.limits, replace=args.replace, layout=args.layout,
                          labels=labels, progress=_progress("ingest"))
    except IngestError as exc:
        raise CLIError(str(exc)) from None
    d = rep.to_dict()
    lines = [f"{rep.dataset}: {rep.headline} ({rep.seconds:.1f} s; layout {rep.layout})"]
    lines += [f"  rejected {r['path']}: {r['reason']}" for r in rep.rejected]
    lines += [f"  label conflict: {' = '.join(g)}" for g in rep.label_conflicts]
    lines += [f"  duplicate: {' = '.join(g)}" for g in rep.duplicate_groups]
    lines += [f"  warning: {w}" for w in rep.warnings]
    _emit(args, d, "\n".join(lines))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from core.data.summary import workspace_summary

    _, ws = _workspace(args)
    df = workspace_summary(ws)
    _emit(args, {"datasets": df.to_dict("records")}, df.to_string(index=False) if not df.empty else "no datasets")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.action == "build-corpus":
        from core.recipes.corpus.corpus import build_corpus
        from core.pipeline.common import demo_root

        out = Path(args.out) if args.out else demo_root()
        t0 = time.perf_counter()
        summary = build_corpus(out, seed=args.seed, progress=_log)
        summary = dict(summary, seconds=time.perf_counter() - t0, out=str(out))
        _emit(args, summary, json.dumps(summary, indent=1, default=str))
        return 0
    from core.pipeline import load_demo

    _, ws = _workspace(args)
    t0 = time.perf_counter()
    reports = load_demo(ws, progress=_progress("demo"))
    out = {name: (r.to_dict() if r else "already loaded") for name, r in reports.items()}
    _emit(args, {"datasets": out, "seconds": time.perf_counter() - t0},
          "\n".join(f"{n}: {r.clips} clips" if r else f"{n}: already loaded" for n, r in reports.items()))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from core.pipeline.common import cache_overview, dataset_clips
    from core.runtime.cache import clear_cache

    _, ws = _workspace(args)
    clips = dataset_clips(ws, args.dataset)
    freed = None
    if args.clear:
        part, _, name = args.clear.partition("/")
        try:
            freed = clear_cache(ws.cache_dir, None if part == "all" else part, name or None, clips=clips)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    df = cache_overview(ws, args.dataset)
    text = df.to_string(index=False) if not df.empty else "cache is empty" + (f" for {args.dataset}" if args.dataset else "")
    text += f"\ntotal {df['bytes'].sum() / 1e6:.1f} MB in {ws.cache_dir}" + (f" for the clips of {args.dataset}" if args.dataset else "") + (f"; freed {freed / 1e6:.1f} MB" if freed is not None else "")
    _emit(args, {"entries": df.to_dict("records"), "total_bytes": int(df["bytes"].sum()), "freed_bytes": freed}, text)
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from core.targets import list_targets

    rows = [dict(spec=t.spec, family=t.family, available=t.available, description=t.description, **t.detail) for t in list_targets()]
    text = "\n".join(f"{r['spec']:<22} {r['family']:<15} {'ready' if r['available'] else 'not built':<10} {r['description']}" for r in rows)
    _emit(args, {"targets": rows}, text or "no targets")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from core.recipes.zoo import get_trainer
    from core.targets.zoo.registry import ZOO, zoo_dir

    names = args.name or sorted(ZOO)
    cards = {}
    for name in names:
        train = get_trainer(name)
        _log(f"training zoo:{name} ...")
        t0 = time.perf_counter()
        card = train(Path(args.out or zoo_dir()) / name, micro=args.micro, progress=_progress(f"zoo:{name}"))
        cards[name] = _card_summary(card) | {"seconds": time.perf_counter() - t0}
    _emit(args, {"built": cards}, json.dumps(cards, indent=1, default=str))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    import core.pipeline  # noqa: F401  (registers the job kinds a resumed worker runs)
    from core.runtime import jobs

    _, ws = _workspace(args)
    if args.resume:
        jobs.resume(ws, args.resume)
    if args.cancel:
        jobs.cancel(ws, args.cancel)
    if args.stop:
        jobs.stop(ws, args.stop)
    df = jobs.jobs(ws)
    cols = ["id", "kind", "status", "progress", "total", "message", "error"]
    _emit(args, {"jobs": df[cols].to_dict("records") if not df.empty else []}, df[cols].to_string(index=False) if not df.empty else "no jobs")
    return 0


def cmd_mia(args: argparse.Namespace) -> int:
    from core.pipeline import audit_mia

    settings, ws = _workspace(args)
    settings = _executor_settings(args, settings)
    cfg = config_from_args(MIAConfig, args, target_options=_target_options(args))
    if args.trust_remote_code:
        _log("warning: --trust-remote-code runs Python code shipped in the checkpoint folder; the report records it")
    run_id, res = audit_mia(ws, args.dataset, _target(args), cfg, settings=settings, progress=_progress("mia"),
                             targets=args.targets)
    out = {"run_id": run_id, "dataset": args.dataset, "target": args.target} | record_of("mia").to_json(res)
    lo, hi = res["auc_ci"]
    p = res.get("auc_p_value")
    text = [f"MIA {args.target} on {args.dataset}: AUC {res['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}"
            + ("" if p is None else f", permutation p = {p:.2g}") + f"), {res['n_members']} members / {res['n_nonmembers']} non-members",
            f"  access: {decoding_text(cfg.to_dict(), res, _target(args).family)}",
            f"  folds: {_folds_text(res.get('inference'))}",
            *("  " + t for t in res["tpr_at_fpr_text"]),
            f"  best single indicator: {res['best_indicator']} ({res['best_indicator_auc']:.3f}, selected on these clips)",
            *_calibration_lines(res), *_detail_lines("mia", res), *(f"  warning: {w}" for w in res["warnings"]), f"  run {run_id}"]
    _emit(args, out, "\n".join(text))
    return 0


def _detail_lines(kind: str, result: dict) -> list[str]:
    """The record's detail fields (:mod:`core.records`), one line each."""
    return [f"  {label}: {text}" for label, text in record_of(kind).rows(result)]


def _calibration_lines(res: dict) -> list[str]:
    """The uncalibrated result of a calibrated MIA run beside it, and the gain."""
    from core.mia.calibration import gain_text

    cal, unc = res.get("calibration"), res.get("uncalibrated")
    if not cal or not unc:
        return []
    lo, hi = unc["auc_ci"]
    gain = cal["gain"]
    tpr = "n/a" if gain.get("tpr_at_1pct_fpr") is None else f"{gain['tpr_at_1pct_fpr']:+.3f}"
    return [f"  calibrated against {', '.join(cal['references'])} ({', '.join(cal['calibrations'])}); "
            f"uncalibrated AUC {unc['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}), {unc['tpr_at_fpr_text'][0]}",
            f"  gain from the reference(s): AUC {gain_text(gain)}, TPR at 1% FPR {tpr}",
            *([f"  gain of the best single indicator, held out: AUC {gain_text(gain['held_out_best'])}"] if gain.get("held_out_best") else [])]


def _folds_text(inf: dict | None) -> str:
    if not inf:
        return "stratified, bootstrap interval"
    f = inf.get("folds", {})
    g = f"grouped by {f['grouping']} ({f.get('n_groups')} groups)" if f.get("grouping", "none") != "none" else "ungrouped"
    return f"{f.get('n_folds')} stratified folds, {g}; {inf.get('n_perm')} permutations; interval {inf.get('ci_method')}"


def cmd_blind(args: argparse.Namespace) -> int:
    from core.pipeline.blind import audit_blind

    settings, ws = _workspace(args)
    cfg = config_from_args(BlindRunConfig, args)
    run_id, res = audit_blind(ws, args.dataset, cfg, settings=settings, progress=_progress("blind"))
    out = {"run_id": run_id, "dataset": args.dataset} | record_of("blind").to_json(res)
    pv = res.get("auc_p_value") or {}
    text = [f"blind baseline on {args.dataset} ({res['n_members']} members / {res['n_nonmembers']} non-members): "
            f"{res['verdict']['all']['sentence']}", f"  folds: {_folds_text((res.get('inference') or {}).get('all'))}"]
    text += [f"  {g:<10} AUC {a:.3f} (95% CI {res['auc_ci'][g][0]:.3f}-{res['auc_ci'][g][1]:.3f}"
             + ("" if pv.get(g) is None else f", p = {pv[g]:.2g}") + ")" for g, a in res["auc"].items()]
    text += [f"  giveaway: {t['sentence']}" for t in res["top_features"][:3]] + _detail_lines("blind", res)
    text += [f"  warning: {w}" for w in res.get("warnings", [])] + [f"  run {run_id}"]
    _emit(args, out, "\n".join(text))
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from core.pipeline.blind import match_dataset

    settings, ws = _workspace(args)
    cfg = BlindRunConfig(seed=args.seed)
    run_id, res = match_dataset(ws, args.dataset, args.name, caliper=args.caliper, config=cfg, settings=settings, progress=_progress("match"))
    before = res["before"]["auc"]["all"]
    after = res["after"]["auc"]["all"] if res["after"] else None
    out = {"run_id": run_id, "dataset": args.name, "source": args.dataset, "n_clips": res["n_clips"], "auc_before": before,
           "auc_after": after, "auc_after_ci": res["after"]["auc_ci"]["all"] if res["after"] else None,
           "matching": res["matching"], "warnings": res["warnings"]}
    text = f"{args.name}: {res['n_clips']} clips matched from {args.dataset}; blind AUC {before:.3f} -> " + (f"{after:.3f}" if after is not None else "n/a")
    _emit(args, out, text)
    return 0


def _variant_options(args: argparse.Namespace) -> dict[str, dict]:
    """``--variant-option FAMILY.NAME=VALUE`` (each converted by the option's declared kind),
    and the shorthands ``--piper-voice``, ``--tta-generator``, ``--tta-steps``."""
    from core.disentangle import get_variant

    out: dict[str, dict] = {}
    for family, key, value in [("tts", "piper_voice", args.piper_voice), ("tta", "generator", args.tta_generator),
                               ("tta", "steps", args.tta_steps)]:
        if value:
            out.setdefault(family, {})[key] = value
    for item in args.variant_option or []:
        name, eq, value = item.partition("=")
        family, dot, key = name.partition(".")
        if not (eq and dot and family and key):
            raise CLIError(f"--variant-option {item!r}: expected FAMILY.NAME=VALUE, e.g. tta.steps=50")
        specs = {o.name: o for o in get_variant(family).option_specs}
        if key not in specs:
            raise CLIError(f"variant {family} has no option {key!r}; valid: {', '.join(specs) or 'none'}")
        out.setdefault(family, {})[key] = specs[key].parse(value)
    return out


def cmd_disentangle(args: argparse.Namespace) -> int:
    from core.pipeline.disentangle import audit_disentangle

    settings, ws = _workspace(args)
    settings = _executor_settings(args, settings)
    variant_options = _variant_options(args)
    cfg = config_from_args(DisentangleConfig, args, target_options=_target_options(args),
                           max_realizations=max(1, min(3, args.max_realizations)),
                           variant_options={c: o for c, o in variant_options.items() if o})
    run_id, res = audit_disentangle(ws, args.dataset, _target(args), cfg, settings=settings, progress=_progress("disentangle"),
                                     targets=args.targets)
    out = {"run_id": run_id, "dataset": args.dataset, "target": args.target} | record_of("disentangle").to_json(res)
    out["details"] = {c: {k: v for k, v in d.items() if k != "description"} for c, d in res["details"].items()}
    lines = [f"disentanglement of {args.target} on {args.dataset} ({res['n']} clips):"]
    if res.get("language"):
        lines.append(f"  {language_text(res)}")
    for c, d in res["details"].items():
        lines.append(f"  {c:<10} " + (f"AUC {d['auc']:.3f} (95% CI {d['auc_ci'][0]:.3f}-{d['auc_ci'][1]:.3f}), {d['realizations']} realization(s)" if "auc" in d else f"skipped: {d['skipped']}"))
    lines += _detail_lines("disentangle", res) + [f"  warning: {w}" for w in res.get("warnings", [])]
    _emit(args, out, "\n".join(lines + [f"  run {run_id}"]))
    return 0


def cmd_di(args: argparse.Namespace) -> int:
    from core.pipeline.di import audit_di

    settings, ws = _workspace(args)
    cfg = config_from_args(DIRunConfig, args, target_options=_target_options(args))
    try:
        run_id, r = audit_di(ws, args.dataset, _target(args), cfg, settings=settings, progress=_progress("di"), targets=args.targets)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    from core.di.curve import suspects_needed

    needed = "  suspects needed: " + ", ".join(f"{v} {what}" for v, what in suspects_needed(r))
    if args.clips_csv:
        from core.di.which import flagged_table

        flagged_table(ws, ws.load_run(run_id)).to_csv(args.clips_csv)
        _log(f"per-clip p-values and flags written to {args.clips_csv}")
    _emit(args, {"run_id": run_id, "dataset": args.dataset, "target": args.target} | record_of("di").to_json(r),
          r["verdict"] + "\n" + needed + _di_calibration_text(r) + "".join("\n" + line for line in _detail_lines("di", r)) + f"\n  run {run_id}, from MIA run {r['mia_run']} ({decoding_text(di_mia_config(r), r, _target(args).family)})")
    return 0


def _di_calibration_text(r: dict) -> str:
    """The uncalibrated test of a calibrated DI run beside it."""
    from core.stats import p_clause

    from core.mia.calibration import suspects_gain_text

    cal, unc = r.get("calibration"), r.get("uncalibrated")
    if not cal or not unc:
        return ""
    need = needed_text(unc["min_suspects"])
    factor = cal["gain"].get("suspects_factor")
    other = f" (scorer {unc['scorer']})" if unc.get("scorer") and unc["scorer"] != r.get("scorer") else ""
    text = (f"\n  calibrated against {', '.join(cal['references'])}; uncalibrated{other}: {p_clause(unc['p_value'])}, "
            f"suspects needed {need}" + ("" if factor is None else f"; suspects needed with the reference(s): {suspects_gain_text(factor)}"))
    if "suspects_factor_over_splits" in cal["gain"]:
        from core.pipeline.di import typical_needed

        text += (f"\n  over redrawn splits (median): {needed_text(typical_needed(r))} calibrated, "
                 f"{needed_text(typical_needed(unc))} uncalibrated; "
                 f"with the reference(s): {suspects_gain_text(cal['gain']['suspects_factor_over_splits'])}")
    return text


def cmd_report(args: argparse.Namespace) -> int:
    from core.viz.report import build_report

    _, ws = _workspace(args)
    html = build_report(ws, args.dataset, args.target)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    _emit(args, {"out": str(out), "bytes": len(html.encode("utf-8"))}, f"wrote {out} ({len(html) / 1e6:.1f} MB)")
    return 0


# -- parser --------------------------------------------------------------------------------
def _executor_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where evidence extraction runs (default $OVERHEARD_EXECUTOR or local); ray needs the [ray] extra")
    s.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join (ray://HOST:10001, HOST:6379 or auto; default $OVERHEARD_RAY_ADDRESS, else a local Ray)")


def _executor_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """Apply ``--executor`` / ``--ray-address`` over the environment's settings."""
    from dataclasses import replace

    executor = args.executor or settings.executor
    address = args.ray_address or settings.ray_address
    if args.ray_address and executor != "ray":
        raise CLIError("--ray-address needs --executor ray")
    return replace(settings, executor=executor, ray_address=address)



def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the sub-command is not reset by the sub-parser.
    common.add_argument("--workspace", default=argparse.SUPPRESS, help="workspace folder (default $OVERHEARD_WORKSPACE or ./workspace)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object on stdout")

    p = argparse.ArgumentParser(prog="overheard", description="Membership and dataset inference audits for audio models.", parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", parents=[common], help="ingest an audio folder or zip as a dataset")
    s.add_argument("path")
    s.add_argument("--name", required=True)
    s.add_argument("--replace", action="store_true", help="replace an existing dataset of that name")
    s.add_argument("--layout", default="auto", help=Listing("dataset layout: {names} (auto: detected)", "core.data.layouts:layout_names"))
    pattern = "split name, folder glob or column=value; repeat or separate with commas"
    s.add_argument("--members", action="append", metavar="PATTERN", help=f"which items are members (P): {pattern}")
    s.add_argument("--nonmembers", action="append", metavar="PATTERN", help=f"which items are non-members (U): {pattern}")
    s.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("datasets", parents=[common], help="list datasets")
    s.set_defaults(fn=cmd_datasets)

    s = sub.add_parser("cache", parents=[common], help="show the evidence and feature cache (and clear it)")
    s.add_argument("--clear", metavar="WHAT", help="all, evidence, features, or evidence/FINGERPRINT, features/NAME")
    s.add_argument("--dataset", help="only what is cached for this dataset's clips (size, and what --clear removes)")
    s.set_defaults(fn=cmd_cache)

    s = sub.add_parser("demo", parents=[common], help="load the bundled demo datasets (or rebuild the corpus)")
    s.add_argument("action", nargs="?", default="load", choices=["load", "build-corpus"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="build-corpus output folder (default assets/demo)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("targets", parents=[common], help="list the built-in reference targets")
    s.set_defaults(fn=cmd_targets)

    s = sub.add_parser("zoo", parents=[common], help="(re)train built-in reference targets")
    s.add_argument("action", choices=["build"])
    s.add_argument("--name", action="append", help="zoo model name (repeatable; default all)")
    s.add_argument("--out", help="output folder (default assets/zoo)")
    s.add_argument("--micro", action="store_true", help="seconds-long versions on a few clips, to check the build path")
    s.set_defaults(fn=cmd_zoo)

    add_reference_parser(sub, common)

    s = sub.add_parser("jobs", parents=[common], help="list, resume or cancel background jobs")
    s.add_argument("--resume", metavar="JOB_ID")
    s.add_argument("--cancel", metavar="JOB_ID")
    s.add_argument("--stop", metavar="JOB_ID", help="kill a stalled job's worker now (resume it later with --resume)")
    s.set_defaults(fn=cmd_jobs)

    s = sub.add_parser("serve", parents=[common], help="start the dashboard")
    s.add_argument("--address", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8501)
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("serve-api", parents=[common],
                       help="serve a target's transcriptions through the common transcription API (to audit it as a remote target)")
    s.add_argument("--target", required=True, help=TARGET_HELP)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--port", type=int, default=8000, help="port (0: any free port; the URL is printed)")
    s.add_argument("--target-option", action="append", default=[], metavar="KEY=VALUE", help="option for the target's loader (repeatable)")
    s.add_argument("--drop", type=float, default=0.0, metavar="F",
                   help="answer this fraction of requests with 503 or a closed connection (to test a client's retries)")
    s.add_argument("--seed", type=int, default=0, help="seed of the dropped requests")
    s.add_argument("--require-key", action="store_true", help="answer only requests bearing $OVERHEARD_API_KEY")
    s.set_defaults(fn=cmd_serve_api)

    s = sub.add_parser("mia", parents=[common], help="per-sample membership inference of a target on a dataset")
    s.add_argument("--dataset", required=True)
    s.add_argument("--target", required=True, help=TARGET_HELP)
    add_config_flags(s, MIAConfig)
    _executor_flags(s)
    s.set_defaults(fn=cmd_mia)

    s = sub.add_parser("blind", parents=[common], help="blind baseline: can P and U be told apart without the model?")
    s.add_argument("--dataset", required=True)
    add_config_flags(s, BlindRunConfig)
    s.set_defaults(fn=cmd_blind)

    s = sub.add_parser("match", parents=[common], help="save a blind-score-matched subset as a new dataset")
    s.add_argument("--dataset", required=True)
    s.add_argument("--name", required=True, help="name of the matched dataset")
    s.add_argument("--caliper", type=float, default=0.2, help="caliper in SD of the logit blind score")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_match)

    s = sub.add_parser("disentangle", parents=[common], help="re-run the MIA with the audio replaced (silence, noise, resynthesis)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--target", required=True, help=TARGET_HELP)
    add_config_flags(s, DisentangleConfig)
    s.add_argument("--piper-voice", metavar="VOICE.onnx", help="speak the tts condition with this local Piper voice instead of eSpeak NG")
    s.add_argument("--tta-generator", metavar="SPEC", help="text-to-audio model for the tta condition: zoo:<name> or a local diffusers pipeline folder (default zoo:diffusion-large)")
    s.add_argument("--tta-steps", type=int, help="sampling steps of the tta generator (default 25)")
    s.add_argument("--variant-option", action="append", metavar="FAMILY.NAME=VALUE",
                   help=Listing("an option of a condition's generator (repeatable): {names}", "core.disentangle.registry:option_names"))
    _executor_flags(s)
    s.set_defaults(fn=cmd_disentangle)

    s = sub.add_parser("di", parents=[common], help="dataset inference: was the suspect set, as a whole, used in training?")
    s.add_argument("--dataset", required=True)
    s.add_argument("--target", required=True, help=TARGET_HELP)
    add_config_flags(s, DIRunConfig)
    s.add_argument("--clips-csv", metavar="PATH", help="write every tested suspect's conformal p-value, BH q-value and flag to this CSV")
    s.set_defaults(fn=cmd_di)

    s = sub.add_parser("report", parents=[common], help="write a self-contained HTML audit report")
    s.add_argument("--dataset", required=True)
    s.add_argument("--target", help="default: the target of the latest MIA run")
    s.add_argument("--out", default="report.html")
    s.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    from core.runtime.ray_exec import ExecutorError

    args = build_parser().parse_args(argv)
    args.workspace = getattr(args, "workspace", None)
    args.json = getattr(args, "json", False)
    try:
        _precheck(args)
        return int(args.fn(args) or 0)
    except (CLIError, KeyError, ValueError, FileNotFoundError, ExecutorError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if args.json:
            print(json.dumps({"error": msg}))
        _log(f"error: {msg}")
        return 2
    except Exception as exc:  # noqa: BLE001 - an unexpected failure is one line too, with its traceback in a file
        base = sys.modules.get("core.targets.base")  # loaded whenever a target was: the CLI's start stays torch-free
        if base is not None and isinstance(exc, base.TargetUnavailable):
            if args.json:
                print(json.dumps({"error": str(exc), "resumable": True}))
            _log(f"stopped: {exc}")
            return 3
        if os.environ.get("OVERHEARD_DEBUG"):
            raise
        where = _write_traceback(args)
        msg = f"internal error ({type(exc).__name__}: {exc}); traceback in {where}"
        if args.json:
            print(json.dumps({"error": msg}))
        _log(f"error: {msg}")
        return 2


def _precheck(args: argparse.Namespace) -> None:
    """Refuse an unknown dataset or target before any model runs. The target and its
    references are resolved here, once (``args.targets``): the commands pass the refs down."""
    if hasattr(args, "ray_address"):  # option combinations first: they need no workspace
        _executor_settings(args, Settings.from_env(args.workspace))
    if getattr(args, "dataset", None):
        Workspace(Settings.from_env(args.workspace).workspace).dataset_id(args.dataset)
    if getattr(args, "references", None):  # a folder holding a set of shadows stands for each of them
        from core.pipeline.shadow_set import expand_references

        args.references = list(expand_references(args.references))
    specs = [s for s in [getattr(args, "target", None), getattr(args, "base", None), *(getattr(args, "references", None) or [])] if s]
    if specs:
        from core.targets import Resolved

        args.targets = Resolved()
        for spec in specs:
            args.targets.ref(spec)


def _write_traceback(args: argparse.Namespace) -> str:
    """Append the current traceback to ``<workspace>/logs/errors.log`` (or a temporary
    file when the workspace cannot be written) and return its path."""
    import tempfile
    import traceback

    text = f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} overheard {' '.join(sys.argv[1:])}\n{traceback.format_exc()}"
    try:
        log = Settings.from_env(args.workspace).workspace / "logs" / "errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as f:
            f.write(text)
        return str(log)
    except Exception:  # noqa: BLE001
        fd, path = tempfile.mkstemp(prefix="overheard-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path


if __name__ == "__main__":
    raise SystemExit(main())
