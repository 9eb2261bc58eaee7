"""A grid of shadow recipes (:func:`core.pipeline.reference.build_shadow_grid`).

A random-weight micro Whisper is the public base and the base fine-tuned here on the 4
members the audited "fine-tune"; the dataset has 4 members and 8 known non-members with
transcripts. The grid (epochs 1, 2 x learning rates 1e-4, 3e-3) is built once, through the
CLI, on 2 non-members, and chosen on 3 others:

- each recipe is one ordinary shadow folder trained on the same clips; a rerun retrains none;
- the chosen one has the smallest absolute median gap to the target's losses on the
  held-out clips, computed here again from the models themselves;
- an audit with the chosen shadow leaves out its training clips and the held-out ones, each
  with its reason; the selection record lists every recipe and the held-out hashes;
- a grid without a target, or asking more clips than the known non-members, is refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.runtime.store import Workspace
from tests.conftest import transcribed_tones
from tests.test_shadow import FAST, _cli, _given_losses, _inputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")

GRID = ["--epochs", "1,2", "--lr", "1e-4,3e-3", "--batch-size", "2", "--seed", "3", "--nonmembers", "2", "--holdout", "3"]


def _fine_tune(ws: Workspace, base: Path, out: Path) -> Path:
    """The base fine-tuned on the members: the audited target (its card marked as a fine-tune)."""
    from core.recipes.shadow import ShadowRecipe, train_shadow
    from core.targets import load_target

    clips = ws.analysis_clips("tiny")
    target = load_target(str(base), dtype="float32")
    card = train_shadow(target, _inputs(ws, clips[clips["y"] == 1].reset_index(drop=True)), out,
                        recipe=ShadowRecipe(epochs=3, lr=0.003, batch_size=2))
    (out / "card.json").write_text(json.dumps(card | {"kind": "fine-tune", "trained_clip_hashes": []}))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(workspace, base folder, target folder, grid folder, the CLI's JSON of the grid)."""
    from tests.multilingual_fixture import tiny_multilingual_whisper

    root = tmp_path_factory.mktemp("shadow-grid")
    ws = transcribed_tones(root)
    base = tiny_multilingual_whisper(root / "base", multilingual=False)
    target = _fine_tune(ws, base, root / "target")
    out = root / "grid"
    js = json.loads(_cli(ws, "reference", "build", "--base", str(base), "--target", str(target), "--dataset", "tiny",
                         "--out", str(out), *GRID, "--json"))
    return ws, base, target, out, js


def test_each_recipe_is_one_shadow_on_the_same_clips_and_a_rerun_trains_none(setup):
    from core.pipeline.shadow_grid import build_shadow_grid, recipe_folder, split_nonmembers
    from core.recipes.shadow import ShadowRecipe, read_card

    ws, base, target, out, js = setup
    train, held = split_nonmembers(ws.analysis_clips("tiny"), 2, 3, seed=3)
    assert not set(train["clip_hash"]) & set(held["clip_hash"])
    recipes = [ShadowRecipe(epochs=e, lr=lr, batch_size=2, seed=3) for e in (1, 2) for lr in (1e-4, 3e-3)]
    folders = [out / recipe_folder(r) for r in recipes]
    assert [r["folder"] for r in js["recipes"]] == [str(f) for f in folders]
    cards = [read_card(f) for f in folders]
    assert all(c is not None and c["trained_clip_hashes"] == train["clip_hash"].tolist() for c in cards)
    assert [(c["recipe"]["epochs"], c["recipe"]["lr"]) for c in cards] == [(1, 1e-4), (1, 3e-3), (2, 1e-4), (2, 3e-3)]
    assert len({c["request"] for c in cards}) == 4
    assert js["trained_clip_hashes"] == train["clip_hash"].tolist() and js["heldout_clip_hashes"] == held["clip_hash"].tolist()
    # a rerun finds every shadow built: no epoch is trained again, the same one is chosen; progress per recipe
    seen: list[tuple[int, int, str]] = []
    again = build_shadow_grid(ws, "tiny", str(base), str(target), out, recipes=recipes, n_nonmembers=2, n_holdout=3,
                              progress=lambda d, t, m: seen.append((d, t, m)))
    assert not [m for _, _, m in seen if "epoch " in m]
    assert [d for d, _, m in seen if "median gap" in m] == [1, 2, 3, 4] and {t for _, t, _ in seen} == {4}
    assert again["chosen"] == js["chosen"] and [r["median_gap"] for r in again["recipes"]] == [r["median_gap"] for r in js["recipes"]]


