"""Several shadows of one recipe (:func:`build_shadow_set`): the per-clip spread that
LiRA's offline calibration (:func:`core.mia.calibration.lira_offline`) standardises by
needs two or more references that did not train on the suspects.

The shadows differ by seed (the batch order, the noise draws, dropout), trained on the same
drawn known non-members, each on its own disjoint draw of them, or several seeds on each of
a few disjoint draws (``vary="both"``: folds a cross-fitted audit calibrates each other's
clips with, averaging each fold's seeds). Each is an ordinary
shadow folder ``<out>/s<i>`` (:func:`core.pipeline.reference.build_shadow`); the set's record
``<out>/shadows.json`` lets ``--reference <out>`` stand for all of them
(:func:`expand_references`). An audit using several shadows leaves out every clip any of
them trained on (:func:`core.pipeline.reference.trained_clips`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from core.pipeline.common import MIN_PER_LABEL, Cancelled, Progress, Resolved
from core.pipeline.reference import clips_by_hash, build_shadow, check_supported, choose_nonmembers
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace, write_json

if TYPE_CHECKING:
    from core.recipes.shadow import ShadowRecipe
    from core.targets.registry import TargetRef


SET_FILE = "shadows.json"
"""The record of a set of shadows, beside them: ``<out>/shadows.json``."""

SET_KIND = "shadow-set"

VARY = {"seed": "the same drawn known non-members for every shadow; only the seed differs (batch order, noise draws, dropout)",
        "subset": "each shadow on its own disjoint draw of the known non-members, and its own seed",
        "both": "several shadows (seeds) on each of a few disjoint draws of the known non-members (folds to cross-fit)"}
"""What differs between the shadows of a set: name -> in words."""


def shadow_folder(i: int) -> str:
    """The folder name of a set's ``i``-th shadow (from 0): ``s<i>``."""
    return f"s{i}"


def set_draws(clips: pd.DataFrame, n: int, shadows: int, *, vary: str = "seed", seed: int = 0,
              keep: int = MIN_PER_LABEL, folds: int = 2) -> list[pd.DataFrame]:
    """The known non-members (``y == 0``) each of ``shadows`` shadows trains on.

    ``vary="seed"``: the same ``n`` clips for every shadow, drawn as a single shadow draws
    them (:func:`~core.pipeline.reference.choose_nonmembers` with ``seed``). ``vary="subset"``:
    disjoint draws of ``n``: the non-members sorted by content hash, permuted by ``seed``,
    shadow ``i`` taking positions ``i*n`` to ``(i+1)*n - 1`` (each part in content-hash
    order; a shadow's part does not depend on how many shadows the set has).
    ``vary="both"``: ``folds`` such disjoint draws, shadow ``i`` on draw ``i mod folds``
    (so its first ``folds`` shadows are a ``subset`` set's), as many shadows on each.

    Raises
    ------
    ValueError
        ``shadows`` below 1, an unknown ``vary``, too few non-members: ``n`` (times
        ``shadows``, or ``folds``, for disjoint draws) plus ``keep`` (which must stay for the
        audit); with ``both``, fewer than two folds or two shadows a fold, or a number of
        shadows that is not a multiple of ``folds``.
    """
    if shadows < 1:
        raise ValueError(f"a set of shadows needs at least one shadow, got {shadows}")
    if vary not in VARY:
        raise ValueError(f"unknown way to vary the shadows {vary!r}: choose {' or '.join(VARY)}")
    if vary == "seed":
        return [choose_nonmembers(clips, n, seed=seed, keep=keep)] * shadows
    if vary == "both" and (folds < 2 or shadows < 2 * folds or shadows % folds):
        raise ValueError(f"--vary both trains as many shadows on each of --folds disjoint draws, two or more on each: --shadows "
                         f"must be a multiple of --folds (2 or more) and at least twice it, got {shadows} shadows and {folds} folds")
    parts = folds if vary == "both" else shadows
    non = clips[clips["y"] == 0].sort_values("clip_hash").reset_index(drop=True)
    if n < 1 or n * parts + keep > len(non):
        what = "--folds" if vary == "both" else "--shadows"
        raise ValueError(f"cannot take {parts} disjoint draws of {n} of the {len(non)} known non-members for {shadows} shadows: "
                         f"nonmembers x {what.lstrip('-')} at most {max(0, len(non) - keep)} (at least {keep} must stay for the "
                         f"audit); lower --nonmembers or {what}, or train every shadow on the same clips (--vary seed)")
    perm = np.random.default_rng(seed).permutation(len(non))
    draws = [non.iloc[np.sort(perm[i * n:(i + 1) * n])].reset_index(drop=True) for i in range(parts)]
    return [draws[i % parts] for i in range(shadows)]


