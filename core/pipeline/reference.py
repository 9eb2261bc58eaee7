"""Shadow references as operations: build one from a workspace dataset's known
non-members, keep those clips out of every audit that uses it, choose one recipe among a
grid by how closely each shadow's losses on held-out known non-members follow the target's
(:func:`build_shadow_grid`), and advise which reference fits a target (its base, a shadow,
or none).

The fine-tuning itself is :mod:`core.recipes.shadow`; the advisor's statistic is
:mod:`core.mia.advisor`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

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


def _clips_by_hash(clips: pd.DataFrame, hashes: Sequence[str]) -> pd.DataFrame:
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
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
) -> dict:
    """Fine-tune ``base`` on known non-members of ``dataset`` into the checkpoint folder
    ``out`` (:func:`core.recipes.shadow.train_shadow`); returns its card.

    The clips are ``n_nonmembers`` drawn by :func:`choose_nonmembers` with the recipe's
    seed, or exactly ``clip_hashes`` (known non-members) when given (``selection``: how
    the caller chose them, in words, for the card). A rerun of the same
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
        chosen = _clips_by_hash(clips, clip_hashes)
        how = selection or f"{len(clip_hashes)} known non-members chosen by the caller"
    else:
        chosen = choose_nonmembers(clips, n_nonmembers, seed=recipe.seed)
        how = f"{n_nonmembers} of {int((clips['y'] == 0).sum())} known non-members, drawn with seed {recipe.seed} in content-hash order"
    # a fresh float32 copy, never the pooled model: training changes its weights
    target = ref.load(device=None if settings.device in (None, "auto") else settings.device, **objective.load_options)
    try:
        choose_language(ws, dataset, target, clips, settings)
        inputs = clip_inputs(stored_clips(ws, chosen), settings.analysis_sr, settings.limits)
        return train_shadow(target, inputs, out, recipe=recipe, progress=progress, cancelled=cancelled, card={
            "dataset": {"name": dataset, "fingerprint": clips_fingerprint(clips), "selection": how,
                        "paths": chosen["path"].astype(str).tolist()}})
    finally:
        target.unload()


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


