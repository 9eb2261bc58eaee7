"""Shadow references on the MIA Audit page (:mod:`core.ui.shadow_view`).

A random-weight micro Whisper is the public base and another one (another seed) the
audited "fine-tune"; the dataset has 4 members and 8 non-members with transcripts. The
page's "Build a shadow reference" form submits a ``shadow-reference`` job with the chosen
base, recipe and output folder; once the job has run, the folder is offered as a
reference, and its card is one line on every surface that shows the reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.runtime import jobs
from core.runtime.store import Workspace
from tests.conftest import transcribed_tones

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(workspace, base folder, target folder)."""
    from tests.multilingual_fixture import tiny_multilingual_whisper

    root = tmp_path_factory.mktemp("shadow-page")
    ws = transcribed_tones(root)
    base = tiny_multilingual_whisper(root / "models" / "base", multilingual=False)
    target = tiny_multilingual_whisper(root / "models" / "ft", seed=1, multilingual=False)
    return ws, base.resolve(), target.resolve()


def _page(ws: Workspace, target: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.session_state["_target_typed"] = [str(target)]
    at.session_state["_target"] = str(target)
    at.session_state["_target_user"] = True
    return at.run()


def _env(ws: Workspace, base: Path, monkeypatch) -> None:
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_ROOTS", str(base.parents[1]))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    monkeypatch.setattr(jobs, "spawn", lambda ws, job_id: None)  # the test runs the job itself


def _shadow(ws: Workspace, base: Path) -> Path:
    """The shadow the form builds (built here when its test did not run first)."""
    from core.pipeline.reference import build_shadow
    from core.recipes.shadow import ShadowRecipe, read_card

    out = ws.root.resolve() / "references" / "base-shadow-tiny"
    if read_card(out) is None:
        build_shadow(ws, "tiny", str(base), out, n_nonmembers=3, recipe=ShadowRecipe(epochs=2, lr=0.003))
    return out


def test_the_form_builds_a_shadow_and_the_picker_offers_it(setup, monkeypatch):
    ws, base, target = setup
    _env(ws, base, monkeypatch)
    at = _page(ws, target)
    assert not at.exception, [e.message for e in at.exception]
    at.text_input(key="shadow-base-typed").input(str(base)).run()
    at.number_input(key="shadow-n").set_value(3).run()
    at.number_input(key="shadow-epochs").set_value(2).run()
    at.number_input(key="shadow-lr").set_value(0.003).run()
    at.number_input(key="shadow-lora").set_value(2).run()  # LoRA adapters of rank 2, merged when saved
    assert not [c.value for c in at.caption if c.value.startswith("⚠")]
    at.button(key="shadow-start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    started = jobs.jobs(ws, kind="shadow-reference")
    assert len(started) == 1
    params = jobs.job(ws, started.iloc[0]["id"])["params"]
    out = ws.root.resolve() / "references" / "base-shadow-tiny"
    assert params["base"] == str(base) and params["out"] == str(out) and params["dataset"] == "tiny"
    assert params["n_nonmembers"] == 3
    assert params["recipe"]["epochs"] == 2 and params["recipe"]["lr"] == pytest.approx(0.003) and params["recipe"]["lora_rank"] == 2
    assert at.button(key="shadow-start").disabled  # one build at a time

    assert jobs.run_job(ws, started.iloc[0]["id"]) == str(out)
    card = json.loads((out / "card.json").read_text())
    assert card["lora"]["rank"] == 2 and card["lora"]["merged"] and (out / "model.safetensors").is_file()
    at = _page(ws, target)
    assert not at.exception, [e.message for e in at.exception]
    assert str(out) in at.multiselect(key="references").options
    assert any("Shadow reference ready" in s.value for s in at.success)


def test_the_shadow_card_is_one_line_beside_the_calibrated_result(setup, monkeypatch):
    from core.recipes.shadow import read_card, shadow_lines
    from core.viz.report import _shadow_note

    ws, base, _ = setup
    out = _shadow(ws, base)
    card = read_card(out)
    excluded = [{"clip_hash": h, "reason": f"trained the shadow reference {out}"} for h in card["trained_clip_hashes"]]
    (line,) = shadow_lines([str(out), "zoo:lalm-base"], excluded)  # a reference without a card has no line
    assert line.startswith(f"{out}: shadow of {base}")
    assert "2 epoch(s), lr 0.003, batch 8" in line and "trained on 3 known non-members of tiny" in line
    assert line.endswith("those clips were kept out of this audit (3 of them in this dataset)")
    note = _shadow_note({"calibration": {"references": [str(out)]}, "excluded_clips": excluded})
    assert note.count("<p") == 1 and "3 known non-members" in note
    assert _shadow_note({"calibration": {"references": ["zoo:lalm-base"]}}) == ""


def test_the_advisor_answers_on_the_page_and_the_mia_run_records_it(setup, monkeypatch):
    from core.pipeline import MIAConfig, audit_mia
    from core.records import record_of

    ws, base, target = setup
    shadow = _shadow(ws, base)
    _env(ws, base, monkeypatch)
    at = _page(ws, target)
    at.text_input(key="shadow-base-typed").input(str(base)).run()
    at.number_input(key="shadow-n").set_value(3).run()
    at.button(key="shadow-advise").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (job_id,) = jobs.jobs(ws, kind="reference-advice")["id"]
    assert jobs.job(ws, job_id)["params"] == {"dataset": "tiny", "target": str(target), "base": str(base), "n_nonmembers": 3, "seed": 0}
    run_id = jobs.run_job(ws, job_id)
    advice = ws.load_run(run_id)["result"]
    assert advice["recommendation"] in ("shadow", "base or none") and advice["clips"] == 3
    at = _page(ws, target)
    assert any(f"**{advice['recommendation']}**" in i.value for i in at.info)

    _, res = audit_mia(ws, "tiny", str(target), MIAConfig(mode="given", references=(str(shadow),), n_boot=20, n_perm=0, n_splits=2))
    assert res["advice"] == {"recommendation": advice["recommendation"], "reason": advice["reason"], "base": str(base), "run": run_id}
    rows = dict(record_of("mia").rows(res))
    assert rows["reference advisor (target vs base on known non-members)"].startswith(advice["recommendation"])


def test_the_form_builds_a_grid_and_the_picker_offers_the_chosen_shadow(setup, monkeypatch):
    ws, base, target = setup
    _env(ws, base, monkeypatch)
    at = _page(ws, target)
    at.text_input(key="shadow-base-typed").input(str(base)).run()
    at.toggle(key="shadow-grid").set_value(True).run()
    at.text_input(key="shadow-lr-grid").input("1e-4, 3e-3").run()
    at.number_input(key="shadow-n").set_value(5).run()
    at.number_input(key="shadow-holdout").set_value(2).run()  # 5 + 2 of the 8 non-members: too many
    assert any("nonmembers + holdout at most 6" in c.value for c in at.caption if c.value.startswith("⚠")), [c.value for c in at.caption]
    assert at.button(key="shadow-start").disabled
    at.number_input(key="shadow-n").set_value(2).run()
    at.number_input(key="shadow-holdout").set_value(3).run()
    assert not [c.value for c in at.caption if c.value.startswith("⚠")]
    at.button(key="shadow-start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (job_id,) = jobs.jobs(ws, kind="shadow-grid")["id"]
    params = jobs.job(ws, job_id)["params"]
    out = ws.root.resolve() / "references" / "base-shadow-tiny-grid"
    assert params["target"] == str(target) and params["out"] == str(out) and params["n_holdout"] == 3
    assert [(r["epochs"], r["lr"]) for r in params["recipes"]] == [(2, 1e-4), (2, 3e-3)]
    chosen = jobs.run_job(ws, job_id)
    assert Path(chosen).parent == out
    at = _page(ws, target)
    assert not at.exception, [e.message for e in at.exception]
    options = at.multiselect(key="references").options
    assert chosen in options and not [o for o in options if o.startswith(str(out)) and o != chosen]


def _set_form(ws: Workspace, base: Path, target: Path, *, n: int, k: int) -> AppTest:
    """The page with the set form filled in: the typed base, ``n`` non-members, ``k`` shadows of 1 epoch at 0.003."""
    at = _page(ws, target)
    at.text_input(key="shadow-base-typed").input(str(base)).run()
    at.number_input(key="shadow-n").set_value(n).run()
    at.number_input(key="shadow-epochs").set_value(1).run()
    at.number_input(key="shadow-lr").set_value(0.003).run()
    at.number_input(key="shadow-k").set_value(k).run()
    return at


def _warns_then_starts(at: AppTest, warning: str, fix: Callable[[AppTest], object]) -> None:
    """The form refuses (``warning`` in a ⚠ caption, its button disabled) until ``fix(at)``; then it starts the job."""
    def warnings() -> list[str]:
        return [c.value for c in at.caption if c.value.startswith("⚠")]

    assert any(warning in w for w in warnings()), warnings()
    assert at.button(key="shadow-start").disabled
    fix(at)
    assert not warnings()
    at.button(key="shadow-start").click().run()
    assert not at.exception, [e.message for e in at.exception]


def test_the_form_builds_several_shadows_and_the_picker_offers_the_set_as_one_choice(setup, monkeypatch):
    ws, base, target = setup
    _env(ws, base, monkeypatch)
    at = _set_form(ws, base, target, n=3, k=3)
    at.radio(key="shadow-vary").set_value("subset").run()  # 3 disjoint draws of 3 of the 8 non-members: too many
    _warns_then_starts(at, "nonmembers x shadows at most 6 (at least 2 must stay for the audit); lower Known non-members or "
                           "Shadows, or train every shadow on the same clips (“the same non-members”)",
                       lambda at: at.number_input(key="shadow-n").set_value(2).run())
    (job_id,) = jobs.jobs(ws, kind="shadow-set")["id"]
    params = jobs.job(ws, job_id)["params"]
    out = ws.root.resolve() / "references" / "base-shadow-tiny-3shadows"
    assert params["out"] == str(out) and params["shadows"] == 3 and params["vary"] == "subset" and params["n_nonmembers"] == 2
    assert params["recipe"]["epochs"] == 1 and params["recipe"]["lr"] == pytest.approx(0.003)
    assert jobs.run_job(ws, job_id) == str(out)
    at = _page(ws, target)
    assert not at.exception, [e.message for e in at.exception]
    options = at.multiselect(key="references").options
    assert str(out) in options and not [o for o in options if o.startswith(f"{out}/")]  # one choice, not its shadows
    # picked, it stands for its three shadows in the run's configuration
    at.multiselect(key="references").set_value([str(out)]).run()
    at.button(key="start-mia").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (mia_job,) = jobs.jobs(ws, kind="mia")["id"]
    assert jobs.job(ws, mia_job)["params"]["config"]["references"] == [str(out / f"s{i}") for i in range(3)]


def test_the_form_builds_folds_of_seeds_and_the_page_offers_to_cross_fit_them(setup, monkeypatch):
    ws, base, target = setup
    _env(ws, base, monkeypatch)
    at = _set_form(ws, base, target, n=2, k=3)
    assert at.number_input(key="shadow-folds").disabled  # folds belong to the third way only
    at.radio(key="shadow-vary").set_value("both").run()
    assert not at.number_input(key="shadow-folds").disabled
    # the form says it in its own labels, not the CLI's options
    _warns_then_starts(at, "“folds of disjoint non-members” trains as many shadows on each of Folds disjoint draws, two or more "
                           "on each: Shadows must be a multiple of Folds (2 or more) and at least twice it, got 3 shadows and 2 folds",
                       lambda at: at.number_input(key="shadow-k").set_value(4).run())
    job_id = jobs.jobs(ws, kind="shadow-set")["id"].iloc[0]
    params = jobs.job(ws, job_id)["params"]
    assert params["shadows"] == 4 and params["vary"] == "both" and params["folds"] == 2 and params["n_nonmembers"] == 2
    out = jobs.run_job(ws, job_id)
    at = _page(ws, target)
    at.multiselect(key="references").set_value([out]).run()
    at.checkbox(key="cross-fit").check().run()  # two folds of two seeds: offered
    assert not at.exception, [e.message for e in at.exception]
    # three of its shadows (two on one draw, one on the other): not offered, and the page says why
    at = _page(ws, target)
    at.text_area(key="references-folders").input("\n".join(f"{out}/s{i}" for i in (0, 2, 1))).run()
    assert not [c for c in at.checkbox if c.key == "cross-fit"]
    assert any(c.value == "Not offered to cross-fit: cross-fitting needs as many shadows on each set of clips: 2 sets with 2, 1 "
                          "shadows." for c in at.caption), [c.value for c in at.caption]


def test_with_a_set_of_disjoint_shadows_the_page_offers_to_cross_fit_them_and_shows_it(setup, monkeypatch):
    from core.pipeline.shadow_set import build_shadow_set, read_shadow_set
    from core.recipes.shadow import ShadowRecipe

    ws, base, target = setup
    _env(ws, base, monkeypatch)
    out = ws.root.resolve() / "references" / "base-shadow-tiny-3shadows"
    if read_shadow_set(out) is None:  # the set the form builds above, when that test did not run first
        build_shadow_set(ws, "tiny", str(base), out, n_nonmembers=2, shadows=3, vary="subset",
                         recipe=ShadowRecipe(epochs=1, lr=0.003))
    at = _page(ws, target)
    at.multiselect(key="references").set_value([str(_shadow(ws, base))]).run()
    assert not [c for c in at.checkbox if c.key == "cross-fit"]  # one shadow: nothing to cross-fit
    at.multiselect(key="references").set_value([str(out)]).run()
    at.checkbox(key="cross-fit").check().run()
    for job_id in jobs.jobs(ws, kind="mia")["id"]:  # a job an earlier test left queued holds the button
        jobs.run_job(ws, job_id)
    at = _page(ws, target)
    at.multiselect(key="references").set_value([str(out)]).run()
    at.checkbox(key="cross-fit").check().run()
    at.button(key="start-mia").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job_id = jobs.jobs(ws, kind="mia")["id"].iloc[0]
    config = jobs.job(ws, job_id)["params"]["config"]
    assert config["cross_fit"] is True and config["references"] == [str(out / f"s{i}") for i in range(3)]
    run_id = jobs.run_job(ws, job_id)
    at = _page(ws, target)
    assert not at.exception, [e.message for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "Cross-fitted shadows: each clip calibrated against 2 of the 3 shadows, never one that trained on it" in captions
    assert "those clips were audited, each calibrated against shadows that never trained on it (cross-fitted)" in captions
    from core.viz.report import _shadow_note

    note = _shadow_note(ws.load_run(run_id)["result"])  # the report says the same
    assert "Cross-fitted shadows: each clip calibrated against 2 of the 3 shadows" in note and "kept out" not in note
    details = [t.value for t in at.table]  # the run's details: the same line as the CLI's and the report's
    assert any(df.iloc[:, 1].astype(str).str.startswith("each clip calibrated against 2 of the 3 shadows").any() for df in details)


def test_the_reference_picker_offers_the_shadows_of_the_targets_family_only(tmp_path):
    """A shadow built for a text-to-audio target is offered for targets of its family (and
    a set by its first shadow's family), never for another family's."""
    import json

    from core.pipeline.reference import REFERENCES_DIR, workspace_shadows
    from core.pipeline.shadow_set import SET_FILE, SET_KIND
    from core.recipes.shadow import CARD_KIND
    from core.runtime.store import Workspace

    ws = Workspace(tmp_path / "ws")
    refs = ws.root / REFERENCES_DIR
    for name, family in (("ar", "autoregressive"), ("diff", "diffusion"), ("set/s0", "diffusion"), ("set/s1", "diffusion")):
        (refs / name).mkdir(parents=True)
        (refs / name / "card.json").write_text(json.dumps({"kind": CARD_KIND, "family": family}))
    (refs / "set" / SET_FILE).write_text(json.dumps({"kind": SET_KIND, "folders": ["s0", "s1"]}))
    spec = {n: str((refs / n).resolve()) for n in ("ar", "diff", "set")}
    assert set(workspace_shadows(ws, "diffusion")) == {spec["diff"], spec["set"]}
    assert workspace_shadows(ws, "autoregressive") == [spec["ar"]] and workspace_shadows(ws, "audio-language") == []
    assert set(workspace_shadows(ws)) == set(spec.values())
