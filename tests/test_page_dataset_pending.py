"""After an upload the Dataset page shows the dataset just ingested, not the one shown before:
the choice made when the ingest started survives the reruns while it is still being ingested."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.data.ingest import ingest_path

ROOT = Path(__file__).resolve().parents[1]


def test_a_dataset_being_ingested_is_selected_once_ready(workspace, audio_folder, monkeypatch):
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    from core.ui.common import _settings

    _settings.clear()
    ingest_path(workspace, audio_folder, "old")
    at = AppTest.from_file(str(ROOT / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    assert at.selectbox(key="dataset").value == "old"
    workspace.create_dataset("new")  # what the ingest job does first: status 'ingesting'
    at.session_state["_dataset"] = "new"  # what starting the ingest on this page sets
    at.run()
    assert not at.exception and at.selectbox(key="dataset").value == "old"
    assert any("'new' is being ingested" in c.value for c in at.caption)
    assert at.session_state["_dataset"] == "new"  # not overwritten by the dataset shown meanwhile
    ingest_path(workspace, audio_folder, "new", replace=True)
    at.run()
    assert at.selectbox(key="dataset").value == "new" and at.query_params["dataset"] in ("new", ["new"])
    _settings.clear()
