"""Several shadows of one recipe (:mod:`core.pipeline.shadow_set`).

A random-weight micro Whisper is the public base; the dataset has 4 members and 8 known
non-members with transcripts. Two sets of 3 shadows are built once, through the CLI: on the
same 4 drawn non-members (seeds 3, 4, 5; batches of one clip, so the seed's batch order
matters: the micro model has no dropout) and on 3 disjoint draws of 2.

- the shadows differ by seed and by weights; each card records its seed, its place in the set
  and its clips; shadow 0 of a same-clips set is the single shadow of the same arguments;
- disjoint draws are disjoint, and a shadow's draw does not depend on the set's size;
- a killed build resumes: finished shadows are reused, the partial one continues after its
  last epoch, and the set ends with the weights of an uninterrupted one;
- ``--reference <set>`` stands for its shadows, and an audit with several shadows leaves out
  every clip any of them trained on; an unfinished set is refused by name;
- too few non-members for disjoint draws, and option combinations that make no sense, are
  refused in one line before anything is built;
- cross-fitted (``--cross-fit``), the disjoint set's clips stay in the audit, each calibrated
  against the mean of the two shadows that never trained on it (checked against each
  shadow's own indicators), dataset inference reads the cross-fitted run, and a base among
  the references, a single shadow, or shadows all on the same clips are refused in one line;
- a set of folds (``--vary both``: 2 disjoint draws, 2 seeds on each) begins with the
  disjoint set's shadows, and cross-fitted, each clip is calibrated against the mean of the
  two seeds of the fold that never trained on it (checked against each shadow's own
  indicators); a clip two folds trained on leaves with its reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import transcribed_tones
from tests.test_shadow import FAST, RECIPE, _cli

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SAME = [*RECIPE, "--batch-size", "1", "--nonmembers", "4"]  # the last value of an option wins


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(workspace, base folder, same-clips set folder, disjoint set folder, the CLI's JSON of each)."""
    from tests.multilingual_fixture import tiny_multilingual_whisper

    root = tmp_path_factory.mktemp("shadow-set")
    ws = transcribed_tones(root)
    base = tiny_multilingual_whisper(root / "base", multilingual=False)
    same, apart = root / "same", root / "apart"
    js = [json.loads(_cli(ws, "reference", "build", "--base", str(base), "--dataset", "tiny", "--nonmembers", "2",
                          "--shadows", "3", "--out", str(out), *recipe, "--json"))
          for out, recipe in ((same, SAME), (apart, (*RECIPE, "--vary", "subset")))]
    return ws, base, same, apart, js[0], js[1]


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_shadows_differ_by_seed_and_weights_and_their_cards_say_so(setup, tmp_path):
    from core.pipeline.reference import build_shadow, choose_nonmembers
    from core.recipes.shadow import ShadowRecipe, read_card, shadow_lines

    ws, base, same, _, js, _ = setup
    drawn = choose_nonmembers(ws.analysis_clips("tiny"), 4, seed=3)["clip_hash"].tolist()
    cards = [read_card(same / f"s{i}") for i in range(3)]
    assert js["folders"] == ["s0", "s1", "s2"] and [r["seed"] for r in js["shadows"]] == [3, 4, 5]
    assert [c["recipe"]["seed"] for c in cards] == [3, 4, 5]
    assert [c["shadow_set"] for c in cards] == [{"index": i, "shadows": 3, "vary": "seed", "draw_seed": 3} for i in range(3)]
    assert all(c["trained_clip_hashes"] == drawn for c in cards) and js["trained_clip_hashes"] == drawn
    assert all("the same clips for each of the 3 shadows" in c["dataset"]["selection"] for c in cards)
    assert len({c["request"] for c in cards}) == 3
    w = [_weights(same / f"s{i}") for i in range(3)]
    assert not _same_weights(w[0], w[1]) and not _same_weights(w[1], w[2]) and not _same_weights(w[0], w[2])
    # shadow 0 is the shadow a single build with the same arguments makes
    single = build_shadow(ws, "tiny", str(base), tmp_path / "single", n_nonmembers=4,
                          recipe=ShadowRecipe(epochs=2, lr=0.003, batch_size=1, seed=3))
    assert single["request"] == cards[0]["request"] and _same_weights(_weights(tmp_path / "single"), w[0])
    record = json.loads((same / "shadows.json").read_text())
    assert record["kind"] == "shadow-set" and record["vary"] == "seed" and record["n_nonmembers"] == 4
    assert record["warnings"] == []
    line = shadow_lines([str(same / "s1")])[0]
    assert "shadow 2 of 3 of a set (seed 4, the same clips as the others)" in line


