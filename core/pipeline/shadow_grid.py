"""A grid of shadow recipes: one shadow of the base per (epochs, learning rate) on the same
known non-members, and the one whose losses on other, held-out known non-members come
closest to the target's (:func:`build_shadow_grid`). Every audit using the chosen shadow
leaves out the held-out clips too (:data:`core.pipeline.reference.HELDOUT_REASON`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from core.pipeline.common import MIN_PER_LABEL, Cancelled, Progress, Resolved
from core.pipeline.reference import build_shadow, check_supported, clip_losses, scoring_config
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace, write_json

if TYPE_CHECKING:
    from core.recipes.shadow import ShadowRecipe
    from core.targets.registry import TargetRef


SELECTION_FILE = "selection.json"
"""The record of a grid build, beside its shadows: ``<out>/selection.json``."""

SELECTION_KIND = "shadow-recipe-selection"

GRID_STATISTIC = ("median over the held-out known non-members of the paired gap (the shadow's mean token loss on the clip "
                  "minus the target's, nats/token); the chosen shadow has the smallest absolute median gap, ties "
                  f"(within {1e-9:g}) going to the cheaper recipe (fewer epochs, then the smaller learning rate)")
"""How :func:`build_shadow_grid` chooses, in words (written in the selection record)."""

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
    from core.mia.advisor import paired_losses

    s, t = paired_losses(shadow_loss, target_loss, "a recipe's gap")
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
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One shadow of ``base`` per recipe of ``recipes`` (``options``: loader options of the
    base and the target, as an audit applies them), all on the same ``n_nonmembers``
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
    config = scoring_config(options)

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
                            settings=settings, cancelled=cancelled, targets=targets, options=options,
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
    write_json(out / SELECTION_FILE, record)
    # the chosen shadow's card says which clips chose it: an audit that uses it leaves them out too
    folder = Path(rows[chosen]["folder"])
    card = read_card(folder) or {}
    before = [str(h) for h in card.get("heldout_clip_hashes") or ()]
    card["heldout_clip_hashes"] = before + [h for h in heldout if h not in before]
    card["recipe_selection"] = {"record": str((out / SELECTION_FILE).resolve()), "target": tref.spec,
                                "statistic": GRID_STATISTIC, "median_gap": rows[chosen]["median_gap"],
                                "gap_ci": rows[chosen]["gap_ci"], "recipes": total}
    write_json(folder / "card.json", card)
    return record


# -- the advisor ------------------------------------------------------------------------------

@job_kind("shadow-grid")
def _shadow_grid_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """Build a grid of shadows and choose one (params: dataset, base, target, out,
    n_nonmembers, n_holdout, recipes: a list of recipe dicts); returns the chosen folder."""
    from core.recipes.shadow import ShadowRecipe

    record = build_shadow_grid(ws, params["dataset"], params["base"], params["target"], params["out"],
                               recipes=[ShadowRecipe.from_dict(r) for r in params["recipes"]],
                               n_nonmembers=int(params["n_nonmembers"]), n_holdout=int(params["n_holdout"]),
                               progress=ctx.progress, cancelled=ctx.cancelled, options=params.get("options"))
    return str(record["chosen_folder"])
