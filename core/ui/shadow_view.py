"""Shadow references on the analysis pages: build one from the dataset's known non-members
as a background job (:mod:`core.pipeline.reference`; a grid of recipes,
:mod:`core.pipeline.shadow_grid`; several shadows of one recipe,
:mod:`core.pipeline.shadow_set`), and say what each shadow among a run's references is,
from its card."""

from __future__ import annotations

import streamlit as st

from core.runtime import jobs
from core.runtime.store import Workspace
from core.ui.common import job_panel, settings
from core.ui.runs import active_job, check_typed_target

SHADOW_KIND = "shadow-reference"
GRID_KIND = "shadow-grid"
SET_KIND = "shadow-set"
VARY_LABELS = {"seed": "the same non-members (seeds differ)", "subset": "its own disjoint non-members",
               "both": "folds of disjoint non-members, several seeds each"}
ADVICE_KIND = "reference-advice"


FORM_WORDS = (("--vary seed", "“the same non-members”"), ("--vary both", "“folds of disjoint non-members”"),
              ("--nonmembers", "Known non-members"), ("--shadows", "Shadows"), ("--folds", "Folds"),
              ("--epochs", "Epochs"), ("--lr", "Learning rate"), ("--holdout", "Held-out non-members"))
"""The build's options as the CLI names them (in the messages it shares with the form) -> the form's labels."""


def in_form_words(message: str) -> str:
    """A build refusal as the form says it: the CLI's option names replaced by the form's labels."""
    for flag, label in FORM_WORDS:
        message = message.replace(flag, label)
    return message


def _bases(target: str | None) -> list[str]:
    """Built-in models a shadow can start from (an objective fine-tunes their folder's
    layout): of the audited target's family when it is known, never the target itself; a
    zoo target's own base (its natural reference) first, so the picker starts on it."""
    from core.recipes.shadow_objectives import objective_for_folder
    from core.targets import list_targets, resolve_target
    from core.targets.registry import family_of
    from core.targets.zoo.registry import ZOO, reference_of

    family = family_of(target)
    out = [t.spec for t in list_targets() if t.available and (family is None or t.family == family) and t.spec != target
           and objective_for_folder(t.family, resolve_target(t.spec).location) is not None]
    name = (target or "").removeprefix("zoo:")
    own = f"zoo:{reference_of(name)}" if target and target.startswith("zoo:") and name in ZOO else None
    return sorted(out, key=lambda spec: spec != own)  # stable: the rest keep their order


def _base_choice(target: str | None, key: str) -> tuple[str | None, str | None]:
    """(base spec, error): a built-in model, or a typed local folder checked like a typed target."""
    from core.pipeline.reference import check_supported
    from core.targets import resolve_target
    from core.targets.registry import family_of

    options = _bases(target)
    c1, c2 = st.columns(2)  # the picker first, the typed folder beside it (as the target picker reads)
    typed_now = str(st.session_state.get(f"{key}-base-typed", ""))
    picked = c1.selectbox("Base model", options, key=f"{key}-base", disabled=bool(typed_now.strip()) or not options)
    typed = c2.text_input("…or a local base folder", key=f"{key}-base-typed", placeholder="/models/whisper-tiny.en",
                          help="The public base the audited model was fine-tuned from, under the allowed folders "
                               "(OVERHEARD_ROOTS): a Hugging Face or CTranslate2 Whisper folder, a Qwen2-Audio or Audio "
                               "Flamingo 3 folder, a MusicGen folder, a diffusers AudioLDM / MusicLDM / AudioLDM 2 "
                               "pipeline, or a folder in the zoo's ar-* or diffusion-* layout.")
    try:
        base = check_typed_target(typed, settings().roots) if typed.strip() else picked
        if base is None:
            return None, "no built-in model of this family is built: type a base folder"
        ref, family = resolve_target(base), family_of(target)
        check_supported(ref)
        if family is not None and ref.family != family:
            return None, f"{base} is of the {ref.family} family and the target of the {family} family: a reference is of the target's family"
    except ValueError as exc:
        return None, str(exc)
    return base, None