def test_the_chosen_recipe_is_the_closest_to_the_target_on_the_held_out_clips(setup):
    ws, _, target, out, js = setup
    clips = ws.analysis_clips("tiny").set_index("clip_hash")
    held = _inputs(ws, clips.loc[js["heldout_clip_hashes"]].reset_index())
    t = _given_losses(target, held)
    medians = [float(np.median(_given_losses(Path(r["folder"]), held) - t)) for r in js["recipes"]]
    for r, m in zip(js["recipes"], medians):
        assert r["median_gap"] == pytest.approx(m, rel=1e-5, abs=1e-6) and r["n"] == 3
        assert r["gap_ci"][0] <= r["median_gap"] <= r["gap_ci"][1]
    assert js["chosen"] == int(np.argmin(np.abs(medians)))
    assert js["chosen_folder"] == js["recipes"][js["chosen"]]["folder"]


def test_ties_go_to_the_cheaper_recipe():
    from core.pipeline.shadow_grid import choose_recipe

    rows = [{"abs_gap": 0.2, "recipe": {"epochs": 6, "lr": 1e-4}}, {"abs_gap": 0.1, "recipe": {"epochs": 12, "lr": 1e-4}},
            {"abs_gap": 0.1, "recipe": {"epochs": 6, "lr": 5e-4}}, {"abs_gap": 0.1, "recipe": {"epochs": 6, "lr": 2e-4}}]
    assert choose_recipe(rows) == 3
    assert choose_recipe(rows[:2]) == 1


def test_an_audit_with_the_chosen_shadow_leaves_out_its_training_and_held_out_clips(setup):
    from core.pipeline.shadow_grid import read_selection
    from core.recipes.shadow import read_card, shadow_lines

    ws, _, target, out, js = setup
    chosen = js["chosen_folder"]
    record = read_selection(out)
    assert record is not None and record["chosen_folder"] == chosen and len(record["recipes"]) == 4
    assert "median" in record["statistic"] and record["heldout_clip_hashes"] == js["heldout_clip_hashes"]
    card = read_card(chosen)
    assert card["heldout_clip_hashes"] == js["heldout_clip_hashes"] and card["recipe_selection"]["recipes"] == 4
    res = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(target), "--reference", chosen, *FAST, "--json"))
    why = {c["clip_hash"]: c["reason"] for c in res["excluded_clips"]}
    assert set(why) == set(js["trained_clip_hashes"]) | set(js["heldout_clip_hashes"])
    assert {why[h] for h in js["trained_clip_hashes"]} == {f"trained the shadow reference {chosen}"}
    assert {why[h] for h in js["heldout_clip_hashes"]} == {f"held out to choose the shadow's recipe (shadow reference {chosen})"}
    tested = ws.run_table(ws.load_run(res["run_id"]), "clips").index
    assert len(tested) == 12 - 5 and not set(tested) & set(why)
    (line,) = shadow_lines([chosen], res["excluded_clips"])
    assert "chosen among 4 on 3 other held-out ones" in line and "(5 of them in this dataset)" in line


def test_the_cli_prints_the_table_and_the_chosen_folder(setup):
    ws, base, target, out, js = setup
    text = _cli(ws, "reference", "build", "--base", str(base), "--target", str(target), "--dataset", "tiny", "--out", str(out), *GRID)
    assert text.count("\n  ") == 5 and text.count("<- chosen") == 1
    assert f"chosen: {js['chosen_folder']}" in text and "2 training and 3 held-out clips out" in text


def test_a_grid_without_a_target_or_with_too_many_clips_is_refused_by_name(setup, tmp_path, capsys):
    from core.cli import main
    from core.pipeline.shadow_grid import build_shadow_grid
    from core.recipes.shadow import ShadowRecipe

    ws, base, target, _, _ = setup
    args = ["reference", "build", "--base", str(base), "--dataset", "tiny", "--out", str(tmp_path / "g"), "--workspace", str(ws.root)]
    assert main([*args, "--nonmembers", "2", "--epochs", "1,2", "--holdout", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs --target" in err and "\n" not in err
    assert main([*args, "--nonmembers", "2", "--epochs", "1,2", "--target", str(target)]) == 2
    assert "needs --holdout" in capsys.readouterr().err
    assert main([*args, "--nonmembers", "4", "--lr", "1e-4,3e-3", "--target", str(target), "--holdout", "3"]) == 2
    err = capsys.readouterr().err
    assert "4 training and 3 held-out of the 8 known non-members" in err and "nonmembers + holdout at most 6" in err
    with pytest.raises(ValueError, match="holdout at most 6"):
        build_shadow_grid(ws, "tiny", str(base), str(target), tmp_path / "h", recipes=[ShadowRecipe()], n_nonmembers=5,
                          n_holdout=2)
    assert not (tmp_path / "g").exists() and not (tmp_path / "h").exists()