def same_batch_warning(n: int, batch_size: int) -> str:
    """Why shadows on the same clips may not differ: one batch holds every clip, so the seed
    changes no batch order."""
    return (f"every batch holds all {n} clips (batch size {batch_size}), so the seeds change no batch order: the shadows "
            "differ only where the model draws noise (diffusion) or has dropout, and may be identical (no spread for lira); "
            "use --vary subset or a batch size below the number of clips")


def read_shadow_set(out: str | Path) -> dict | None:
    """The record of a finished set of shadows in ``out`` (None when there is none)."""
    path = Path(str(out)).expanduser() / SET_FILE
    try:
        rec = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("kind") == SET_KIND else None


def expand_references(specs: Sequence[str]) -> tuple[str, ...]:
    """``specs`` with each folder holding a finished set of shadows (:data:`SET_FILE`)
    replaced by its shadows' folders, ``<spec>/s0``, ``<spec>/s1``, ... in order; every
    other spec unchanged. Reads metadata only.

    Raises
    ------
    ValueError
        a folder holding an unfinished set (shadow folders but no record yet), or a record
        naming a shadow that is not finished.
    """
    from core.recipes.shadow import read_card

    out: list[str] = []
    for spec in specs:
        spec = str(spec)
        folder = Path(spec).expanduser()
        rec = read_shadow_set(folder) if not spec.startswith("zoo:") and folder.is_dir() else None
        if rec is None:
            if not spec.startswith("zoo:") and (folder / shadow_folder(0)).is_dir() and read_card(folder) is None:
                raise ValueError(f"{spec} holds an unfinished set of shadows (no {SET_FILE}): run the same "
                                 "`overheard reference build` again to finish it")
            out.append(spec)
            continue
        members = [str(Path(spec) / name) for name in rec.get("folders") or ()]
        unfinished = [m for m in members if read_card(Path(m).expanduser()) is None]
        if unfinished or not members:
            raise ValueError(f"the set of shadows in {spec} lists {unfinished[0] if unfinished else 'no shadow'}, which holds "
                             "no finished shadow; run the same `overheard reference build` again")
        out.extend(members)
    return tuple(out)


