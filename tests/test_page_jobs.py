"""A running job on the MIA page: its progress is shown, the page renders to the end (no
greyed results of another target under it), and the 'given' mode is checked at selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.ingest import ingest_path
import core.pipeline  # noqa: F401  (the application registers the job kinds)
from core.runtime import jobs
from core.runtime.store import Workspace
from test_pipeline_di import save_mia, write_corpus

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "2_MIA_Audit.py")


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, write_corpus(tmp_path / "iid"), "synth")
    assets = tmp_path / "assets"
    for name in ("lalm-small", "lalm-large"):
        card = assets / "zoo" / name / "card.json"
        card.parent.mkdir(parents=True)
        card.write_text(json.dumps({"name": f"zoo:{name}"}), encoding="utf-8")
    monkeypatch.setenv("OVERHEARD_ASSETS", str(assets))
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    return ws


def test_running_job_of_another_target_shows_only_its_own_state(env: Workspace) -> None:
    save_mia(env, "synth", shift=0.6)  # results exist for zoo:lalm-small
    jobs.submit(env, "mia", {"dataset": "synth", "target": "zoo:lalm-large", "config": {}}, start=False)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.selectbox(key="target").set_value("zoo:lalm-large").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("mia job queued" in (p.proto.text or "") for p in at.get("progress"))
    assert not any(m.label == "Aggregate AUC" for m in at.metric)  # lalm-small's results are not shown
    assert any("No MIA run at the white-box level for this dataset and target yet" in i.value for i in at.info)  # the page rendered to its end
    at.selectbox(key="target").set_value("zoo:lalm-small").run()
    assert any(m.label == "Aggregate AUC" for m in at.metric) and not at.get("progress")


def test_given_mode_is_checked_when_chosen(env: Workspace, tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "notext", n=25)
    for f in list(root.rglob("c00*.txt")):
        f.unlink()
    ingest_path(env, root, "notext")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.selectbox(key="dataset").set_value("notext").run()
    assert any("have no transcript" in c.value for c in at.caption)
    at.selectbox(key="mia-mode").set_value("given").run()
    assert any("Mode 'given' scores each clip's transcript" in e.value and "c000.wav" in e.value for e in at.error)
    assert not any(b.label == "Run MIA" for b in at.button)


def test_the_selection_lives_in_the_url(env: Workspace, tmp_path: Path) -> None:
    ingest_path(env, write_corpus(tmp_path / "other", n=25, seed=3), "other")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["dataset"] = "other"
    at.query_params["target"] = "zoo:lalm-large"
    at.run()  # what a reload or a shared link does: a fresh session with the URL's parameters
    assert at.selectbox(key="dataset").value == "other" and at.selectbox(key="target").value == "zoo:lalm-large"
    at.selectbox(key="dataset").set_value("synth").run()
    assert at.query_params["dataset"] == ["synth"] or at.query_params["dataset"] == "synth"


def test_a_stalled_job_is_shown_with_a_stop_button(env: Workspace, monkeypatch) -> None:
    """A job whose worker is alive but silent reads "stalled" with a Stop button, never a
    progress bar that runs forever; stopping leaves it interrupted and resumable."""
    import os
    import subprocess
    import sys
    import time

    job_id = jobs.submit(env, "mia", {"dataset": "synth", "target": "zoo:lalm-large", "config": {}}, start=False)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)  # a hung worker
    try:
        with env.connect() as con:
            con.execute("UPDATE jobs SET status='running', pid=?, heartbeat=?, progress=3, total=10 WHERE id=?", (sleeper.pid, time.time() - 120, job_id))
        monkeypatch.setenv("OVERHEARD_JOB_STALL_S", "60")
        at = AppTest.from_file(PAGE, default_timeout=60)
        at.run()
        at.selectbox(key="target").set_value("zoo:lalm-large").run()
        assert not at.exception, [e.message for e in at.exception]
        assert any("has not reported for 2 min" in w.value for w in at.warning) and not at.get("progress")
        at.button(key=f"stop-{job_id}").click().run()
        sleeper.wait(timeout=10)
        assert jobs.job(env, job_id)["status"] == "interrupted"
        assert any(b.label == "Resume" for b in at.button)
    finally:
        if sleeper.poll() is None:
            os.kill(sleeper.pid, 9)
