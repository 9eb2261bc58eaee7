"""Shadow references as operations: build one from a workspace dataset's known
non-members, keep those clips out of every audit that uses it (and the clips a grid of
recipes was chosen on, :mod:`core.pipeline.shadow_grid`; with several shadows,
:mod:`core.pipeline.shadow_set`, the union of their clips), and advise which reference fits
a target (its base, a shadow, or none).

The fine-tuning itself is :mod:`core.recipes.shadow`; the advisor's statistic is
:mod:`core.mia.advisor`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from core.pipeline.common import MIN_PER_LABEL, Cancelled, Progress, Resolved
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace

if TYPE_CHECKING:
    from core.recipes.shadow import ShadowRecipe
    from core.targets.registry import TargetRef


def choose_nonmembers(clips: pd.DataFrame, n: int, *, seed: int = 0, keep: int = MIN_PER_LABEL) -> pd.DataFrame:
    """``n`` of the known non-members (``y == 0``) of an analysis-clips table, drawn by
    ``seed`` from the non-members sorted by content hash: the same clips on every machine
    and every rerun, whatever order the table came in.

    Raises
    ------
    ValueError
        fewer than ``n + keep`` non-members (``keep`` must stay for the audit).
    """
    non = clips[clips["y"] == 0].sort_values("clip_hash").reset_index(drop=True)
    if n < 1 or n + keep > len(non):
        raise ValueError(f"cannot take {n} of the {len(non)} known non-members for a shadow reference: "
                         f"choose 1 to {max(0, len(non) - keep)} (at least {keep} must stay for the audit)")
    idx = np.sort(np.random.default_rng(seed).choice(len(non), size=n, replace=False))
    return non.iloc[idx].reset_index(drop=True)


def clips_by_hash(clips: pd.DataFrame, hashes: Sequence[str]) -> pd.DataFrame:
    """The rows of ``hashes`` (in that order), each a known non-member of the dataset."""
    rows = clips.set_index("clip_hash")
    missing = [h for h in hashes if h not in rows.index]
    if missing:
        raise ValueError(f"{len(missing)} clip(s) are not in the dataset (first: {missing[0][:12]})")
    picked = rows.loc[list(hashes)].reset_index()
    members = picked[picked["y"] != 0]
    if len(members):
        raise ValueError(f"a shadow reference trains on known non-members only: {members['path'].iloc[0]} is a member")
    return picked


def check_supported(ref: TargetRef):
    """Refuse, before any weights load, a base a shadow cannot be built from; return the
    :class:`~core.recipes.shadow_objectives.Objective` that fine-tunes it, picked by the
    folder's layout among its family's (:func:`~core.recipes.shadow_objectives.objective_for_folder`):
    speech seq2seq folders (Hugging Face or CTranslate2 Whisper layouts, the zoo's
    ``lalm-*``), chat audio-language folders (Qwen2-Audio, Audio Flamingo 3), MusicGen
    folders, diffusers pipelines (AudioLDM, MusicLDM, AudioLDM 2), and the zoo's
    autoregressive (``ar-*``) and diffusion (``diffusion-*``) layouts (a zoo model, a copy of
    one, a shadow built from one).

    Raises
    ------
    ValueError
        one line naming what is supported.
    """
    from core.recipes.shadow import SUPPORTED
    from core.recipes.shadow_objectives import objective_for_folder, objectives_for

    objective = objective_for_folder(ref.family, ref.location)
    if objective is None:
        kinds = [o.folder_kind for o in objectives_for(ref.family)]
        what = f"a {ref.family} model" if not kinds else f"not a {' or '.join(kinds)} checkpoint folder"
        raise ValueError(f"{ref.spec} is {what}: shadow references can be built from {SUPPORTED} only")
    return objective


def build_shadow(
    ws: Workspace,
    dataset: str,
    base: str | TargetRef,
    out: str | Path,
    *,
    n_nonmembers: int = 0,
    recipe: ShadowRecipe | None = None,
    clip_hashes: Sequence[str] | None = None,
    selection: str | None = None,
    card: dict | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict:
    """Fine-tune ``base`` on known non-members of ``dataset`` into the checkpoint folder
    ``out`` (:func:`core.recipes.shadow.train_shadow`); returns its card.

    ``options``: the base's loader options (``--target-option``: a chat model's ``prompt``,
    a multilingual model's ``language``), as an audit applies them to the target and its
    references; the card records them. What the training objective needs (float32
    weights) wins over them.

    The clips are ``n_nonmembers`` drawn by :func:`choose_nonmembers` with the recipe's
    seed, or exactly ``clip_hashes`` (known non-members) when given (``selection``: how
    the caller chose them, in words, for the card). ``card``: what the caller adds to the
    card (a set of shadows, :mod:`core.pipeline.shadow_set`, records the shadow's place in
    it). A rerun of the same
    request resumes after the last finished epoch; a finished one returns its card.

    Raises
    ------
    ValueError
        an unsupported base (one line naming what is supported), too few non-members, a
        clip without a transcript or caption, an output folder holding something else.
    """
    from core.data.ingest import clips_fingerprint
    from core.pipeline.evidence import choose_language, clip_inputs, stored_clips
    from core.recipes.shadow import ShadowRecipe, train_shadow

    recipe = recipe or ShadowRecipe()
    settings = settings or Settings.from_env(ws.root)
    ref = (targets if targets is not None else Resolved()).ref(base)
    objective = check_supported(ref)
    clips = ws.analysis_clips(dataset)
    if clip_hashes is not None:
        chosen = clips_by_hash(clips, clip_hashes)
        how = selection or f"{len(clip_hashes)} known non-members chosen by the caller"
    else:
        chosen = choose_nonmembers(clips, n_nonmembers, seed=recipe.seed)
        how = f"{n_nonmembers} of {int((clips['y'] == 0).sum())} known non-members, drawn with seed {recipe.seed} in content-hash order"
    # a fresh float32 copy, never the pooled model: training changes its weights
    opts = check_loader_options(options)
    target = ref.load(device=None if settings.device in (None, "auto") else settings.device, **(opts | objective.load_options))
    try:
        choose_language(ws, dataset, target, clips, settings)
        inputs = clip_inputs(stored_clips(ws, chosen), settings.analysis_sr, settings.limits)
        return train_shadow(target, inputs, out, recipe=recipe, progress=progress, cancelled=cancelled, card={
            "dataset": {"name": dataset, "fingerprint": clips_fingerprint(clips), "selection": how,
                        "paths": chosen["path"].astype(str).tolist()},
            **({"loader_options": {k: str(v) for k, v in opts.items()}} if opts else {}), **(card or {})})
    finally:
        target.unload()


def check_loader_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Loader options for a shadow build or the advisor, as a dict.

    Raises
    ------
    ValueError
        ``trust_remote_code``: a shadow build never runs code from a checkpoint folder.
    """
    opts = dict(options or {})
    if opts.get("trust_remote_code"):
        raise ValueError("a shadow build does not run Python code from a checkpoint folder (trust_remote_code)")
    opts.pop("trust_remote_code", None)
    return opts


