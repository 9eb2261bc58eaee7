"""Uploading audio through the browser: a folder and a zip, each with good clips and bad
files; the page must report what was stored and list every rejected file with its reason."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import App, grid_rows, metric_value, write_corpus

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _name_dataset(app: App, name: str) -> None:
    # the "Add a dataset" expander starts closed once the workspace holds a dataset
    details = app.page.locator('[data-testid="stExpander"] details').filter(has_text="Add a dataset")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    box = app.page.get_by_label("Dataset name")
    expect(box).to_be_editable()
    box.fill(name)
    box.press("Enter")  # a text input reaches the script on Enter or blur
    app.wait_idle()
    expect(app.page.get_by_role("button", name="Ingest")).to_be_enabled()


def _ingest_and_check(app: App, workspace, name: str) -> None:
    page = app.page
    page.get_by_role("button", name="Ingest").click()
    success = page.locator('[data-testid="stAlert"]').filter(has_text="Ingested")
    expect(success).to_be_visible(timeout=90_000)
    expect(success).to_contain_text(f"Ingested {name} (read as folders): 8 unique clips analysed (4 members + 4 non-members) from 10 files; 2 rejected.")
    expect(page.locator('[data-testid="stAlert"]').filter(has_text="2 file(s) rejected")).to_be_visible()
    app.wait_idle()
    assert not app.exception_texts()

    # the first table on the page is the ingest report's list of rejected files
    rows = grid_rows(page.locator('[data-testid="stDataFrame"]').first)
    shown = {Path(path).name: reason for path, reason in rows}
    assert set(shown) == {"empty.wav", "notes.wav"}, rows
    assert "empty" in shown["empty.wav"] and "0 bytes" in shown["empty.wav"]
    assert shown["notes.wav"].startswith("unreadable or unsupported audio")
    # the page shows what the workspace recorded
    stored = workspace.rejected(name)
    assert sorted(Path(p).name for p in stored["path"]) == ["empty.wav", "notes.wav"]
    assert {Path(p).name: r for p, r in zip(stored["path"], stored["reason"])} == shown

    # the summary below the upload panel, for the new dataset
    app.select("Dataset", name)
    expect(page.get_by_role("combobox", name="Dataset", exact=True)).to_have_value(name)
    assert metric_value(page, "Unique clips analysed") == "8"
    assert metric_value(page, "Members (P)") == "4"
    assert metric_value(page, "Non-members (U)") == "4"
    assert metric_value(page, "Rejected files") == "2"
    clips = workspace.analysis_clips(name)
    assert len(clips) == 8 and int(clips["y"].sum()) == 4


def test_upload_folder_reports_clips_and_rejections(app: App, workspace, tmp_path: Path):
    root = write_corpus(tmp_path / "corpus")
    app.goto("Dataset")
    _name_dataset(app, "folder-up")
    # Streamlit's directory uploader is an <input type=file webkitdirectory>; Playwright
    # uploads a whole directory into it, with relative paths, as a browser would.
    app.page.locator('input[type="file"][webkitdirectory]').set_input_files(root)
    expect(app.page.get_by_text("empty.wav")).to_be_visible()
    app.wait_idle()
    _ingest_and_check(app, workspace, "folder-up")


def test_upload_zip_reports_clips_and_rejections(app: App, workspace, tmp_path: Path):
    root = write_corpus(tmp_path / "corpus")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    archive = tmp_path / "corpus.zip"
    archive.write_bytes(buf.getvalue())

    app.goto("Dataset")
    _name_dataset(app, "zip-up")
    app.page.get_by_role("tab", name="Upload a zip").click()
    app.page.locator('input[type="file"][accept*=".zip"]').set_input_files(archive)
    expect(app.page.get_by_text("corpus.zip")).to_be_visible()
    app.wait_idle()
    _ingest_and_check(app, workspace, "zip-up")
