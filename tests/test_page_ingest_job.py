"""Ingest as a background job: the Dataset page submits it and stays live, shows its
progress, then the report with the rejected files; uploads are staged by position (their
names never become paths); a cancelled ingest resumes where it stopped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.pipeline  # noqa: F401  (the application registers the job kinds)
from core.pipeline import ingest_params, ingest_report, stage_uploads
from core.runtime import jobs
from core.runtime.store import Workspace

ROOT = Path(__file__).resolve().parents[1]


def wait_job(ws: Workspace, kind: str, timeout: float = 120.0) -> dict:
    """The newest ``kind`` job once it has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        df = jobs.jobs(ws, kind=kind, limit=1)
        if not df.empty and df.iloc[0]["status"] not in ("queued", "running"):
            return jobs.job(ws, df.iloc[0]["id"])
        time.sleep(0.1)
    raise AssertionError(f"no {kind} job ended within {timeout} s: {jobs.jobs(ws, kind=kind, limit=1).to_dict('records')}")


@pytest.fixture
def env(workspace, tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    monkeypatch.setenv("OVERHEARD_ROOTS", str(tmp_path))
    return workspace


def test_dataset_page_ingests_in_a_job_then_shows_the_report(env, audio_folder):
    (audio_folder / "members" / "empty.wav").write_bytes(b"")
    at = AppTest.from_file(str(ROOT / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    at.text_input(key="upload_name").set_value("d").run()
    at.text_input(key="server_path").set_value(str(audio_folder)).run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    submitted = jobs.jobs(env, kind="ingest")
    assert len(submitted) == 1 and submitted.iloc[0]["status"] in ("queued", "running", "done")
    if jobs.job(env, submitted.iloc[0]["id"])["status"] != "done":  # the page returned while the worker reads
        assert at.get("progress") and at.button(key=f"cancel-{submitted.iloc[0]['id']}")
        assert not any("Ingested" in s.value for s in at.success)
    row = wait_job(env, "ingest")
    assert row["status"] == "done", row
    assert row["run_id"] == "d" and row["total"] == row["progress"] == 9  # every audio file read, the empty one rejected
    at.run()
    assert not at.exception
    assert any(s.value.startswith("Ingested **d**") and "8 unique clips" in s.value for s in at.success), [s.value for s in at.success]
    assert any("1 file(s) rejected" in w.value for w in at.warning)
    assert list(at.dataframe[0].value["path"]) == ["members/empty.wav"]
    assert at.selectbox(key="dataset").value == "d"  # the new dataset is the one shown below


def test_a_taken_name_or_a_folder_outside_the_roots_starts_no_job(env, audio_folder, tmp_path, monkeypatch):
    from core.data.ingest import ingest_path

    ingest_path(env, audio_folder, "taken")
    monkeypatch.setenv("OVERHEARD_ROOTS", str(audio_folder / "members"))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    at.text_input(key="upload_name").set_value("taken").run()
    at.text_input(key="server_path").set_value(str(audio_folder / "members")).run()
    at.button[0].click().run()
    assert any("already exists" in e.value for e in at.error)
    at.text_input(key="upload_name").set_value("new").run()
    at.text_input(key="server_path").set_value(str(audio_folder)).run()
    at.button[0].click().run()
    assert any("outside the allowed folders" in e.value for e in at.error)
    assert jobs.jobs(env, kind="ingest").empty


def test_staged_uploads_keep_hostile_names_as_names(env, audio_folder, tmp_path):
    uploads = [(p.relative_to(audio_folder).as_posix(), p.read_bytes()) for p in sorted(audio_folder.rglob("*")) if p.is_file()]
    uploads.append(("../../evil.wav", uploads[0][1]))
    token = stage_uploads(env, uploads)
    staged = sorted(p.name for p in (env.root / "uploads" / token).iterdir())
    assert staged == sorted([f"{i}.bin" for i in range(len(uploads))] + ["names.json"])
    job_id = jobs.submit(env, "ingest", ingest_params("up", upload=token), start=False)
    assert jobs.run_job(env, job_id) == "up"
    rep = ingest_report(env, "up")
    assert (rep.members, rep.nonmembers) == (4, 4)
    assert [r["path"] for r in rep.rejected] == ["../../evil.wav"] and "unsafe file name" in rep.rejected[0]["reason"]
    assert not (env.root / "uploads" / token).exists()  # staging is removed once the dataset is in
    assert not list(tmp_path.parent.rglob("evil.wav"))


def test_a_cancelled_ingest_resumes_where_it_stopped(env, audio_folder, monkeypatch):
    import core.data.ingest
    import core.pipeline.ingest as ingest_job

    monkeypatch.setattr(ingest_job, "CANCEL_CHECK_EVERY", 3)
    monkeypatch.setattr(core.data.ingest, "BATCH", 2)  # stored two files at a time, as a 20k-file folder is in 64s
    job_id = jobs.submit(env, "ingest", ingest_params("d", path=str(audio_folder)), start=False)
    real = jobs.JobContext.progress
    calls = []

    def progress(self, done, total, message=""):
        calls.append(done)
        if done == 4 and calls.count(4) == 1:  # the user cancels once, part-way
            jobs.cancel(env, self.job_id)
        real(self, done, total, message)

    monkeypatch.setattr(jobs.JobContext, "progress", progress)
    assert jobs.run_job(env, job_id) is None
    assert jobs.job(env, job_id)["status"] == "cancelled"
    half = env.datasets().set_index("name").loc["d"]
    assert half["status"] == "ingesting" and 0 < half["files"] < 8
    with env.connect() as con:
        con.execute("UPDATE jobs SET cancel=0 WHERE id=?", (job_id,))
    assert jobs.run_job(env, job_id) == "d"
    assert ingest_report(env, "d").resumed == half["files"]
    assert len(env.analysis_clips("d")) == 8