def scoring_config(options: Mapping[str, Any] | None = None):
    """The MIA settings the advisor and a grid read models' losses with: each clip's
    transcript (or caption) scored, ``given`` mode, the models loaded with ``options``."""
    from core.stages import MIAConfig

    return MIAConfig(mode="given", target_options=tuple(check_loader_options(options).items()))


REFERENCES_DIR = "references"
"""Where the dashboard builds shadow references: ``<workspace>/references/<name>``."""


def default_shadow_out(ws: Workspace, base: str, dataset: str) -> Path:
    """``<workspace>/references/<base>-shadow-<dataset>`` (a zoo base by its name, a folder by its last part)."""
    name = base.split(":", 1)[1] if base.startswith("zoo:") else Path(base.rstrip("/\\")).name
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{name}-shadow-{dataset}")
    return ws.root / REFERENCES_DIR / safe


def check_shadow_out(ws: Workspace, out: str | Path) -> Path:
    """The output folder of a shadow built from the dashboard, resolved: a relative path is
    taken under ``<workspace>/references``; it must lie inside the workspace.

    Raises
    ------
    ValueError
        a folder outside the workspace.
    """
    path = Path(str(out).strip()).expanduser()
    if not str(out).strip():
        raise ValueError("type an output folder for the shadow reference")
    path = (path if path.is_absolute() else ws.root / REFERENCES_DIR / path).resolve()
    root = ws.root.resolve()
    if path == root or root not in path.parents:
        raise ValueError(f"the shadow reference goes in a folder inside the workspace ({root}), not {path}")
    return path