def test_a_set_whose_batches_hold_every_clip_warns_that_seeds_may_not_spread_it(setup, tmp_path):
    from core.pipeline.shadow_set import build_shadow_set
    from core.recipes.shadow import ShadowRecipe

    ws, base, _, _, _, _ = setup
    record = build_shadow_set(ws, "tiny", str(base), tmp_path / "one-batch", n_nonmembers=2, shadows=2,
                              recipe=ShadowRecipe(epochs=1, lr=0.003, batch_size=2, seed=3))
    (warning,) = record["warnings"]
    assert "every batch holds all 2 clips" in warning and "may be identical" in warning
    # and so they are here: the same clips in one batch, no dropout, no noise
    assert _same_weights(_weights(tmp_path / "one-batch" / "s0"), _weights(tmp_path / "one-batch" / "s1"))


def test_disjoint_draws_are_disjoint_and_each_shadow_keeps_its_draw(setup):
    from core.pipeline.shadow_set import set_draws
    from core.recipes.shadow import read_card

    ws, _, _, apart, _, js = setup
    clips = ws.analysis_clips("tiny")
    parts = [set(read_card(apart / f"s{i}")["trained_clip_hashes"]) for i in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) <= set(clips.loc[clips["y"] == 0, "clip_hash"])
    assert set(js["trained_clip_hashes"]) == set().union(*parts) and len(js["trained_clip_hashes"]) == 6
    assert [set(d["clip_hash"]) for d in set_draws(clips, 2, 3, vary="subset", seed=3)] == parts
    # a shadow's part is the same in a smaller set: growing a set reuses the shadows built
    assert [set(d["clip_hash"]) for d in set_draws(clips, 2, 2, vary="subset", seed=3)] == parts[:2]
    assert [read_card(apart / f"s{i}")["recipe"]["seed"] for i in range(3)] == [3, 4, 5]
    assert "part 3 of 3 disjoint draws" in read_card(apart / "s2")["dataset"]["selection"]


def test_a_killed_set_resumes_and_ends_with_the_weights_of_an_uninterrupted_one(setup, tmp_path):
    from core.pipeline.shadow_set import build_shadow_set, expand_references
    from core.recipes.shadow import ShadowRecipe

    ws, base, same, _, _, _ = setup
    recipe = ShadowRecipe(epochs=2, lr=0.003, batch_size=1, seed=3)
    out = tmp_path / "killed"

    class Killed(Exception):
        pass

    def kill_in_shadow_2(done: int, total: int, msg: str) -> None:
        if msg.startswith("shadow 2 of 3, epoch 1/2"):
            raise Killed

    with pytest.raises(Killed):
        build_shadow_set(ws, "tiny", str(base), out, n_nonmembers=4, shadows=3, recipe=recipe, progress=kill_in_shadow_2)
    assert (out / "s0" / "card.json").is_file() and (out / "s1" / ".partial" / "state.safetensors").is_file()
    assert not (out / "s1" / "card.json").exists() and not (out / "s2").exists() and not (out / "shadows.json").exists()
    with pytest.raises(ValueError, match="unfinished set of shadows"):
        expand_references([str(out)])
    seen: list[tuple[int, int, str]] = []
    record = build_shadow_set(ws, "tiny", str(base), out, n_nonmembers=4, shadows=3, recipe=recipe,
                              progress=lambda d, t, m: seen.append((d, t, m)))
    trained = [m.split(":")[0] for _, _, m in seen if "epoch" in m]
    assert trained == ["shadow 2 of 3, epoch 2/2", "shadow 3 of 3, epoch 1/2", "shadow 3 of 3, epoch 2/2"]
    assert [d for d, _, m in seen if "epoch" in m] == [4, 5, 6] and {t for _, t, _ in seen} == {6}
    assert record["folders"] == ["s0", "s1", "s2"]
    for i in range(3):
        assert _same_weights(_weights(out / f"s{i}"), _weights(same / f"s{i}"))


