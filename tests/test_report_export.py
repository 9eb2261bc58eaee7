"""Audit report and figure/table export produce valid, complete files."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import plotly.graph_objects as go
import pytest

from core.cli import main
from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.viz.export import figure_bytes, image_export_available, table_bytes
from core.viz.report import build_report


@pytest.fixture
def blind_ws(workspace, audio_folder):
    ingest_path(workspace, audio_folder, "d")
    audit_blind(workspace, "d", BlindRunConfig(groups=("metadata", "acoustic"), n_boot=100))
    return workspace


def test_report_has_sections_figures_and_provenance(blind_ws):
    html = build_report(blind_ws, "d")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "1 · Blind baseline" in html and "Dataset" in html
    assert html.count("Plotly.newPlot") >= 2  # figures embedded
    assert not re.search(r"<script[^>]+src=", html)  # self-contained: plotly.js inline
    run = blind_ws.latest_run("blind", "d")
    assert run["id"] in html and run["provenance"]["dataset_fingerprint"] in html
    assert "scikit-learn" in html  # package versions


def test_report_without_runs_says_what_to_do(workspace, audio_folder):
    ingest_path(workspace, audio_folder, "d")
    assert "No analysis has been run" in build_report(workspace, "d")


def test_report_cli(blind_ws, tmp_path, capsys):
    out = tmp_path / "r" / "report.html"
    assert main(["report", "--dataset", "d", "--out", str(out), "--workspace", str(blind_ws.root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == len(out.read_bytes()) and "Blind baseline" in out.read_text()


def test_table_export_roundtrip():
    df = pd.DataFrame({"clip": ["a", "b"], "score": [0.25, 0.75]})
    assert table_bytes(df, "csv").decode().splitlines() == ["clip,score", "a,0.25", "b,0.75"]
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(table_bytes(df, "parquet"))), df)
    with pytest.raises(ValueError, match="valid: csv, parquet"):
        table_bytes(df, "xlsx")


def test_figure_html_export_is_standalone():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    html = figure_bytes(fig, "html").decode()
    assert "<html>" in html and not re.search(r"<script[^>]+src=", html) and "Plotly.newPlot" in html


@pytest.mark.slow
def test_figure_image_exports_are_valid_files():
    ok, why = image_export_available()
    assert ok, why  # `make test` installs Debian's chromium
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    png = figure_bytes(fig, "png", width=400, height=300)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    svg = figure_bytes(fig, "svg", width=400, height=300).decode()
    assert re.search(r"<svg[^>]*>", svg)
    assert figure_bytes(fig, "pdf", width=400, height=300)[:5] == b"%PDF-"


def _sleeping_exporter(monkeypatch):
    """The image worker replaced by one that never finishes (a Chromium stalled by load)."""
    import sys

    import core.viz.export as export

    monkeypatch.setattr(export, "_worker_argv", [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(export, "image_export_available", lambda: (True, ""))


def test_image_export_is_stopped_after_its_time_limit(monkeypatch):
    import time

    from core.viz.export import ExportTimeout

    _sleeping_exporter(monkeypatch)
    t0 = time.monotonic()
    with pytest.raises(ExportTimeout, match="SVG export did not finish within 0.5 s"):
        figure_bytes(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), "svg", timeout_s=0.5)
    assert time.monotonic() - t0 < 10  # returns, and the worker is stopped (the session checks none is left)


def _export_page() -> None:
    import plotly.graph_objects as go

    from core.ui.export import show_figure

    show_figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), key="roc", caption="a curve")


def test_export_popover_times_out_with_a_message(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    import core.ui.common as common
    import core.ui.export as ui_export

    _sleeping_exporter(monkeypatch)
    monkeypatch.setattr(ui_export, "image_export_available", lambda: (True, ""))
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("OVERHEARD_EXPORT_TIMEOUT_S", "0.5")
    common._settings.clear()
    at = AppTest.from_function(_export_page, default_timeout=30)
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["PNG", "SVG", "PDF"]  # rendered only when asked for
    at.button(key="roc-make-svg").click().run()
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "did not finish within 0.5 s" in msg and "Try again" in msg and "HTML" in msg, msg
    assert not [d for d in at.get("download_button") if d.proto.label.startswith("Save")]
    common._settings.clear()