def shadow_builder(ws: Workspace, dataset: str, target: str | None, *, key: str = "shadow",
                   options: tuple[tuple[str, object], ...] = ()) -> None:
    """"Build a shadow reference": the base, the recipe, how many shadows (several feed
    LiRA's per-clip spread) and the output folder, a start button, and the progress of the
    build; a finished one (or set) is offered by the reference picker. ``options``: the
    page's loader options, which the base (and the advisor's two models) load with, as the
    audit will load the target and its references."""
    from core.pipeline.common import MIN_PER_LABEL
    from core.pipeline.reference import check_shadow_out, default_shadow_out
    from core.pipeline.shadow_grid import grid_table, parse_grid, read_selection, recipe_grid, split_nonmembers
    from core.pipeline.shadow_set import set_draws
    from core.recipes.shadow import ShadowRecipe

    grid = bool(target) and bool(st.session_state.get(f"{key}-grid"))
    several = not grid and int(st.session_state.get(f"{key}-k", 1)) > 1
    job_id = active_job(ws, GRID_KIND if grid else SET_KIND if several else SHADOW_KIND, {"dataset": dataset})
    running = any(j is not None and jobs.job(ws, j)["status"] in ("queued", "running")
                  for j in (active_job(ws, kind, {"dataset": dataset}) for kind in (SHADOW_KIND, GRID_KIND, SET_KIND)))
    with st.expander("Build a shadow reference", expanded=running):
        st.caption("The base model fine-tuned here on some of this dataset's known non-members, with a recipe like the "
                   "target's: it carries the target's domain adaptation and not its members. The clips it trains on leave "
                   "every audit that uses it. See docs/references.md.")
        base, error = _base_choice(target, key)
        clips = ws.analysis_clips(dataset)
        n_non = int((clips["y"] == 0).sum())
        most = max(0, n_non - MIN_PER_LABEL)
        st.toggle("Choose the recipe among a grid", key=f"{key}-grid", disabled=not target,
                  help="One shadow per (epochs, learning rate) on the same non-members; the one whose losses on other, "
                       "held-out known non-members are closest to the target's is chosen. The held-out clips leave every "
                       "audit that uses it too.")
        c1, c2, c3, c4 = st.columns(4)
        default = ShadowRecipe()
        n = int(c1.number_input("Known non-members", min_value=1, max_value=max(1, most), value=max(1, min(50, most // 3)),
                                key=f"{key}-n", help=f"Drawn (seeded) from the {n_non} known non-members; at least "
                                                     f"{MIN_PER_LABEL} stay for the audit."))
        lr_help = "1e-5 to 5e-5 for a released Whisper; 5e-4 for the zoo's lalm-*; about 1e-3 for its ar-* and diffusion-*."
        epochs_list: list[int] = []
        lrs: list[float] = []
        holdout = 0
        if grid:
            epochs_text = c2.text_input("Epochs (comma list)", value=f"{default.epochs}", key=f"{key}-epochs-grid")
            lr_text = c3.text_input("Learning rates (comma list)", value=f"{default.lr:g}", key=f"{key}-lr-grid", help=lr_help)
            holdout = int(c4.number_input("Held-out non-members", min_value=2, max_value=max(2, most), value=max(2, min(30, most // 3)),
                                          key=f"{key}-holdout", help="Known non-members, besides those trained on, the "
                                                                     "shadows are compared with the target on."))
            try:
                epochs_list, lrs = parse_grid(epochs_text, lr_text)
                split_nonmembers(clips, n, holdout)
            except ValueError as exc:
                error = error or str(exc)
            epochs, lr = (epochs_list or [default.epochs])[0], (lrs or [default.lr])[0]
            rank = 0
        else:
            epochs = int(c2.number_input("Epochs", min_value=1, max_value=100, value=default.epochs, key=f"{key}-epochs"))
            lr = float(c3.number_input("Learning rate", min_value=1e-8, max_value=1.0, value=default.lr, format="%.1e",
                                       key=f"{key}-lr", help=lr_help))
            rank = int(c4.number_input("LoRA rank", min_value=0, max_value=1024, value=default.lora_rank, key=f"{key}-lora",
                                       help="0: every weight is fine-tuned. R > 0: LoRA adapters of rank R on the linear layers "
                                            "(for a base too large to fine-tune whole), merged into the weights when saved."))
        k, vary, folds = 1, "seed", 2
        if not grid:
            d1, d2, d3 = st.columns([1, 2, 1])
            k = int(d1.number_input("Shadows", min_value=1, max_value=50, value=1, key=f"{key}-k",
                                    help="K shadows of this recipe, each with its own seed (K fine-tunings): two or more give "
                                         "LiRA's per-clip spread (calibrations resid and lira). Picked as one reference."))
            vary = d2.radio("Each shadow trains on", list(VARY_LABELS), format_func=VARY_LABELS.get, key=f"{key}-vary",
                            disabled=k < 2, horizontal=True,
                            help="Disjoint draws take K x the non-members above (folds: F x), all of which leave the "
                                 "audit unless it cross-fits the shadows.")
            folds = int(d3.number_input("Folds", min_value=2, max_value=25, value=2, key=f"{key}-folds", disabled=vary != "both",
                                        help="With folds: the disjoint draws, K / F shadows (seeds) on each; a cross-fitted "
                                             "audit calibrates each clip against the other folds' shadows."))
            if k > 1:
                try:
                    set_draws(clips, n, k, vary=vary, folds=folds)
                except ValueError as exc:
                    error = error or str(exc)
        out_default = (str(default_shadow_out(ws, base, dataset)) + ("-grid" if grid else f"-{k}shadows" if k > 1 else "")) if base else ""
        out_text = st.text_input("Output folder", value=out_default, key=f"{key}-out-{out_default}",
                                 help="Inside the workspace; a relative path is taken under <workspace>/references.")
        try:
            out = str(check_shadow_out(ws, out_text)) if base else None
        except ValueError as exc:
            out, error = None, error or str(exc)
        if most < 1:
            error = f"only {n_non} known non-members: none can be spared for a shadow"
        if error:
            st.caption(f"⚠ {in_form_words(error)}")
        recipe = ShadowRecipe(epochs=epochs, lr=lr, lora_rank=rank)
        if grid:
            kind, params = GRID_KIND, {"dataset": dataset, "base": base, "target": target, "out": out, "n_nonmembers": n,
                                       "n_holdout": holdout, "recipes": [r.to_dict() for r in recipe_grid(recipe, epochs_list, lrs)]}
        elif k > 1:
            kind, params = SET_KIND, {"dataset": dataset, "base": base, "out": out, "n_nonmembers": n, "shadows": k, "vary": vary,
                                      "recipe": recipe.to_dict()} | ({"folds": folds} if vary == "both" else {})
        else:
            kind, params = SHADOW_KIND, {"dataset": dataset, "base": base, "out": out, "n_nonmembers": n, "recipe": recipe.to_dict()}
        if options:
            params["options"] = dict(options)
        label = "Build the shadow reference" + (" grid" if grid else f"s ({k})" if k > 1 else "")
        if st.button(label, key=f"{key}-start", disabled=running or error is not None):
            jobs.submit(ws, kind, params)
            st.rerun()
        row = job_panel(ws, job_id) if job_id else None
        if row is not None and row["status"] == "done":
            st.success(f"Shadow reference ready: {row['run_id']}; pick it under Reference model(s).")
        if grid and out and read_selection(out) is not None:
            st.dataframe(grid_table(read_selection(out) or {}), hide_index=True)
        if target:
            _advisor(ws, dataset, target, base, n, key, options)


def _advisor(ws: Workspace, dataset: str, target: str, base: str | None, n: int, key: str,
             options: tuple[tuple[str, object], ...] = ()) -> None:
    """"Ask the advisor": does ``target`` need a shadow of ``base``, or is the base (or no
    reference) enough? Compared on the ``n`` known non-members a shadow would take, as a job;
    the newest answer is shown, and an MIA run with references records it."""
    from core.pipeline.reference import latest_advice

    st.markdown("**Does this target need a shadow?** The advisor compares the target and the base above on the "
                "known non-members a shadow would train on (no suspect is read).")
    job_id = active_job(ws, ADVICE_KIND, {"dataset": dataset, "target": target})
    running = job_id is not None and jobs.job(ws, job_id)["status"] in ("queued", "running")
    if st.button("Ask the advisor", key=f"{key}-advise", disabled=running or base is None):
        jobs.submit(ws, ADVICE_KIND, {"dataset": dataset, "target": target, "base": base, "n_nonmembers": n, "seed": 0}
                    | ({"options": dict(options)} if options else {}))
        st.rerun()
    if job_id:
        job_panel(ws, job_id)
    advice = latest_advice(ws, dataset, target)
    if advice is not None:
        st.info(f"Advisor (base {advice['base']}): **{advice['recommendation']}**. {advice['reason']}")


def shadow_cards_caption(references: list[str] | tuple[str, ...], excluded: list[dict] | None,
                         cross_fit: dict | None = None) -> None:
    """One line per shadow among ``references``: its base, recipe, how many known
    non-members it trained on, and that they were kept out of this audit (or, cross-fitted,
    audited against the other shadows: ``cross_fit`` is the run's summary)."""
    from core.recipes.shadow import shadow_lines
    from core.records import cross_fit as cross_fit_text

    for line in shadow_lines(list(references), excluded, cross_fitted=cross_fit is not None):
        st.caption(f"Shadow reference {line}.")
    if cross_fit is not None:
        st.caption(f"Cross-fitted shadows: {cross_fit_text(cross_fit)}.")