def test_an_audit_with_several_shadows_leaves_out_every_clip_any_of_them_trained_on(setup):
    from core.pipeline.shadow_set import expand_references

    ws, base, same, apart, _, js = setup
    members = [str(apart / f"s{i}") for i in range(3)]
    assert expand_references([str(apart), "zoo:lalm-base", str(same / "s1")]) == (*members, "zoo:lalm-base", str(same / "s1"))
    res = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(apart), *FAST, "--json"))
    run = ws.load_run(res["run_id"])
    assert tuple(run["config"]["references"]) == tuple(members)
    assert res["calibration"]["calibrations"] == ["resid", "lira"]
    why = {c["clip_hash"]: c["reason"] for c in res["excluded_clips"]}
    assert set(why) == set(js["trained_clip_hashes"]) and len(why) == 6
    from core.recipes.shadow import read_card

    for m in members:
        assert {why[h] for h in read_card(m)["trained_clip_hashes"]} == {f"trained the shadow reference {m}"}
    tested = ws.run_table(run, "clips").index
    assert len(tested) == 12 - 6 and not set(tested) & set(why) and res["n_nonmembers"] == 2
    # two shadows named one by one: the union of their two draws only
    two = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", members[0], "--reference",
                          members[2], *FAST, "--json"))
    assert {c["clip_hash"] for c in two["excluded_clips"]} == set(read_card(members[0])["trained_clip_hashes"]) | set(
        read_card(members[2])["trained_clip_hashes"])
    # dataset inference with --reference <set> reads the MIA run made with its shadows
    di = json.loads(_cli(ws, "di", "--dataset", "tiny", "--target", str(base), "--reference", str(same), "--mode", "given",
                         "--n-resamples", "10", "--null-resamples", "10", "--json"))
    mia_run = ws.load_run(di["mia_run"])
    assert tuple(mia_run["config"]["references"]) == tuple(str(same / f"s{i}") for i in range(3))
    assert len(di["excluded_clips"]) == 4


def test_the_cli_says_how_to_use_the_set(setup):
    ws, base, same, _, _, _ = setup
    text = _cli(ws, "reference", "build", "--base", str(base), "--dataset", "tiny", "--shadows", "3", "--out", str(same), *SAME)
    assert f"--reference {same} (the set's folder stands for its shadows: --reference {same / 's0'} --reference " \
           f"{same / 's1'} --reference {same / 's2'})" in text
    assert "seeds 3, 4, 5 on the same 4 known non-members" in text and "leave the 4 clips any of them trained on out" in text