def workspace_shadows(ws: Workspace) -> list[str]:
    """Finished shadow references under ``<workspace>/references`` (and the chosen shadow of
    each grid there, :func:`build_shadow_grid`), as folder specs, newest first."""
    from core.recipes.shadow import read_card

    folder = ws.root / REFERENCES_DIR
    found = [p for p in folder.iterdir() if p.is_dir() and read_card(p) is not None] if folder.is_dir() else []
    for grid in (p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
        chosen = (read_selection(grid) or {}).get("chosen_folder")  # a grid's chosen shadow, not the others
        if chosen and read_card(chosen) is not None:
            found.append(Path(chosen))
    return [str(p.resolve()) for p in sorted(found, key=lambda p: (p / "card.json").stat().st_mtime, reverse=True)]


# -- the clips a shadow trained on (or was chosen on) never enter an audit that uses it --------------
def trained_clips(references: Sequence[str], targets: Resolved | None = None) -> dict[str, str]:
    """clip hash -> why it leaves the audit, for every clip a reference among
    ``references`` trained on as a shadow (its card lists ``trained_clip_hashes``) or
    that was held out to choose its recipe among a grid's (``heldout_clip_hashes``, written
    by :func:`build_shadow_grid`). References without such a card (a base, a zoo model)
    exclude nothing."""
    from core.recipes.shadow import read_card

    out: dict[str, str] = {}
    for spec in references:
        ref = (targets if targets is not None else Resolved()).ref(spec)
        card = read_card(ref.location) if ref.location is not None and Path(ref.location).is_dir() else None
        for h in (card or {}).get("trained_clip_hashes", ()):
            out.setdefault(str(h), f"trained the shadow reference {ref.spec}")
        for h in (card or {}).get("heldout_clip_hashes", ()):
            out.setdefault(str(h), f"{HELDOUT_REASON} (shadow reference {ref.spec})")
    return out


def exclude_trained(clips: pd.DataFrame, references: Sequence[str],
                    targets: Resolved | None = None) -> tuple[pd.DataFrame, list[dict] | None]:
    """``clips`` without those a shadow reference trained on or was chosen on
    (:func:`trained_clips`), and what was left out
    (``[{"clip_hash", "path", "label", "reason"}]``; None when no reference is a shadow)."""
    why = trained_clips(references, targets)
    if not why:
        return clips, None
    out = clips["clip_hash"].isin(why).to_numpy()
    gone = clips[out]
    excluded = [{"clip_hash": h, "path": str(p), "label": "member" if y else "non-member", "reason": why[h]}
                for h, p, y in zip(gone["clip_hash"], gone["path"], gone["y"])]
    return clips[~out].reset_index(drop=True), excluded


# -- a grid of recipes, the shadow chosen on held-out known non-members ---------------------------
SELECTION_FILE = "selection.json"
"""The record of a grid build, beside its shadows: ``<out>/selection.json``."""

SELECTION_KIND = "shadow-recipe-selection"

GRID_STATISTIC = ("median over the held-out known non-members of the paired gap (the shadow's mean token loss on the clip "
                  "minus the target's, nats/token); the chosen shadow has the smallest absolute median gap, ties "
                  f"(within {1e-9:g}) going to the cheaper recipe (fewer epochs, then the smaller learning rate)")
"""How :func:`build_shadow_grid` chooses, in words (written in the selection record)."""

HELDOUT_REASON = "held out to choose the shadow's recipe"
"""Why an audit leaves out the clips a grid compared its shadows on (followed by the shadow's spec)."""

GRID_DIFFUSION = ("choosing a shadow's recipe compares per-token losses, which a diffusion model has none of (not implemented "
                  "for diffusion): build one shadow per recipe and compare the audits")


def split_nonmembers(clips: pd.DataFrame, n: int, holdout: int, *, seed: int = 0,
                     keep: int = MIN_PER_LABEL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` training and ``holdout`` held-out known non-members (``y == 0``) of an
    analysis-clips table, disjoint: the non-members sorted by content hash, permuted by
    ``seed``, the first ``n`` to train on and the next ``holdout`` held out (each part in
    content-hash order). The same clips on every machine and every rerun.

    Raises
    ------
    ValueError
        ``n`` or ``holdout`` below 1 (2 for ``holdout``: a gap needs two clips), or fewer
        than ``n + holdout + keep`` non-members.
    """
    non = clips[clips["y"] == 0].sort_values("clip_hash").reset_index(drop=True)
    if n < 1 or holdout < 2 or n + holdout + keep > len(non):
        raise ValueError(f"cannot take {n} training and {holdout} held-out of the {len(non)} known non-members for a grid of "
                         f"shadow recipes: nonmembers >= 1, holdout >= 2 and nonmembers + holdout at most "
                         f"{max(0, len(non) - keep)} (at least {keep} must stay for the audit)")
    perm = np.random.default_rng(seed).permutation(len(non))
    train, held = np.sort(perm[:n]), np.sort(perm[n:n + holdout])
    return non.iloc[train].reset_index(drop=True), non.iloc[held].reset_index(drop=True)


def recipe_gap(shadow_loss: Sequence[float], target_loss: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
               level: float = 0.95) -> dict[str, Any]:
    """How closely a shadow's per-clip losses follow the target's on the same held-out clips.

    Parameters
    ----------
    shadow_loss, target_loss : ``[n]`` per-clip mean token loss (same clips, same order).

    Returns
    -------
    dict
        ``median_gap`` (median of ``shadow - target``: > 0, the shadow fits them worse than
        the target, an undershoot; < 0, an overshoot), ``gap_ci`` (seeded percentile
        bootstrap of the median, clips resampled), ``abs_gap`` (what is minimized),
        ``shadow_loss`` and ``target_loss`` (means) and ``n``.

    Raises
    ------
    ValueError
        shapes differ, fewer than two clips, or a loss is not finite.
    """
    s = np.asarray(shadow_loss, dtype=np.float64).reshape(-1)
    t = np.asarray(target_loss, dtype=np.float64).reshape(-1)
    if s.shape != t.shape or s.size < 2:
        raise ValueError(f"a recipe's gap needs two equal-length loss vectors of at least 2 clips, got {s.size} and {t.size}")
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        raise ValueError("a recipe's gap: a per-clip loss is not finite")
    d = s - t
    boots = np.median(d[np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))], axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    med = float(np.median(d))
    return {"median_gap": med, "gap_ci": [float(lo), float(hi)], "abs_gap": abs(med), "shadow_loss": float(s.mean()),
            "target_loss": float(t.mean()), "n": int(d.size)}


def choose_recipe(rows: Sequence[dict[str, Any]], *, tol: float = 1e-9) -> int:
    """The index of the row (``abs_gap``, ``recipe`` with ``epochs`` and ``lr``) whose
    absolute gap is smallest; rows within ``tol`` of it are tied and the cheaper recipe
    wins (fewer epochs, then the smaller learning rate, then the earlier row)."""
    if not rows:
        raise ValueError("choose_recipe: no recipe to choose from")
    best = min(float(r["abs_gap"]) for r in rows)
    tied = [i for i, r in enumerate(rows) if float(r["abs_gap"]) <= best + tol]
    return min(tied, key=lambda i: (int(rows[i]["recipe"]["epochs"]), float(rows[i]["recipe"]["lr"]), i))


def recipe_folder(recipe: ShadowRecipe) -> str:
    """The folder name of a grid's shadow: ``e<epochs>-lr<lr>`` (e.g. ``e6-lr0.000125``)."""
    return f"e{recipe.epochs}-lr{recipe.lr:g}"


def recipe_grid(base: ShadowRecipe, epochs: Sequence[int], lrs: Sequence[float]) -> list[ShadowRecipe]:
    """``base`` with every (epochs, learning rate) pair, epochs outer, duplicates dropped."""
    from dataclasses import replace

    out: list[ShadowRecipe] = []
    for e in epochs:
        for lr in lrs:
            r = replace(base, epochs=int(e), lr=float(lr))
            if r not in out:
                out.append(r)
    return out


def parse_grid(epochs: str, lrs: str) -> tuple[list[int], list[float]]:
    """The epochs and learning rates of a grid typed as comma lists (``"2,6,12"``, ``"1e-4,5e-4"``).

    Raises
    ------
    ValueError
        one line naming the list that is empty or holds something else than positive numbers.
    """
    def parse(text: str, kind: type, name: str) -> list:
        try:
            values = [kind(x.strip()) for x in str(text).split(",") if x.strip()]
        except ValueError:
            values = []
        if not values or any(not v > 0 for v in values):
            raise ValueError(f"type the grid's {name} as a comma list of positive numbers (got {text!r})")
        return values

    return parse(epochs, int, "epochs"), parse(lrs, float, "learning rates")


def grid_table(record: dict) -> pd.DataFrame:
    """One row per recipe of a selection record: epochs, learning rate, the median gap and its
    interval (nats/token), the training time, and which one was chosen."""
    return pd.DataFrame([{"epochs": r["recipe"]["epochs"], "lr": r["recipe"]["lr"], "median gap": round(r["median_gap"], 4),
                          "95% CI": f"[{r['gap_ci'][0]:+.4f}, {r['gap_ci'][1]:+.4f}]", "train s": r.get("train_time_s"),
                          "chosen": i == record.get("chosen"), "folder": r["folder"]}
                         for i, r in enumerate(record.get("recipes") or ())])


def read_selection(out: str | Path) -> dict | None:
    """The selection record of a grid build in ``out`` (None when there is none)."""
    import json

    path = Path(out) / SELECTION_FILE
    try:
        rec = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("kind") == SELECTION_KIND else None


def _write_json(path: Path, obj: dict) -> None:
    import json
    import os

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def build_shadow_grid(
    ws: Workspace,
    dataset: str,
    base: str | TargetRef,
    target: str | TargetRef,
    out: str | Path,
    *,
    recipes: Sequence[ShadowRecipe],
    n_nonmembers: int,
    n_holdout: int,
    n_boot: int = 2000,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
) -> dict[str, Any]:
    """One shadow of ``base`` per recipe of ``recipes``, all on the same ``n_nonmembers``
    known non-members, and the one whose losses on ``n_holdout`` other known non-members
    come closest to ``target``'s (:data:`GRID_STATISTIC`).

    The clips are drawn by :func:`split_nonmembers` with the first recipe's seed. Each
    shadow is an ordinary shadow folder ``out/<recipe_folder>`` built by
    :func:`build_shadow` (a finished one is reused, a partial one resumes). Every model's
    per-clip losses on the held-out clips are read in ``given`` mode through the evidence
    cache. The record (:data:`SELECTION_FILE` in ``out``) lists each recipe with its gap
    and bootstrap interval, the chosen folder and the held-out clip hashes; the chosen
    shadow's card gets ``heldout_clip_hashes``, so every audit that uses it leaves the
    held-out clips out as well as those it trained on (:func:`trained_clips`).

    ``progress(recipes done, recipes, message)`` is called as each recipe is built and scored.

    Returns
    -------
    dict
        The selection record: ``recipes`` (each ``recipe``, ``folder``, ``median_gap``,
        ``gap_ci``, ``abs_gap``, ``shadow_loss``, ``target_loss``, ``n``, ``train_time_s``),
        ``chosen`` (its index), ``chosen_folder``, ``statistic``, ``target``, ``base``,
        ``dataset``, ``trained_clip_hashes``, ``heldout_clip_hashes``.

    Raises
    ------
    ValueError
        no recipe, a diffusion target or base (:data:`GRID_DIFFUSION`), a target of another
        family than the base, too few known non-members, a held-out clip without a
        transcript, ``out`` being a shadow folder itself; and what :func:`build_shadow` refuses.
    """
    from core.pipeline.evidence import extract_evidence
    from core.recipes.shadow import read_card
    from core.stages import MIAConfig

    if not recipes:
        raise ValueError("a grid of shadow recipes needs at least one recipe")
    settings = settings or Settings.from_env(ws.root)
    targets = targets if targets is not None else Resolved()
    bref, tref = targets.ref(base), targets.ref(target)
    if "diffusion" in (tref.family, bref.family):
        raise ValueError(GRID_DIFFUSION)
    if tref.family != bref.family:
        raise ValueError(f"the target {tref.spec} is of the {tref.family} family and the base {bref.spec} of the {bref.family} "
                         "family: a shadow is compared with a target of its base's family")
    check_supported(bref)
    out = Path(out)
    if read_card(out) is not None:
        raise ValueError(f"{out} is a shadow folder: a grid writes its shadows into folders under a new one; choose another --out")
    clips = ws.analysis_clips(dataset)
    seed = recipes[0].seed
    train, held = split_nonmembers(clips, n_nonmembers, n_holdout, seed=seed)
    if (held["text"].fillna("").astype(str).str.strip() == "").any():
        raise ValueError("a grid compares the shadows with the target on the held-out non-members' transcripts; some have none")
    n_non = int((clips["y"] == 0).sum())
    how = (f"{n_nonmembers} of {n_non} known non-members, drawn with seed {seed} in content-hash order, disjoint from "
           f"{n_holdout} held out to choose the recipe")
    total = len(recipes)
    report = progress or (lambda done, tot, msg: None)
    config = MIAConfig(mode="given")

    def losses_of(spec: Any) -> dict[str, float]:
        _, evidence, _, _, _ = extract_evidence(ws, dataset, spec, config, settings=settings, clips=held, cancelled=cancelled)
        return clip_losses(evidence)

    report(0, total, f"the target's losses on {n_holdout} held-out known non-members")
    target_losses = losses_of(tref)
    rows: list[dict[str, Any]] = []
    for i, recipe in enumerate(recipes):
        name = f"recipe {i + 1}/{total} ({recipe.epochs} epoch(s), lr {recipe.lr:g})"
        folder = out / recipe_folder(recipe)
        card = build_shadow(ws, dataset, bref, folder, recipe=recipe, clip_hashes=train["clip_hash"].tolist(), selection=how,
                            settings=settings, cancelled=cancelled, targets=targets,
                            progress=lambda d, t, m, i=i, name=name: report(i, total, f"{name}: {m}"))
        shadow_losses = losses_of(str(folder))
        both = [h for h in held["clip_hash"] if h in target_losses and h in shadow_losses]
        gap = recipe_gap([shadow_losses[h] for h in both], [target_losses[h] for h in both], n_boot=n_boot, seed=seed)
        rows.append({"recipe": recipe.to_dict(), "folder": str(folder), **gap, "train_time_s": card.get("train_time_s")})
        report(i + 1, total, f"{name}: median gap {gap['median_gap']:+.4f} [{gap['gap_ci'][0]:+.4f}, {gap['gap_ci'][1]:+.4f}] "
                             "nats/token")
    chosen = choose_recipe(rows)
    heldout = held["clip_hash"].tolist()
    record = {"kind": SELECTION_KIND, "dataset": dataset, "base": bref.spec, "target": tref.spec,
              "target_fingerprint": getattr(tref, "fingerprint", None), "statistic": GRID_STATISTIC, "seed": seed,
              "n_nonmembers": n_nonmembers, "n_holdout": n_holdout, "recipes": rows, "chosen": chosen,
              "chosen_folder": rows[chosen]["folder"], "trained_clip_hashes": train["clip_hash"].tolist(),
              "heldout_clip_hashes": heldout}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / SELECTION_FILE, record)
    # the chosen shadow's card says which clips chose it: an audit that uses it leaves them out too
    folder = Path(rows[chosen]["folder"])
    card = read_card(folder) or {}
    before = [str(h) for h in card.get("heldout_clip_hashes") or ()]
    card["heldout_clip_hashes"] = before + [h for h in heldout if h not in before]
    card["recipe_selection"] = {"record": str((out / SELECTION_FILE).resolve()), "target": tref.spec,
                                "statistic": GRID_STATISTIC, "median_gap": rows[chosen]["median_gap"],
                                "gap_ci": rows[chosen]["gap_ci"], "recipes": total}
    _write_json(folder / "card.json", card)
    return record


# -- the advisor ------------------------------------------------------------------------------
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
) -> dict[str, Any]:
    """Which reference fits ``target``, from known non-members only: the paired loss gap
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
    from core.stages import MIAConfig

    targets = targets if targets is not None else Resolved()
    tref, bref = targets.ref(target), targets.ref(base)
    diffusion = tref.family == "diffusion"
    if diffusion != (bref.family == "diffusion"):
        raise ValueError(ADVISOR_MIXED)
    clips = ws.analysis_clips(dataset)
    if clip_hashes is not None:
        chosen = _clips_by_hash(clips, clip_hashes)
    else:
        chosen = choose_nonmembers(clips, n_nonmembers, seed=seed, keep=0) if n_nonmembers else clips[clips["y"] == 0]
    if (chosen["text"].fillna("").astype(str).str.strip() == "").any():
        raise ValueError(f"the advisor compares target and base on the non-members' {'captions' if diffusion else 'transcripts'}; "
                         "some have none")
    config = MIAConfig(mode="given")
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
                 progress=ctx.progress, cancelled=ctx.cancelled)
    return str(params["out"])


@job_kind("shadow-grid")
def _shadow_grid_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Build a grid of shadows and choose one (params: dataset, base, target, out,
    n_nonmembers, n_holdout, recipes: a list of recipe dicts); returns the chosen folder."""
    from core.recipes.shadow import ShadowRecipe

    record = build_shadow_grid(ws, params["dataset"], params["base"], params["target"], params["out"],
                               recipes=[ShadowRecipe.from_dict(r) for r in params["recipes"]],
                               n_nonmembers=int(params["n_nonmembers"]), n_holdout=int(params["n_holdout"]),
                               progress=ctx.progress, cancelled=ctx.cancelled)
    return str(record["chosen_folder"])


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
                              progress=ctx.progress, cancelled=ctx.cancelled)
    return save_advice(ws, advice, n_nonmembers=n, seed=seed)
