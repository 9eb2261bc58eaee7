"""The built-in demo of a fresh workspace loads in a background job, started once."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.pipeline import DEMO_DATASETS
from core.runtime import jobs
from tests.test_page_ingest_job import wait_job

ROOT = Path(__file__).resolve().parents[1]


def test_fresh_workspace_loads_the_demo_in_a_job_once(workspace, monkeypatch):
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    started = jobs.jobs(workspace, kind="demo")
    assert len(started) == 1
    if jobs.job(workspace, started.iloc[0]["id"])["status"] in ("queued", "running"):  # the page did not wait for it
        assert any("in the background" in i.value for i in at.info)
    row = wait_job(workspace, "demo", timeout=300)
    assert row["status"] == "done" and row["run_id"] == ",".join(DEMO_DATASETS)
    at.run()
    assert not at.exception and not any("in the background" in i.value for i in at.info)
    assert set(at.table[0].value["name"]) == set(DEMO_DATASETS)

    for name in DEMO_DATASETS:  # the user removes the demo: it is not loaded again
        workspace.delete_dataset(name)
    AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert len(jobs.jobs(workspace, kind="demo")) == 1 and workspace.dataset_names() == []


def test_missing_demo_folder_is_said_and_starts_nothing(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "1")
    monkeypatch.setenv("OVERHEARD_ASSETS", str(tmp_path / "no-assets"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert any("is missing" in w.value for w in at.warning)
    assert jobs.jobs(workspace, kind="demo").empty
