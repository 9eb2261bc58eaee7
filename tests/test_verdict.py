"""One blind verdict: the rule, and every surface (Blind page, MIA and DI runs, CLI text,
report) reading the same run the same way."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core.blind.verdict import CONFOUND_AUC, SHIFT_P, blind_verdict, verdict_of_run
from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.ui.blind_view import verdict as page_verdict
from core.viz.report import build_report
from test_pipeline_di import TARGET, save_mia, write_corpus


@pytest.mark.parametrize(
    ("auc", "ci", "p", "level"),
    [
        (0.65, (0.55, 0.75), 0.01, "confounded"),  # the example that read three ways before
        (0.56, (0.50, 0.62), 0.03, "shift"),
        (0.58, (0.46, 0.70), 0.20, "fair"),
        (0.65, (0.55, 0.75), None, "confounded"),  # runs without permutations: judged by the interval
        (0.55, (0.45, 0.65), None, "fair"),
        (CONFOUND_AUC, (0.51, 0.70), SHIFT_P / 2, "confounded"),
    ],
)
def test_rule(auc, ci, p, level) -> None:
    v = blind_verdict(auc, ci, p)
    assert v.level == level
    assert (v.caveat() is None) == (level == "fair")


def _set_blind(ws: Workspace, dataset: str, auc: float, ci: tuple[float, float], p: float) -> dict:
    run = ws.latest_run("blind", dataset)
    result = copy.deepcopy(run["result"])
    result["auc"]["all"], result["auc_ci"]["all"], result["auc_p_value"]["all"] = auc, list(ci), p
    with ws.connect() as con:
        con.execute("UPDATE runs SET result=? WHERE id=?", (json.dumps(result), run["id"]))
    return result


def test_every_surface_reads_the_same_run_the_same_way(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, write_corpus(tmp_path / "c", n=30), "synth")
    audit_blind(ws, "synth", BlindRunConfig(groups=("metadata",), n_boot=50))
    result = _set_blind(ws, "synth", 0.65, (0.55, 0.75), 0.01)
    expected = verdict_of_run(result)
    assert expected.level == "confounded"
    # Blind Baseline page
    assert page_verdict(result) == ("error", expected.sentence)
    # dataset inference
    save_mia(ws, "synth", shift=0.3)
    _, di = audit_di(ws, "synth", TARGET, DIRunConfig(n_resamples=20, null_resamples=40))
    assert di["confounded"] and di["blind_verdict"] == "confounded"
    assert di["warnings"][0].startswith("confounded: the blind baseline") and "p = 0.01" in di["warnings"][0]
    # report
    html = build_report(ws, "synth", TARGET)
    assert "<b>confounded</b>" in html and expected.sentence.split(" (")[0] in html
    # a weak shift reads as a weak shift everywhere too
    result = _set_blind(ws, "synth", 0.56, (0.50, 0.62), 0.03)
    assert page_verdict(result)[0] == "warning"
    _, di = audit_di(ws, "synth", TARGET, DIRunConfig(n_resamples=20, null_resamples=40))
    assert not di["confounded"] and di["blind_verdict"] == "shift" and di["warnings"][0].startswith("weak distribution shift")
    assert "<b>shift</b>" in build_report(ws, "synth", TARGET)


def test_mia_run_quotes_the_verdict_and_links_the_blind_run(workspace, audio_folder) -> None:
    from core.pipeline.mia import MIAConfig, audit_mia

    ingest_path(workspace, audio_folder, "d")
    blind_id, _ = audit_blind(workspace, "d", BlindRunConfig(groups=("metadata",), n_boot=50))
    result = _set_blind(workspace, "d", 0.65, (0.55, 0.75), 0.01)
    _, mia = audit_mia(workspace, "d", "zoo:lalm-small", MIAConfig(n_boot=50, n_perm=50))
    assert mia["blind_run"] == blind_id and mia["blind_verdict"]["level"] == "confounded"
    assert any(w.startswith("confounded: the blind baseline") for w in mia["warnings"])
    assert verdict_of_run(result).level == mia["blind_verdict"]["level"]
