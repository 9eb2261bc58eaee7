"""The audit report over every kind of run the pages produce, from the CLI and the page,
including run records written by earlier versions (the report must never crash)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.pipeline.common import provenance
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.viz.report import build_report
from test_pipeline_di import TARGET, save_mia, write_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def full_ws(tmp_path: Path) -> Workspace:
    """Blind, MIA, DI (with its null curve) and disentanglement runs on one dataset."""
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, write_corpus(tmp_path / "iid"), "synth")
    audit_blind(ws, "synth", BlindRunConfig(groups=("metadata",), n_boot=50))
    save_mia(ws, "synth", shift=0.6)
    _, di = audit_di(ws, "synth", TARGET, DIRunConfig(n_resamples=30, null_resamples=50))
    assert isinstance(di["null_curve"], dict) and di["null_curve"]["points"]  # the shape that crashed the report
    details = {
        "original": {"auc": 0.81, "auc_ci": [0.7, 0.9], "realizations": 1},
        "silence": {"auc": 0.5, "auc_ci": [0.42, 0.58], "realizations": 1},
        "tts": {"skipped": "no transcripts"},
    }
    ws.save_run("disentangle", dataset="synth", target=TARGET, config={"conditions": list(details)},
                result={"details": details}, provenance=provenance(ws, "synth"))
    return ws


def test_report_over_every_kind_of_run(full_ws: Workspace) -> None:
    html = build_report(full_ws, "synth", TARGET)
    for title in ("1 · Blind baseline", "2 · Per-sample membership inference", "3 · Dataset inference", "4 · Modality disentanglement"):
        assert title in html
    assert "could not be rendered" not in html
    assert "null: non-members as suspects" in html  # the null curve is drawn


def test_report_cli_over_di_run_with_null_curve(full_ws: Workspace, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--dataset", "synth", "--out", str(out), "--workspace", str(full_ws.root)]) == 0
    assert "3 · Dataset inference" in out.read_text(encoding="utf-8")


def test_report_page_over_every_kind_of_run(full_ws: Workspace, monkeypatch) -> None:
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(full_ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    at = AppTest.from_file(str(ROOT / "pages" / "6_Report.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(b.label == "Download report (HTML)" for b in at.get("download_button"))


def _rewrite(ws: Workspace, kind: str, edit) -> None:
    run = ws.latest_run(kind, "synth", None if kind == "blind" else TARGET)
    result = copy.deepcopy(run["result"])
    edit(result)
    with ws.connect() as con:
        con.execute("UPDATE runs SET result=? WHERE id=?", (json.dumps(result), run["id"]))


def test_older_and_damaged_run_records_never_crash_the_report(full_ws: Workspace, tmp_path: Path) -> None:
    # a DI record whose null curve is a bare list (the other stored shape)
    _rewrite(full_ws, "di", lambda r: r.update(null_curve=r["null_curve"]["points"]))
    html = build_report(full_ws, "synth", TARGET)
    assert "could not be rendered" not in html and "null: non-members as suspects" in html
    # a record missing fields the renderer needs: an error box naming the run, the rest intact
    _rewrite(full_ws, "mia", lambda r: r.pop("roc"))
    html = build_report(full_ws, "synth", TARGET)
    mia_id = full_ws.latest_run("mia", "synth", TARGET)["id"]
    assert "could not be rendered" in html and mia_id in html
    assert "3 · Dataset inference" in html and "1 · Blind baseline" in html
    assert main(["report", "--dataset", "synth", "--out", str(tmp_path / "r.html"), "--workspace", str(full_ws.root)]) == 0


def test_unexpected_cli_failure_is_one_line_with_a_traceback_file(full_ws: Workspace, monkeypatch, capsys) -> None:
    import core.viz.report as report

    def boom(*a, **k):
        raise TypeError("string indices must be integers")

    monkeypatch.setattr(report, "build_report", boom)
    monkeypatch.delenv("OVERHEARD_DEBUG", raising=False)
    rc = main(["report", "--dataset", "synth", "--out", "x.html", "--workspace", str(full_ws.root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "internal error (TypeError" in err[0] and "Traceback" not in err[0]
    log = full_ws.root / "logs" / "errors.log"
    assert "Traceback" in log.read_text(encoding="utf-8")