def workspace_shadows(ws: Workspace, family: str | None = None) -> list[str]:
    """Finished shadow references under ``<workspace>/references`` (the chosen shadow of each
    grid there, :func:`~core.pipeline.shadow_grid.build_shadow_grid`, and each finished set
    of shadows as its folder, :func:`~core.pipeline.shadow_set.build_shadow_set`), as
    folder specs, newest first; with ``family``, only the shadows of that model family
    (their card's; a set's is its first shadow's)."""
    from core.pipeline.shadow_grid import read_selection
    from core.pipeline.shadow_set import SET_FILE, read_shadow_set

    from core.recipes.shadow import read_card

    folder = ws.root / REFERENCES_DIR
    found: list[tuple[Path, Path]] = []  # (the spec's folder, the file whose age orders it)
    for p in (p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
        chosen = (read_selection(p) or {}).get("chosen_folder")  # a grid's chosen shadow, not the others
        if (card := read_card(p)) is not None:
            entry = (p, p / "card.json")
        elif chosen and (card := read_card(chosen)) is not None:
            entry = (Path(chosen), Path(chosen) / "card.json")
        elif (record := read_shadow_set(p)) is not None:  # a set: one entry, expanded to its shadows when picked
            card, entry = (read_card(p / record["folders"][0]) if record.get("folders") else None), (p, p / SET_FILE)
        else:
            continue
        if card is not None and (family is None or card.get("family", family) == family):
            found.append(entry)
    return [str(p.resolve()) for p, f in sorted(found, key=lambda pf: pf[1].stat().st_mtime, reverse=True)]


# -- the clips a shadow trained on (or was chosen on) never enter an audit that uses it --------------
def trained_clips(references: Sequence[str], targets: Resolved | None = None) -> dict[str, str]:
    """clip hash -> why it leaves the audit, for every clip a reference among
    ``references`` trained on as a shadow (its card lists ``trained_clip_hashes``) or
    that was held out to choose its recipe among a grid's (``heldout_clip_hashes``, written
    by :func:`~core.pipeline.shadow_grid.build_shadow_grid`). References without such a card (a base, a zoo model)
    exclude nothing."""
    out: dict[str, str] = {}
    for spec in references:
        name, card = _shadow_card(spec, targets)
        for h in card.get("trained_clip_hashes", ()):
            out.setdefault(str(h), f"trained the shadow reference {name}")
        for h in card.get("heldout_clip_hashes", ()):
            out.setdefault(str(h), f"{HELDOUT_REASON} (shadow reference {name})")
    return out


def _shadow_card(spec: str, targets: Resolved | None = None) -> tuple[str, dict]:
    """The resolved spec of the reference ``spec`` and its shadow card ({} for a reference
    that is no shadow)."""
    from core.recipes.shadow import read_card

    ref = (targets if targets is not None else Resolved()).ref(spec)
    return ref.spec, (read_card(ref.location) if ref.location is not None and Path(ref.location).is_dir() else None) or {}


def shadow_training_sets(references: Sequence[str], targets: Resolved | None = None) -> dict[str, frozenset[str]]:
    """reference spec -> the clip hashes it trained on as a shadow (its card's
    ``trained_clip_hashes``), for every reference among ``references``.

    Raises
    ------
    ValueError
        a reference that is not a shadow (a base, a zoo model: no card with trained clips).
    """
    out: dict[str, frozenset[str]] = {}
    for spec in references:
        hashes = _shadow_card(spec, targets)[1].get("trained_clip_hashes")
        if not hashes:
            raise ValueError(f"cross-fitting calibrates each clip against the shadows that never trained on it: {spec} is not a "
                             "shadow reference (no card listing its training clips)")
        out[spec] = frozenset(str(h) for h in hashes)
    return out


def cross_fit_sets(references: Sequence[str], targets: Resolved | None = None) -> dict[str, frozenset[str]]:
    """:func:`shadow_training_sets` of references that can be cross-fitted: every one a
    shadow, on two or more disjoint sets of clips with as many shadows on each
    (:func:`core.mia.calibration.cross_fit_folds`).

    Raises
    ------
    ValueError
        a reference that is not a shadow, or folds that cannot be cross-fitted.
    """
    from core.mia.calibration import cross_fit_folds

    sets = shadow_training_sets(references, targets)
    cross_fit_folds(list(sets.values()))
    return sets


CROSS_FIT_OVERLAP = "trained two or more of the cross-fitted shadows"
"""Why a cross-fitted audit leaves a clip out (the training sets of its shadows' folds must be disjoint)."""


def exclude_trained(clips: pd.DataFrame, references: Sequence[str], targets: Resolved | None = None, *,
                    cross_fit: bool = False) -> tuple[pd.DataFrame, list[dict] | None]:
    """``clips`` without those a shadow reference trained on or was chosen on
    (:func:`trained_clips`), and what was left out
    (``[{"clip_hash", "path", "label", "reason"}]``; None when no reference is a shadow).

    ``cross_fit`` (every reference a shadow, on two or more disjoint sets of clips): the
    clips a shadow trained on stay, each to be calibrated against the shadows that never
    trained on it (:func:`core.mia.calibration.cross_fit_assignment`; shadows on the same
    clips, a set's seeds, form one fold); only the clips held out to choose a recipe and
    those shadows of two or more folds trained on leave.

    Raises
    ------
    ValueError
        with ``cross_fit``: references that cannot be cross-fitted (:func:`cross_fit_sets`),
        refused before any model runs.
    """
    why = trained_clips(references, targets)
    if cross_fit:  # a clip of one fold stays; held-out clips and clips of two folds leave
        count = Counter(h for s in set(cross_fit_sets(references, targets).values()) for h in s)
        why = {h: (CROSS_FIT_OVERLAP if count[h] > 1 else r) for h, r in why.items() if count[h] != 1}
    elif not why:
        return clips, None
    out = clips["clip_hash"].isin(why).to_numpy()
    gone = clips[out]
    excluded = [{"clip_hash": h, "path": str(p), "label": "member" if y else "non-member", "reason": why[h]}
                for h, p, y in zip(gone["clip_hash"], gone["path"], gone["y"])]
    return clips[~out].reset_index(drop=True), excluded


HELDOUT_REASON = "held out to choose the shadow's recipe"
"""Why an audit leaves out the clips a grid compared its shadows on (followed by the shadow's spec)."""


ADVISOR_MIXED = ("the reference advisor compares the same loss under both models: per-token losses, or a diffusion model's "
                 "denoising loss; a diffusion target and a token-model base (or the reverse) have no loss in common")
"""Why the advisor refuses a target and base of which only one is a diffusion model."""


def clip_losses(evidence: list) -> dict[str, float]:
    """clip hash -> the clip's loss: its mean negative log-likelihood per scored token, or for
    diffusion evidence its mean denoising loss conditioned on the caption (over the
    evidence's timesteps and noise draws)."""
    out: dict[str, float] = {}
    for ev in evidence:
        if ev.tokens is not None and len(ev.tokens.logprob):
            out[ev.clip_hash] = float(-np.mean(ev.tokens.logprob))
        elif ev.diffusion is not None and ev.diffusion.loss_cond.size:
            out[ev.clip_hash] = float(np.mean(ev.diffusion.loss_cond))
    return out


def advise_reference(
    ws: Workspace,
    dataset: str,
    target: str | TargetRef,
    base: str | TargetRef,
    *,
    n_nonmembers: int | None = None,
    clip_hashes: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Which reference fits ``target``, from known non-members only (``options``: loader
    options of both models, as an audit applies them): the paired loss gap
    between ``target`` and its ``base`` (:func:`core.mia.advisor.fit_gap`) on the
    transcripts (diffusion: the denoising loss of the clips under their captions,
    :func:`clip_losses`) of the dataset's known non-members (exactly ``clip_hashes``, or
    ``n_nonmembers`` of them drawn as a shadow build draws them with the same ``seed``,
    else all), and the recommendation
    (:func:`core.mia.advisor.recommend`). Evidence goes through the cache (``given`` mode).

    Returns
    -------
    dict
        ``recommendation`` ("shadow" or "base or none"), ``reason``, ``gap`` (the
        :class:`~core.mia.advisor.FitGap` as a dict), ``target``, ``base``, ``clips``.

    Raises
    ------
    ValueError
        a diffusion target with a token-model base or the reverse (:data:`ADVISOR_MIXED`), a non-member without a
        transcript, or fewer than two clips scored by both.
    """
    from core.mia.advisor import DENOISING_UNIT, TOKEN_UNIT, fit_gap, recommend
    from core.pipeline.evidence import extract_evidence

    targets = targets if targets is not None else Resolved()
    tref, bref = targets.ref(target), targets.ref(base)
    diffusion = tref.family == "diffusion"
    if diffusion != (bref.family == "diffusion"):
        raise ValueError(ADVISOR_MIXED)
    clips = ws.analysis_clips(dataset)
    if clip_hashes is not None:
        chosen = clips_by_hash(clips, clip_hashes)
    else:
        chosen = choose_nonmembers(clips, n_nonmembers, seed=seed, keep=0) if n_nonmembers else clips[clips["y"] == 0]
    if (chosen["text"].fillna("").astype(str).str.strip() == "").any():
        raise ValueError(f"the advisor compares target and base on the non-members' {'captions' if diffusion else 'transcripts'}; "
                         "some have none")
    config = scoring_config(options)
    losses = []
    for ref in (tref, bref):
        _, evidence, _, _, _ = extract_evidence(ws, dataset, ref, config, settings=settings, clips=chosen.reset_index(drop=True),
                                                progress=progress, cancelled=cancelled)
        losses.append(clip_losses(evidence))
    both = [h for h in chosen["clip_hash"] if h in losses[0] and h in losses[1]]
    gap = fit_gap([losses[0][h] for h in both], [losses[1][h] for h in both], n_boot=n_boot, seed=seed)
    rec, why = recommend(gap, unit=DENOISING_UNIT if diffusion else TOKEN_UNIT)
    return {"recommendation": rec, "reason": why, "gap": gap.to_dict(), "target": tref.spec, "base": bref.spec,
            "dataset": dataset, "clips": len(both)}


@job_kind("shadow-reference")
def _shadow_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Build a shadow reference (params: dataset, base, out, n_nonmembers, recipe); returns its folder."""
    from core.recipes.shadow import ShadowRecipe

    build_shadow(ws, params["dataset"], params["base"], params["out"], n_nonmembers=int(params.get("n_nonmembers", 0)),
                 recipe=ShadowRecipe.from_dict(params.get("recipe", {})), clip_hashes=params.get("clip_hashes"),
                 progress=ctx.progress, cancelled=ctx.cancelled, options=params.get("options"))
    return str(params["out"])


ADVICE_KIND = "advice"
"""Run kind of a stored advisor answer (:func:`save_advice`); an MIA run with references
carries the newest one for its dataset and target (:func:`latest_advice`)."""


def save_advice(ws: Workspace, advice: dict[str, Any], *, n_nonmembers: int | None = None, seed: int = 0) -> str:
    """Store an :func:`advise_reference` answer as a run (kind ``advice``); returns its id."""
    from core.pipeline.common import provenance

    return ws.save_run(ADVICE_KIND, dataset=advice["dataset"], target=advice["target"],
                       config={"base": advice["base"], "n_nonmembers": n_nonmembers, "seed": seed}, result=advice,
                       provenance=provenance(ws, advice["dataset"], seed=seed))


def latest_advice(ws: Workspace, dataset: str, target: str) -> dict[str, Any] | None:
    """The newest stored advisor answer for ``target`` on ``dataset``, as an MIA record
    shows it (``recommendation``, ``reason``, ``base``, ``run``); None when the advisor was not asked."""
    run = ws.latest_run(ADVICE_KIND, dataset, target)
    if run is None:
        return None
    r = run["result"]
    return {"recommendation": r["recommendation"], "reason": r["reason"], "base": r["base"], "run": run["id"]}


@job_kind("reference-advice")
def _advice_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Ask the advisor (params: dataset, target, base, n_nonmembers, seed); returns the stored run's id."""
    n = int(params["n_nonmembers"]) if params.get("n_nonmembers") else None
    seed = int(params.get("seed", 0))
    advice = advise_reference(ws, params["dataset"], params["target"], params["base"], n_nonmembers=n, seed=seed,
                              progress=ctx.progress, cancelled=ctx.cancelled, options=params.get("options"))
    return save_advice(ws, advice, n_nonmembers=n, seed=seed)
