"""The share used, debiased with a shadow (``core.di.duci``), measured on the zoo's
fine-tuning pairs with ground truth.

Per pair: the target's and the shadow's per-clip attack score (the loss indicator, a token
model's perplexity, oriented so that higher reads member) on the whole demo dataset, the shadow built as in
``bench.measure_shadow`` (the base fine-tuned with the target's recipe on the demo's
non-members 0100-0149, its own clips). Suspect sets of 20 clips mix the target's members
with non-members at known shares; 30 other non-members (of 0150-0199, never trained on by
either model) calibrate both models. Per share over ``--draws`` draws: the mean estimate, the
coverage of its 95% interval, the interval's mean width and how often no estimate is given.
The separation each model shows (the loss AUC of the target's members and of the shadow's
own clips against the non-members) is printed first: the estimate assumes they match.

usage: OVERHEARD_WORKSPACE=DIR python -m bench.measure_duci [--draws N] [--smoke] [pair ...]
(pairs: shift, ar-shift, zoo; default all)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
N_SUSPECTS, N_CAL = 20, 30
LOSS_KEY = "loss"
PAIRS = {  # name -> (dataset, target, base, mode)
    "shift": ("demo-speech", "zoo:lalm-shift-ft", "zoo:lalm-shift-base", "given"),
    "ar-shift": ("demo-sounds", "zoo:ar-shift-ft", "zoo:ar-shift-base", "generated"),
    "zoo": ("demo-speech", "zoo:lalm-ft", "zoo:lalm-base", "given"),
}


def mixtures(members, nonmembers, shadow_of, target_of, shadow_clips, *, draws: int, seed: int = 0) -> list[dict]:
    """Rows per share: suspects of ``N_SUSPECTS`` (members and non-members at the share),
    ``N_CAL`` other non-members as both models' calibration. ``*_of`` map clip -> score."""
    from core.di.duci import debiased_share

    rng = np.random.default_rng(seed)
    own = np.array([shadow_of[h] for h in shadow_clips])
    rows = []
    for share in SHARES:
        m = int(round(share * N_SUSPECTS))
        est, covered, width, none = [], 0, [], 0
        for d in range(draws):
            mem = rng.choice(members, m, replace=False)
            non = rng.permutation(nonmembers)
            sus, cal = np.r_[mem, non[: N_SUSPECTS - m]], non[N_SUSPECTS - m: N_SUSPECTS - m + N_CAL]
            r = debiased_share([target_of[h] for h in sus], [target_of[h] for h in cal], own, [shadow_of[h] for h in cal],
                               n_boot=400, seed=d)
            if r.estimate is None or r.interval is None:
                none += 1
                continue
            est.append(r.estimate)
            covered += r.interval[0] <= m / N_SUSPECTS <= r.interval[1]
            width.append(r.interval[1] - r.interval[0])
        given = draws - none
        rows.append({"share": share, "draws": draws, "mean_estimate": float(np.mean(est)) if est else None,
                     "coverage": covered / given if given else None, "mean_width": float(np.mean(width)) if width else None,
                     "no_estimate": none / draws})
    return rows


def _auc(pos, neg) -> float:
    from core.stats import auc

    return auc(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])


def scores_of(ws, dataset: str, target: str, mode: str) -> dict[str, float]:
    """clip hash -> negated loss of ``target`` on every clip of ``dataset`` (its MIA run's
    indicators, uncalibrated; made when the workspace has none)."""
    from core.pipeline import MIAConfig, audit_mia

    def same(c: dict) -> bool:
        return c.get("mode") == mode and not c.get("references")

    run = ws.latest_run("mia", dataset, target, where=same)
    run_id = run["id"] if run is not None else audit_mia(ws, dataset, target, MIAConfig(mode=mode, n_perm=0, n_boot=10))[0]
    from core.mia.registry import direction

    table = ws.run_table(ws.load_run(run_id), "indicators")
    key = LOSS_KEY if LOSS_KEY in table else "ppl"  # diffusion's denoising loss; a token model's perplexity
    return (direction(key) * table[key]).to_dict()


def measure(ws, name: str, *, draws: int) -> dict:
    from bench.measure_shadow import _paths, hashes_of, zoo_shadow_recipe
    from core.pipeline.reference import build_shadow

    dataset, target, base, mode = PAIRS[name]
    if name == "ar-shift":
        from bench.measure_shadow import ar_shift_recipe
        recipe = ar_shift_recipe()
    else:
        recipe = zoo_shadow_recipe(target.split(":", 1)[1])
    shadow_clips = hashes_of(ws, dataset, _paths(100, 150, dataset))
    shadow_dir = ws.root / "shadows" / f"duci-{name}"
    card = build_shadow(ws, dataset, base, shadow_dir, recipe=recipe, clip_hashes=shadow_clips)
    t = scores_of(ws, dataset, target, mode)
    s = scores_of(ws, dataset, str(shadow_dir), mode)
    clips = ws.analysis_clips(dataset)
    members = clips.loc[clips["y"] == 1, "clip_hash"].to_numpy()
    nonmembers = clips.loc[clips["path"].isin(_paths(150, 200, dataset)), "clip_hash"].to_numpy()
    sep = {"target_members_auc": round(_auc([t[h] for h in members], [t[h] for h in nonmembers]), 3),
           "shadow_own_clips_auc": round(_auc([s[h] for h in card["trained_clip_hashes"]], [s[h] for h in nonmembers]), 3)}
    rows = mixtures(members, nonmembers, s, t, card["trained_clip_hashes"], draws=draws)
    out = {"pair": name, "target": target, "base": base, "mode": mode, "recipe": card["recipe"], "separation": sep, "rows": rows}
    print(json.dumps(out), flush=True)
    print(f"\n{name}: {target} (shadow of {base}, {mode} mode); loss AUC target members {sep['target_members_auc']}, "
          f"shadow's own clips {sep['shadow_own_clips_auc']}")
    def f(v: float | None, percent: bool = True) -> str:
        return "-" if v is None else f"{v:.0%}" if percent else f"{v:.2f}"

    print("| share | mean estimate | 95% interval coverage | mean width | no estimate |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['share']:.0%} | {f(r['mean_estimate'])} | {f(r['coverage'])} | {f(r['mean_width'], False)} | {r['no_estimate']:.0%} |",
              flush=True)
    return out


def smoke() -> int:
    """Synthetic scores through the same mixtures: one JSON line."""
    rng = np.random.default_rng(0)
    members, nonmembers, own = [f"m{i}" for i in range(40)], [f"n{i}" for i in range(50)], [f"s{i}" for i in range(30)]
    target = {h: rng.normal(1.5 if h[0] == "m" else 0, 1) for h in members + nonmembers}
    shadow = {h: rng.normal(1.5 if h[0] == "s" else 0, 1) for h in own + nonmembers}
    rows = mixtures(np.array(members), np.array(nonmembers), shadow, target, own, draws=3)
    print(json.dumps({"bench": "duci", "smoke": True, "rows": rows}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="*", metavar="PAIR", help=f"{', '.join(PAIRS)} (default: all)")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        return smoke()
    from core.pipeline import load_demo
    from core.runtime.store import Workspace

    pairs = a.pairs or list(PAIRS)
    if set(pairs) - set(PAIRS):
        ap.error(f"unknown pair(s) {', '.join(sorted(set(pairs) - set(PAIRS)))}; valid: {', '.join(PAIRS)}")
    ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/duci-ws"))
    load_demo(ws, names=tuple(sorted({PAIRS[p][0] for p in pairs})))
    t0 = time.perf_counter()
    for p in pairs:
        measure(ws, p, draws=a.draws)
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