def test_too_few_nonmembers_and_senseless_options_are_refused_in_one_line(setup, tmp_path, capsys):
    from core.cli import main
    from core.pipeline.shadow_set import build_shadow_set

    ws, base, same, _, _, _ = setup
    out = tmp_path / "refused"
    args = ["reference", "build", "--base", str(base), "--dataset", "tiny", "--out", str(out), "--workspace", str(ws.root)]
    assert main([*args, "--nonmembers", "3", "--shadows", "3", "--vary", "subset"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot take 3 disjoint draws of 3 of the 8 known non-members" in err and "at most 6" in err and "\n" not in err
    assert main([*args, "--nonmembers", "2", "--vary", "subset"]) == 2
    assert "give --shadows K (2 or more)" in capsys.readouterr().err
    assert main([*args, "--nonmembers", "2", "--shadows", "3", "--vary", "both"]) == 2
    assert "--shadows must be a multiple of --folds (2 or more) and at least twice it, got 3 shadows and 2 folds" in \
        capsys.readouterr().err
    assert main([*args, "--nonmembers", "4", "--shadows", "4", "--vary", "both", "--folds", "2"]) == 2
    assert "nonmembers x folds at most 6" in capsys.readouterr().err
    assert main([*args, "--nonmembers", "2", "--shadows", "2", "--vary", "subset", "--folds", "2"]) == 2
    assert "--folds is the number of disjoint draws of --vary both" in capsys.readouterr().err
    assert main([*args, "--nonmembers", "2", "--shadows", "2", "--epochs", "1,2", "--target", str(base), "--holdout", "2"]) == 2
    assert "build the grid first" in capsys.readouterr().err
    assert main([*args, "--nonmembers", "2", "--shadows", "0"]) == 2
    assert "1 or more" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is a shadow folder"):
        build_shadow_set(ws, "tiny", str(base), same / "s0", n_nonmembers=2, shadows=2)
    with pytest.raises(ValueError, match="choose 1 to 6"):
        build_shadow_set(ws, "tiny", str(base), out, n_nonmembers=7, shadows=2)
    assert not out.exists()


def test_the_set_builds_as_one_background_job_with_progress_per_shadow(setup, tmp_path):
    from core.runtime import jobs

    import core.pipeline  # noqa: F401  (registers the job kinds)

    ws, base, _, _, _, _ = setup
    out = tmp_path / "job"
    job_id = jobs.submit(ws, "shadow-set", {"dataset": "tiny", "base": str(base), "out": str(out), "n_nonmembers": 2,
                                            "shadows": 2, "vary": "subset",
                                            "recipe": {"epochs": 1, "lr": 0.003, "batch_size": 2}}, start=False)
    assert jobs.run_job(ws, job_id) == str(out)
    row = jobs.job(ws, job_id)
    assert row["status"] == "done" and row["progress"] == row["total"] == 2
    assert row["message"].startswith("shadow 2 of 2 ready")
    record = json.loads((out / "shadows.json").read_text())
    assert record["vary"] == "subset" and len(record["trained_clip_hashes"]) == 4


def test_a_cross_fitted_audit_keeps_the_shadows_clips_each_calibrated_against_the_shadows_that_never_saw_it(setup):
    from core.mia.calibration import cross_fit_assignment
    from core.recipes.shadow import read_card

    ws, base, _, apart, _, _ = setup
    shadows = [str(apart / f"s{i}") for i in range(3)]
    res = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(apart), "--cross-fit",
                          "--calibration", "diff", *FAST, "--json"))
    run = ws.load_run(res["run_id"])
    assert run["config"]["cross_fit"] is True and res["excluded_clips"] == []
    assert res["n_members"] == 4 and res["n_nonmembers"] == 8 and res["calibration"]["calibrations"] == ["diff"]
    trained = {s: set(read_card(s)["trained_clip_hashes"]) for s in shadows}
    assert res["calibration"]["cross_fit"] == {"shadows": 3, "folds": 3, "per_clip": 2,
                                               "trained_on": {s: {"members": 0, "non_members": 2} for s in shadows}}
    # each clip's diff against the mean of the two shadows its rule allows, from each shadow audited on its own
    own = {}
    for s in shadows:
        r = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", s, *FAST, "--json"))
        own[s] = ws.run_table(ws.load_run(r["run_id"]), "indicators")
    ind = ws.run_table(run, "indicators")
    order = list(ind.index)
    avail = cross_fit_assignment(order, [trained[s] for s in shadows])
    key = "loss_mean" if "loss_mean" in ind else next(k for k in ind.columns if ":" not in k)
    for i, h in enumerate(order):
        used = [s for j, s in enumerate(shadows) if avail[j, i]]
        assert not any(h in trained[s] for s in used)
        want = ind.loc[h, key] - np.mean([own[s].loc[h, key] for s in used])
        assert ind.loc[h, f"diff:{key}"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    # the same audit without cross-fitting leaves the six clips out, as before
    plain = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(apart), *FAST, "--json"))
    assert len(plain["excluded_clips"]) == 6
    # dataset inference asked to cross-fit reads the cross-fitted run, and says so
    di = json.loads(_cli(ws, "di", "--dataset", "tiny", "--target", str(base), "--reference", str(apart), "--cross-fit",
                         "--mode", "given", "--n-resamples", "10", "--null-resamples", "10", "--json"))
    assert di["mia_run"] == res["run_id"] and di["calibration"]["cross_fit"]["per_clip"] == 2
    assert di["n_nonmembers"] == 8
    text = _cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(apart), "--cross-fit",
                "--calibration", "diff", *FAST)
    assert "cross-fitted shadows: each clip calibrated against 2 of the 3 shadows, never one that trained on it" in text


