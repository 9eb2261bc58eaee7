"""The Dataset Inference page through AppTest, on a workspace whose runs come from the
core operations (an MIA run over a synthetic indicator table, then ``audit_di``).

The target picker lists zoo targets whose folder has a model card; the test gives it a
card in a temporary assets folder. The target's weights are never loaded: the DI
operation reuses the stored MIA run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.viz.theme import verdict_style
from test_pipeline_di import TARGET, save_mia, write_corpus

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "4_Dataset_Inference.py")


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, write_corpus(tmp_path / "iid"), "synth")
    assets = tmp_path / "assets"
    card = assets / "zoo" / TARGET.split(":", 1)[1] / "card.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"name": TARGET}), encoding="utf-8")
    monkeypatch.setenv("OVERHEARD_ASSETS", str(assets))
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    return ws


def _run() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_empty_state_says_what_to_do(env: Workspace) -> None:
    at = _run()
    assert at.title[0].value == "Dataset inference"
    assert any("press **Run dataset inference**" in i.value for i in at.info)
    assert any(b.label == "Run dataset inference" for b in at.button)
    assert at.selectbox(key="di-scorer").value == "auto"


def test_shows_verdict_metrics_curve_and_comparison(env: Workspace) -> None:
    save_mia(env, "synth", shift=0.6)
    _, out = audit_di(env, "synth", TARGET, DIRunConfig(n_resamples=40, null_resamples=60, compare=True))
    at = _run()
    # a positive finding is the tool working: the verdict's own style, never an error box
    assert not at.error
    boxes = [m.value for m in at.markdown if 'class="di-verdict"' in m.value]
    assert len(boxes) == 1 and html.escape(out["headline"]) in boxes[0] and "Evidence that the suspect set was used" in boxes[0]
    assert verdict_style(True) in boxes[0] and verdict_style(True) != verdict_style(False)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["p-value"] == f"{out['p_value']:.2g}"
    # both "suspects needed" numbers in the tile, each named in the caption, as the CLI and the report name them
    from core.di.curve import NEEDED_ALL, NEEDED_EQUAL, suspects_needed

    (n_all, _), (n_equal, _) = suspects_needed(out)
    assert n_all == str(out["min_suspects"]) and metrics["Suspects needed"] == f"{n_all} · {n_equal}"
    assert any(f"{n_all} {NEEDED_ALL}; {n_equal} {NEEDED_EQUAL}" in c.value for c in at.caption)
    assert metrics["Null rejection rate"] == f"{out['null_rejection_rate']:.1%}"
    assert metrics["Per-sample MIA AUC"] == f"{out['mia_auc']:.3f}"
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    curve = json.loads(charts[0].proto.spec)
    assert curve["layout"]["xaxis"]["type"] == "log" and curve["layout"]["yaxis"]["type"] == "log"
    assert "suspects" in curve["layout"]["xaxis"]["title"]["text"]
    table = next(d.value for d in at.dataframe if "scorer" in d.value.columns)  # the scorer comparison
    assert set(table["scorer"]) == {"control_split", "cross_fit", "normalized_sum", "pooled_sum", "mean_loss"}
    for row in out["comparison"]:  # suspects needed in the words every surface uses
        shown = table.loc[table["scorer"] == row["scorer"], "min_suspects"].item()
        assert shown == ("" if "error" in row else "not reached" if row["min_suspects"] is None else str(row["min_suspects"]))
    assert any("how to read" in c.value or "dashed α line" in c.value for c in at.caption)
    # changing a setting tells the user the shown run is stale
    at.selectbox(key="di-scorer").set_value("control_split").run()
    assert any("settings above differ" in i.value for i in at.info)


def test_the_planner_plans_for_the_non_members_the_user_asks_for(env: Workspace) -> None:
    """A run made with N known non-members to plan for says so under the flags; the input
    holding another N says the shown run is stale."""
    save_mia(env, "synth", shift=0.6)
    _, out = audit_di(env, "synth", TARGET, DIRunConfig(n_resamples=20, null_resamples=20, plan_nonmembers=300))
    assert "with 300 known non-members" in out["which"]["plan_sentence"]
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    at.number_input(key="di-plan-nonmembers").set_value(300).run()
    assert any("with 300 known non-members" in c.value for c in at.caption)
    assert not any("settings above differ" in i.value for i in at.info)
    at.number_input(key="di-plan-nonmembers").set_value(50).run()
    assert any("settings above differ" in i.value for i in at.info)


def test_no_evidence_and_confounded_warning_are_visible(env: Workspace, tmp_path: Path) -> None:
    ingest_path(env, write_corpus(tmp_path / "shift", n=40, shifted=True), "shifted")
    save_mia(env, "shifted", shift=0.0)
    audit_blind(env, "shifted", BlindRunConfig(groups=("acoustic",), n_splits=5, n_boot=50))
    _, out = audit_di(env, "shifted", TARGET, DIRunConfig(n_resamples=40, null_resamples=60))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["_dataset"] = "shifted"
    at.run()
    assert not at.exception
    assert at.selectbox(key="dataset").value == "shifted"
    boxes = [m.value for m in at.markdown if 'class="di-verdict"' in m.value]
    assert len(boxes) == 1 and ">No evidence" in boxes[0] and verdict_style(False) in boxes[0] and not at.error
    assert any(w.value.startswith("confounded: the blind baseline") for w in at.warning)
    # every warning once, and the blind verdict again beside the share and the flags
    assert out["which"]["caveat"].startswith("the blind baseline reads 'confounded'")
    assert len(at.warning) == len(out["warnings"]) + 1 and at.warning[-1].value.startswith("The blind baseline reads 'confounded'")


def test_page_says_when_a_newer_mia_run_exists(env: Workspace) -> None:
    first = save_mia(env, "synth", shift=0.6)
    _, out = audit_di(env, "synth", TARGET, DIRunConfig(n_resamples=20, null_resamples=20))
    assert out["mia_run"] == first
    at = _run()
    assert not any("newer MIA run" in i.value for i in at.info)
    assert any(f"from MIA run `{first}` (white-box, generated text)" in c.value for c in at.caption)
    newer = save_mia(env, "synth", shift=0.6, seed=1)
    at = _run()
    assert any(f"A newer MIA run (`{newer}`) exists" in i.value for i in at.info)


def test_the_cli_and_the_report_name_both_suspects_needed_numbers(env: Workspace, capsys) -> None:
    from core.cli import main
    from core.di.curve import NEEDED_ALL, NEEDED_EQUAL, suspects_needed
    from core.viz.report import build_report

    save_mia(env, "synth", shift=0.6)
    assert main(["di", "--dataset", "synth", "--target", TARGET, "--workspace", str(env.root), "--n-resamples", "30",
                 "--null-resamples", "30"]) == 0
    out = capsys.readouterr().out
    run = env.latest_run("di", "synth", TARGET)
    (n_all, _), (n_equal, _) = suspects_needed(run["result"])
    assert f"suspects needed: {n_all} {NEEDED_ALL}, {n_equal} {NEEDED_EQUAL}" in out
    html_report = build_report(env, "synth", TARGET)
    assert html.escape(f"suspects needed (median p < alpha), {NEEDED_ALL}") in html_report
    assert html.escape(f"suspects needed (median p < alpha), {NEEDED_EQUAL}") in html_report


def test_loader_options_reach_the_di_job_and_unreadable_ones_run_nothing(env: Workspace, monkeypatch) -> None:
    # the MIA run dataset inference makes (or reads) is loaded with the page's loader options
    from core.runtime import jobs

    sent: list = []
    monkeypatch.setattr(jobs, "submit", lambda ws, kind, params, **kw: sent.append((kind, params)) or "job-x")
    at = _run()
    at.text_area(key="di-loader-options").input("batch_size=4\n").run()
    assert not at.exception and not at.error
    at.button(key="start-di").click().run()
    kind, params = sent[-1]
    assert kind == "di" and params["config"]["target_options"] == {"batch_size": 4}
    assert DIRunConfig.from_dict(params["config"]).target_options == (("batch_size", 4),)
    at.text_area(key="di-loader-options").input("trust_remote_code=true").run()
    assert any("never runs Python code" in e.value for e in at.error)
    assert not any(b.key == "start-di" for b in at.button)


def test_the_page_shows_the_run_against_the_chosen_references_or_says_which_it_shows(env: Workspace, tmp_path: Path) -> None:
    """As on the MIA page: the headline is the run the form describes, or a note names the
    references of the run shown instead."""
    save_mia(env, "synth", shift=0.6)
    _, out = audit_di(env, "synth", TARGET, DIRunConfig(n_resamples=40, null_resamples=60))
    at = _run()
    assert not [i for i in at.info if i.value.startswith("No run against")]  # none chosen, the plain run shown
    assert {m.label: m.value for m in at.metric}["p-value"] == f"{out['p_value']:.2g}"
    (tmp_path / "base-model").mkdir()
    at.text_area(key="references-folders").set_value(str(tmp_path / "base-model")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert [i.value for i in at.info if i.value.startswith("No run against")] == [
        "No run against base-model yet: showing the newest at the white-box level, no reference model (uncalibrated). "
        "Press **Run dataset inference** for the references chosen above."]
    assert {m.label: m.value for m in at.metric}["p-value"] == f"{out['p_value']:.2g}"  # still shown, and said so