def build_shadow_set(
    ws: Workspace,
    dataset: str,
    base: str | TargetRef,
    out: str | Path,
    *,
    n_nonmembers: int,
    shadows: int,
    vary: str = "seed",
    folds: int = 2,
    recipe: ShadowRecipe | None = None,
    clip_hashes: Sequence[str] | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``shadows`` shadows of ``base`` with one recipe (``options``: the base's loader options), each an ordinary shadow folder
    ``out/s<i>`` built by :func:`~core.pipeline.reference.build_shadow` (a finished one is
    reused, a partial one resumes), and the set's record :data:`SET_FILE` in ``out``.

    Shadow ``i`` is trained with the recipe's seed plus ``i`` (its batch order, noise draws
    and dropout), on the clips :func:`set_draws` gives it with the recipe's seed: the same
    ``n_nonmembers`` known non-members for every shadow (``vary="seed"``), disjoint draws
    (``vary="subset"``), or ``folds`` disjoint draws with as many shadows on each
    (``vary="both"``, shadow ``i`` on draw ``i mod folds``). ``clip_hashes``: the known non-members to draw from (default: all
    of the dataset's, of which at least ``MIN_PER_LABEL`` must be left for the audit). Shadow
    0 of a ``seed`` set is the shadow a single build with the same arguments makes. Each
    card records the set (``shadow_set``: its index, the number of shadows, ``vary``, the
    draw's seed, and with ``both`` the folds) beside its own seed and clip hashes.

    ``progress(epochs done, epochs of the set, "shadow i of K, epoch e/E: ...")``.

    On the same clips, the seed spreads the shadows through the batch order (when a batch
    holds fewer than all the clips), the noise draws of a diffusion objective and the
    model's dropout; the record warns when the first cannot act (:func:`same_batch_warning`).

    Returns
    -------
    dict
        The record: ``shadows`` (each ``folder``, ``seed``, ``n_clips``, ``train_time_s``),
        ``folders`` (names under ``out``), ``vary`` (and ``folds`` with ``both``), ``seed``,
        ``n_nonmembers``, ``recipe``,
        ``dataset``, ``base``, ``trained_clip_hashes`` (the union, in order of first use),
        ``warnings``.

    Raises
    ------
    ValueError
        ``out`` being a shadow folder itself, fewer than one shadow, an unknown ``vary``,
        too few known non-members (:func:`set_draws`); and what ``build_shadow`` refuses.
    """
    from dataclasses import replace

    from core.recipes.shadow import ShadowRecipe, read_card

    recipe = recipe or ShadowRecipe()
    targets = targets if targets is not None else Resolved()
    bref = targets.ref(base)
    check_supported(bref)
    out = Path(out)
    if read_card(out) is not None:
        raise ValueError(f"{out} is a shadow folder: a set writes its shadows into folders under a new one; choose another --out")
    clips = ws.analysis_clips(dataset)
    pool, keep = (clips_by_hash(clips, clip_hashes), 0) if clip_hashes is not None else (clips, MIN_PER_LABEL)
    draws = set_draws(pool, n_nonmembers, shadows, vary=vary, seed=recipe.seed, keep=keep, folds=folds)
    in_set = {"folds": folds} if vary == "both" else {}
    n_pool = int((pool["y"] == 0).sum())
    among = f"{n_pool} known non-members" + (" chosen by the caller" if clip_hashes is not None else "")
    report = progress or (lambda done, total, msg: None)
    total = shadows * recipe.epochs
    rows: list[dict[str, Any]] = []
    union: dict[str, None] = {}  # every clip any shadow trained on, in order of first use
    for i, drawn in enumerate(draws):
        how = (f"{n_nonmembers} of {among}, drawn with seed {recipe.seed} in content-hash order; the same clips for each of the "
               f"{shadows} shadows of the set" if vary == "seed" else
               f"{n_nonmembers} of {among}, part {i % folds + 1} of {folds} disjoint draws (seed {recipe.seed}, content-hash "
               f"order), shared by {shadows // folds} shadows of the set" if vary == "both" else
               f"{n_nonmembers} of {among}, part {i + 1} of {shadows} disjoint draws (seed {recipe.seed}, content-hash order)")
        name = shadow_folder(i)
        own = replace(recipe, seed=recipe.seed + i)
        card = build_shadow(ws, dataset, bref, out / name, recipe=own, clip_hashes=drawn["clip_hash"].tolist(), selection=how,
                            settings=settings, cancelled=cancelled, targets=targets, options=options,
                            card={"shadow_set": {"index": i, "shadows": shadows, "vary": vary, "draw_seed": recipe.seed}
                                  | in_set},
                            progress=lambda d, t, m, i=i: report(i * recipe.epochs + d, total, f"shadow {i + 1} of {shadows}, {m}"))
        report((i + 1) * recipe.epochs, total, f"shadow {i + 1} of {shadows} ready ({card.get('train_time_s')} s of training)")
        rows.append({"folder": name, "seed": own.seed, "n_clips": card["n_clips"], "train_time_s": card.get("train_time_s")})
        union.update(dict.fromkeys(card["trained_clip_hashes"]))
    shared = vary != "subset"  # shadows on the same clips: only the seed tells them apart
    warnings = [same_batch_warning(n_nonmembers, recipe.batch_size)] if shared and recipe.batch_size >= n_nonmembers else []
    record = {"kind": SET_KIND, "dataset": dataset, "base": bref.spec, "vary": vary, "vary_text": VARY[vary], **in_set,
              "seed": recipe.seed, "n_nonmembers": n_nonmembers, "recipe": recipe.to_dict(), "shadows": rows,
              "folders": [r["folder"] for r in rows], "trained_clip_hashes": list(union), "warnings": warnings}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SET_FILE, record)
    return record


@job_kind("shadow-set")
def _shadow_set_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Build a set of shadows (params: dataset, base, out, n_nonmembers, shadows, vary,
    folds, recipe); returns the set's folder."""
    from core.recipes.shadow import ShadowRecipe

    build_shadow_set(ws, params["dataset"], params["base"], params["out"], n_nonmembers=int(params["n_nonmembers"]),
                     shadows=int(params["shadows"]), vary=str(params.get("vary", "seed")), folds=int(params.get("folds", 2)),
                     recipe=ShadowRecipe.from_dict(params.get("recipe", {})), progress=ctx.progress, cancelled=ctx.cancelled,
                     options=params.get("options"))
    return str(params["out"])
