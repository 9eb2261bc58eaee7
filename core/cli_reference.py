"""``overheard reference``: build a shadow reference (one, a set of several, or a grid of
recipes with the one closest to the target chosen) and ask the advisor which reference a
target needs. The operations are :mod:`core.pipeline.reference`,
:mod:`core.pipeline.shadow_set` and :mod:`core.pipeline.shadow_grid`."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli_common import TARGET_HELP, _card_summary, _emit, _log, _progress, _target, _target_options, _workspace
from core.cli_flags import CLIError, _comma_list, add_config_flags, config_from_args
from core.runtime.settings import Settings
from core.runtime.store import Workspace


def cmd_reference_build(args: argparse.Namespace) -> int:
    from core.pipeline.reference import build_shadow, check_supported
    from core.recipes.shadow import ShadowRecipe

    epochs, lrs = list(args.epochs), list(args.lr)  # comma lists: more than one value makes a grid
    grid = len(epochs) > 1 or len(lrs) > 1 or args.target or args.holdout is not None
    if args.shadows < 1:
        raise CLIError(f"--shadows is the number of shadows to build: 1 or more, got {args.shadows}")
    if grid and args.shadows > 1:
        raise CLIError("--shadows builds several shadows of one recipe, a grid chooses a recipe: build the grid first, then "
                       "several shadows with the chosen recipe")
    if args.vary != "seed" and args.shadows < 2:
        raise CLIError(f"--vary {args.vary} says what differs between several shadows: give --shadows K (2 or more)")
    if args.folds is not None and args.vary != "both":
        raise CLIError("--folds is the number of disjoint draws of --vary both; give --vary both, or leave --folds out")
    if grid:
        return _reference_grid(args, epochs, lrs)
    settings, ws = _workspace(args)
    recipe = config_from_args(ShadowRecipe, args, epochs=epochs[0], lr=lrs[0])
    if args.shadows > 1:
        return _reference_set(args, settings, ws, recipe)
    if args.background:
        from core.runtime import jobs

        import core.pipeline.reference  # noqa: F401  (registers the job kind)

        job_id = jobs.submit(ws, "shadow-reference", {"dataset": args.dataset, "base": args.base, "out": str(Path(args.out).resolve()),
                                                      "n_nonmembers": args.nonmembers, "recipe": recipe.to_dict(),
                                                      "options": dict(_target_options(args))})
        _emit(args, {"job_id": job_id}, f"started job {job_id}; follow it with `overheard jobs`")
        return 0
    _log(f"fine-tuning {args.base} on {args.nonmembers} known non-members of {args.dataset} ...")
    base = args.targets.ref(args.base)
    per = check_supported(base).per  # the objective of the base's layout, which the build uses too
    card = build_shadow(ws, args.dataset, base, args.out, n_nonmembers=args.nonmembers, recipe=recipe,
                        settings=settings, progress=_progress("shadow"), targets=args.targets, options=dict(_target_options(args)))
    how = f", LoRA rank {card['lora']['rank']}" if card.get("lora") else ""
    text = (f"shadow reference {args.out}: {args.base} fine-tuned on {card['n_clips']} known non-members of {args.dataset} "
            f"({card['recipe']['epochs']} epoch(s), lr {card['recipe']['lr']:g}{how}) in {card['train_time_s']:.1f} s, "
            f"{card['clips_per_s']} clips/s; loss {per} {card['loss_per_epoch'][0]:.4f} -> {card['loss_per_epoch'][-1]:.4f}; "
            f"audits with --reference {args.out} leave those {card['n_clips']} clips out")
    _emit(args, {"out": str(args.out)} | _card_summary(card) | {"trained_clip_hashes": card["trained_clip_hashes"]}, text)
    return 0


def _reference_set(args: argparse.Namespace, settings: Settings, ws: Workspace, recipe) -> int:
    """``reference build --shadows K``: K shadows of one recipe under ``--out`` (``s0`` ...),
    differing by seed, on the same clips, on disjoint draws (``--vary subset``), or as folds
    of several seeds on ``--folds`` disjoint draws (``--vary both``)."""
    from core.pipeline.shadow_set import build_shadow_set, set_draws

    folds = args.folds or 2
    set_draws(ws.analysis_clips(args.dataset), args.nonmembers, args.shadows, vary=args.vary, seed=recipe.seed,  # too few: now
              folds=folds)
    if args.background:
        from core.runtime import jobs

        job_id = jobs.submit(ws, "shadow-set", {"dataset": args.dataset, "base": args.base, "out": str(Path(args.out).resolve()),
                                                "n_nonmembers": args.nonmembers, "shadows": args.shadows, "vary": args.vary,
                                                "folds": folds,
                                                "recipe": recipe.to_dict(), "options": dict(_target_options(args))})
        _emit(args, {"job_id": job_id}, f"started job {job_id}; follow it with `overheard jobs`")
        return 0
    clips = {"seed": "the same", "subset": "disjoint draws of",
             "both": f"{folds} disjoint draws ({args.shadows // folds} shadows on each) of"}[args.vary]
    _log(f"fine-tuning {args.base} {args.shadows} times on {clips} {args.nonmembers} known non-members of {args.dataset} ...")
    rec = build_shadow_set(ws, args.dataset, args.targets.ref(args.base), args.out, n_nonmembers=args.nonmembers,
                           shadows=args.shadows, vary=args.vary, folds=folds, recipe=recipe, settings=settings,
                           progress=_progress("shadows"), targets=args.targets, options=dict(_target_options(args)))
    each = " ".join(f"--reference {Path(args.out) / f}" for f in rec["folders"])
    secs = sum(r["train_time_s"] or 0.0 for r in rec["shadows"])
    text = (f"{args.shadows} shadow references in {args.out} ({', '.join(rec['folders'])}): {args.base} fine-tuned with seeds "
            f"{', '.join(str(r['seed']) for r in rec['shadows'])} on {clips} {args.nonmembers} known non-members of "
            f"{args.dataset} ({recipe.epochs} epoch(s), lr {recipe.lr:g}), {secs:.1f} s of training in all\n"
            f"audits with --reference {args.out} (the set's folder stands for its shadows: {each}) leave the "
            f"{len(rec['trained_clip_hashes'])} clips any of them trained on out"
            + ("" if args.vary == "seed" else ", or with --cross-fit audit them too, each against the shadows that never "
                                              "trained on it")
            + "; with two or more references the default calibrations are resid and lira"
            + "".join(f"\nwarning: {w}" for w in rec["warnings"]))
    _emit(args, {"out": str(args.out)} | rec, text)
    return 0


def _reference_grid(args: argparse.Namespace, epochs: list[int], lrs: list[float]) -> int:
    """``reference build`` with a grid of recipes: one shadow per (epochs, lr) under
    ``--out``, the one closest to ``--target`` on ``--holdout`` held-out non-members chosen."""
    from core.pipeline.reference import check_supported
    from core.pipeline.shadow_grid import build_shadow_grid, recipe_grid
    from core.recipes.shadow import ShadowRecipe

    if not args.target:
        raise CLIError("a grid of recipes (comma lists for --epochs/--lr, or --holdout) needs --target: the shadow is chosen "
                       "by how closely its losses on held-out known non-members follow the target's")
    if args.holdout is None:
        raise CLIError("a grid of recipes needs --holdout H: the known non-members (besides --nonmembers) it chooses the shadow on")
    settings, ws = _workspace(args)
    recipes = recipe_grid(config_from_args(ShadowRecipe, args, epochs=epochs[0], lr=lrs[0]), epochs, lrs)
    if args.background:
        from core.runtime import jobs

        import core.pipeline.reference  # noqa: F401  (registers the job kind)

        job_id = jobs.submit(ws, "shadow-grid", {"dataset": args.dataset, "base": args.base, "target": args.target,
                                                 "out": str(Path(args.out).resolve()), "n_nonmembers": args.nonmembers,
                                                 "n_holdout": args.holdout, "recipes": [r.to_dict() for r in recipes],
                                                 "options": dict(_target_options(args))})
        _emit(args, {"job_id": job_id}, f"started job {job_id}; follow it with `overheard jobs`")
        return 0
    check_supported(args.targets.ref(args.base))
    _log(f"fine-tuning {args.base} with {len(recipes)} recipe(s) on {args.nonmembers} known non-members of {args.dataset}, "
         f"choosing on {args.holdout} held-out ones ...")
    rec = build_shadow_grid(ws, args.dataset, args.targets.ref(args.base), _target(args), args.out, recipes=recipes,
                            n_nonmembers=args.nonmembers, n_holdout=args.holdout, settings=settings,
                            progress=_progress("grid"), targets=args.targets, options=dict(_target_options(args)))
    lines = [f"shadow recipes for {args.target} on {args.holdout} held-out known non-members of {args.dataset} "
             "(median gap: shadow loss - target loss, nats/token):",
             f"  {'epochs':>6}  {'lr':>9}  {'median gap [95% CI]':>28}  {'train s':>8}"]
    for i, r in enumerate(rec["recipes"]):
        ci = f"{r['median_gap']:+.4f} [{r['gap_ci'][0]:+.4f}, {r['gap_ci'][1]:+.4f}]"
        secs = "" if r.get("train_time_s") is None else f"{r['train_time_s']:.1f}"
        lines.append(f"  {r['recipe']['epochs']:>6}  {r['recipe']['lr']:>9.3g}  {ci:>28}  {secs:>8}"
                     + ("  <- chosen" if i == rec["chosen"] else ""))
    lines.append(f"chosen: {rec['chosen_folder']} (record {Path(args.out) / 'selection.json'}); audits with --reference "
                 f"{rec['chosen_folder']} leave its {len(rec['trained_clip_hashes'])} training and "
                 f"{len(rec['heldout_clip_hashes'])} held-out clips out")
    _emit(args, rec, "\n".join(lines))
    return 0


def cmd_reference_advise(args: argparse.Namespace) -> int:
    from core.pipeline.reference import advise_reference

    settings, ws = _workspace(args)
    res = advise_reference(ws, args.dataset, _target(args), args.targets.ref(args.base), n_nonmembers=args.nonmembers,
                           seed=args.seed, settings=settings, progress=_progress("advise"), targets=args.targets,
                           options=dict(_target_options(args)))
    _emit(args, res, f"reference for {args.target} on {args.dataset}: {res['recommendation']}\n  {res['reason']}")
    return 0


def add_reference_parser(sub, common: argparse.ArgumentParser) -> None:
    """The ``reference`` command and its ``build`` and ``advise`` subcommands."""
    from core.recipes.shadow import SUPPORTED, ShadowRecipe

    s = sub.add_parser("reference", parents=[common], help="build a shadow reference, or ask which reference fits a target")
    ref_sub = s.add_subparsers(dest="reference_action", required=True)
    r = ref_sub.add_parser("build", parents=[common], help=f"fine-tune a base on known non-members (which then leave every audit "
                                                          f"that uses it); bases: {SUPPORTED}")
    r.add_argument("--base", required=True, help="the public base the audited fine-tune started from: " + TARGET_HELP)
    r.add_argument("--dataset", required=True)
    r.add_argument("--nonmembers", type=int, required=True, metavar="N", help="known non-members to fine-tune on (drawn with --seed)")
    r.add_argument("--out", required=True, metavar="DIR", help="new or empty folder for the checkpoint (a rerun resumes it)")
    r.add_argument("--background", action="store_true", help="run as a background job (see `overheard jobs`)")
    r.add_argument("--shadows", type=int, default=1, metavar="K",
                   help="build K shadows of the recipe (K fine-tunings), in folders s0 ... under --out, shadow i with seed "
                        "--seed + i (its batch order, noise draws, dropout): two or more feed LiRA's per-clip spread "
                        "(calibrations resid and lira by default); --reference DIR then stands for all of them, and every "
                        "audit leaves out the clips any of them trained on (default: 1, one shadow in --out)")
    r.add_argument("--vary", choices=("seed", "subset", "both"), default="seed",
                   help="with --shadows: seed (default), every shadow on the same --nonmembers clips, only the seed differs; "
                        "subset, each on its own disjoint draw of N known non-members (N x K are left out of the audit, or "
                        "audited with --cross-fit); both, --folds disjoint draws with K / folds shadows (seeds) on each, to "
                        "cross-fit with each clip's reference averaged over a fold's seeds")
    r.add_argument("--folds", type=int, default=None, metavar="F",
                   help="with --vary both: the number of disjoint draws (default 2); --shadows must be a multiple of it, "
                        "at least twice it")
    r.add_argument("--target", help="the audited model, for a grid of recipes: the shadow whose losses on --holdout held-out "
                                    "known non-members are closest to its is chosen; " + TARGET_HELP)
    r.add_argument("--holdout", type=int, metavar="H", help="with a grid: known non-members (disjoint from --nonmembers) the "
                                                            "shadows are compared with --target on; they leave every audit "
                                                            "that uses the chosen shadow")
    r.add_argument("--target-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the base's loader, as the audit will pass it to the target and its references "
                        "(e.g. prompt=\"Describe the audio.\", language=de; repeatable); with a grid, the target's too")
    add_config_flags(r, ShadowRecipe)
    for action in r._actions:  # a comma list makes a grid (one shadow per epochs x lr, in folders under --out)
        if action.dest in ("epochs", "lr"):
            item = int if action.dest == "epochs" else float
            action.type, action.default = _comma_list(item), [action.default]
            action.metavar = "E[,E...]" if item is int else "LR[,LR...]"
            action.help = f"{action.help}; a comma list (with --target and --holdout) builds a grid of recipes"
    r.set_defaults(fn=cmd_reference_build)
    r = ref_sub.add_parser("advise", parents=[common], help="does the target need a shadow reference, its base, or none? "
                                                           "(from known non-members only)")
    r.add_argument("--target", required=True, help=TARGET_HELP)
    r.add_argument("--base", required=True, help="the base the target was fine-tuned from")
    r.add_argument("--dataset", required=True)
    r.add_argument("--nonmembers", type=int, default=None, metavar="N",
                   help="compare on N known non-members drawn as `reference build --seed` draws them (default: all)")
    r.add_argument("--seed", type=int, default=0, help="seed of the draw and of the bootstrap")
    r.add_argument("--target-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the loaders of the target and the base, as an audit passes it (repeatable)")
    r.set_defaults(fn=cmd_reference_advise)