def test_cross_fitting_is_refused_with_a_base_among_the_references_a_single_shadow_or_one_set_of_clips(setup, capsys):
    ws, base, same, apart, _, _ = setup
    from core.cli import main

    for refs in (("--reference", str(apart / "s0"), "--reference", "zoo:lalm-base"), ("--reference", str(apart / "s0")),
                 ("--reference", str(same))):
        assert main(["mia", "--dataset", "tiny", "--target", str(base), *refs, "--cross-fit", *FAST, "--workspace", str(ws.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not a shadow reference" in err[0] and "two or more shadow references" in err[1]
    # the same-clips set: its seeds share one set of clips, so no shadow could calibrate another's clips
    assert "two or more shadow references on disjoint clips, got 3 shadow(s) on 1 set(s) of clips" in err[2] and len(err) == 3


def test_a_set_of_folds_is_cross_fitted_fold_against_fold_with_each_folds_seeds_averaged(setup, tmp_path):
    from core.pipeline.reference import CROSS_FIT_OVERLAP
    from core.pipeline.shadow_set import set_draws
    from core.recipes.shadow import read_card, shadow_lines

    ws, base, same, apart, _, _ = setup
    both = tmp_path / "both"
    js = json.loads(_cli(ws, "reference", "build", "--base", str(base), "--dataset", "tiny", "--nonmembers", "2", "--shadows", "4",
                         "--out", str(both), *RECIPE, "--vary", "both", "--folds", "2", "--json"))
    shadows = [str(both / f"s{i}") for i in range(4)]
    cards = [read_card(s) for s in shadows]
    assert js["vary"] == "both" and js["folds"] == 2 and [r["seed"] for r in js["shadows"]] == [3, 4, 5, 6]
    assert [c["shadow_set"] for c in cards] == [{"index": i, "shadows": 4, "vary": "both", "draw_seed": 3, "folds": 2}
                                                 for i in range(4)]
    trained = [frozenset(c["trained_clip_hashes"]) for c in cards]
    assert trained[0] == trained[2] and trained[1] == trained[3] and not trained[0] & trained[1]
    # its first two shadows are the disjoint set's first two: same clips, same seeds, same weights
    for i in range(2):
        assert trained[i] == frozenset(read_card(apart / f"s{i}")["trained_clip_hashes"])
        assert _same_weights(_weights(both / f"s{i}"), _weights(apart / f"s{i}"))
    assert not _same_weights(_weights(both / "s0"), _weights(both / "s2"))  # the seeds differ
    assert [set(d["clip_hash"]) for d in set_draws(ws.analysis_clips("tiny"), 2, 4, vary="both", folds=2, seed=3)] == \
        [set(t) for t in trained]
    assert "part 2 of 2 disjoint draws" in cards[3]["dataset"]["selection"] and "shared by 2 shadows" in cards[3]["dataset"]["selection"]
    assert "shadow 4 of 4 of a set (seed 6, draw 2 of 2 disjoint draws of clips)" in shadow_lines([shadows[3]])[0]
    res = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(both), "--cross-fit",
                          "--calibration", "diff", *FAST, "--json"))
    assert res["excluded_clips"] == [] and res["n_nonmembers"] == 8
    assert res["calibration"]["cross_fit"]["folds"] == 2 and res["calibration"]["cross_fit"]["per_clip"] == 2
    own = {}
    for s in shadows:
        r = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", s, *FAST, "--json"))
        own[s] = ws.run_table(ws.load_run(r["run_id"]), "indicators")
    ind = ws.run_table(ws.load_run(res["run_id"]), "indicators")
    key = "loss_mean" if "loss_mean" in ind else next(k for k in ind.columns if ":" not in k)
    folds_used = set()
    for h in ind.index:  # written from the rule: the other fold's two seeds, or for an untrained clip the fold its hash keeps
        mine = [f for f in (0, 1) if h in trained[f]]
        keep = 1 - mine[0] if mine else 1 - int(hashlib.sha256(h.encode()).hexdigest()[:8], 16) % 2
        folds_used.add(keep)
        used = [shadows[keep], shadows[keep + 2]]
        want = ind.loc[h, f"{key}"] - np.mean([own[s].loc[h, key] for s in used])
        assert ind.loc[h, f"diff:{key}"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert folds_used == {0, 1}
    text = _cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(both), "--cross-fit",
                "--calibration", "diff", *FAST)
    assert "each clip calibrated against 2 of the 4 shadows (on 2 disjoint sets of clips), never one that trained on it" in text
    # folds whose draws overlap (a fold of the set beside a shadow of the same-clips set): their shared clips leave, saying why
    shared = trained[0] & frozenset(read_card(same / "s0")["trained_clip_hashes"])
    assert shared  # the fixture's draws overlap
    mixed = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(both / "s0"),
                            "--reference", str(same / "s0"), "--cross-fit", *FAST, "--json"))
    assert {c["reason"] for c in mixed["excluded_clips"]} == {CROSS_FIT_OVERLAP}
    assert {c["clip_hash"] for c in mixed["excluded_clips"]} == set(shared)
