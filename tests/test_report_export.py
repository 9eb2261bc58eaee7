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
