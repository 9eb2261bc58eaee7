"""Background jobs: run in a worker process, survive a SIGKILL, resume without recomputing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import soundfile as sf

from core.data.ingest import ingest_path
import core.pipeline  # noqa: F401  (the application registers the job kinds)
from core.runtime import jobs
from core.runtime.store import Workspace
from tests.conftest import tone


def _dataset(ws: Workspace, root: Path, n: int) -> str:
    for lab, base in (("members", 200), ("nonmembers", 260)):
        (root / lab).mkdir(parents=True)
        for i in range(n):
            sf.write(root / lab / f"{i:03d}.wav", tone(base + 7 * i, seconds=0.4, seed=i), 16000)
    ingest_path(ws, root, "jobs")
    return "jobs"


def _wait(ws: Workspace, job_id: str, until, timeout: float = 240.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = jobs.job(ws, job_id)
        if until(row):
            return row
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stuck: {jobs.job(ws, job_id)}")


def _feature_files(ws: Workspace) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in (ws.cache_dir / "features").rglob("*.npy")}


@pytest.mark.slow
def test_job_killed_mid_way_resumes_from_last_batch(workspace, tmp_path):
    ds = _dataset(workspace, tmp_path / "c", 150)
    params = {"dataset": ds, "config": {"groups": ["metadata", "acoustic"], "batch_size": 2, "n_boot": 200}}
    job_id = jobs.submit(workspace, "blind", params)
    row = _wait(workspace, job_id, lambda r: r["status"] == "running" and r["progress"] >= 4)
    os.kill(int(row["pid"]), signal.SIGKILL)
    row = _wait(workspace, job_id, lambda r: r["status"] == "interrupted", timeout=30)
    before = _feature_files(workspace)
    assert 4 <= len(before) < 300
    jobs.resume(workspace, job_id)
    row = _wait(workspace, job_id, lambda r: r["status"] in ("done", "failed"))
    assert row["status"] == "done", row["error"]
    after = _feature_files(workspace)
    assert len(after) == 300
    assert all(after[p] == m for p, m in before.items()), "a completed clip was recomputed"
    run = workspace.load_run(row["run_id"])
    assert run["result"]["n_members"] == 150 and set(run["result"]["auc"]) >= {"metadata", "acoustic", "all"}


def test_job_runs_in_process_and_reports(workspace, tmp_path):
    ds = _dataset(workspace, tmp_path / "c", 12)
    job_id = jobs.submit(workspace, "blind", {"dataset": ds, "config": {"groups": ["metadata"], "n_boot": 100}}, start=False)
    assert jobs.job(workspace, job_id)["status"] == "queued"
    run_id = jobs.run_job(workspace, job_id)
    row = jobs.job(workspace, job_id)
    assert row["status"] == "done" and row["run_id"] == run_id
    assert workspace.latest_run("blind", ds)["id"] == run_id


def test_failed_job_records_error(workspace):
    job_id = jobs.submit(workspace, "blind", {"dataset": "nope"}, start=False)
    jobs.run_job(workspace, job_id)
    row = jobs.job(workspace, job_id)
    assert row["status"] == "failed" and "nope" in row["error"]
    assert any("Traceback" in line for line in jobs.job_log(workspace, job_id))


def test_cancel_between_batches(workspace, tmp_path):
    ds = _dataset(workspace, tmp_path / "c", 12)
    job_id = jobs.submit(workspace, "blind", {"dataset": ds, "config": {"groups": ["acoustic"], "batch_size": 2}}, start=False)
    jobs.cancel(workspace, job_id)
    jobs.run_job(workspace, job_id)
    assert jobs.job(workspace, job_id)["status"] == "cancelled"
    assert workspace.latest_run("blind", ds) is None


def test_unknown_kind_lists_valid():
    with pytest.raises(ValueError, match="valid: .*blind.*mia"):
        jobs.get_kind("nope")


@pytest.mark.slow
def test_a_hung_worker_shows_stalled_and_can_be_stopped_and_resumed(workspace, tmp_path, monkeypatch):
    """A worker that stops reporting (alive, silent) is shown as stalled after
    ``OVERHEARD_JOB_STALL_S``, not "running" forever; stopping it leaves it resumable.
    The hung worker is a sleeping process: a real worker frozen with SIGSTOP can be caught
    inside a database write and block every reader for the busy timeout."""
    import subprocess
    import sys

    ds = _dataset(workspace, tmp_path / "c", 60)
    job_id = jobs.submit(workspace, "blind", {"dataset": ds, "config": {"groups": ["metadata", "acoustic"], "batch_size": 2, "n_boot": 50, "n_perm": 20}}, start=False)
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    with workspace.connect() as con:
        con.execute("UPDATE jobs SET status='running', pid=?, heartbeat=?, progress=2 WHERE id=?", (hung.pid, time.time(), job_id))
    monkeypatch.setenv("OVERHEARD_JOB_STALL_S", "1.5")
    assert jobs.job(workspace, job_id)["status"] in ("running", "stalled")
    row = _wait(workspace, job_id, lambda r: r["status"] == "stalled", timeout=20)
    assert row["silent_s"] > 1.5
    assert jobs.jobs(workspace).set_index("id").loc[job_id, "status"] == "stalled"
    jobs.stop(workspace, job_id)
    row = _wait(workspace, job_id, lambda r: r["status"] == "interrupted", timeout=20)
    monkeypatch.delenv("OVERHEARD_JOB_STALL_S")
    jobs.resume(workspace, job_id)
    row = _wait(workspace, job_id, lambda r: r["status"] in ("done", "failed"))
    assert row["status"] == "done", row["error"]


@pytest.mark.parametrize("kind", ["mia", "blind", "di", "disentangle", "crossdata"])
def test_stage_configs_refuse_unknown_settings(kind):
    """A misspelled or retired setting in a job's configuration is an error naming the
    valid ones, never silently dropped; every config round-trips through its dict."""
    from core.pipeline import BlindRunConfig, CrossDataConfig, DIRunConfig, DisentangleConfig, MIAConfig

    cls = {"mia": MIAConfig, "blind": BlindRunConfig, "di": DIRunConfig, "disentangle": DisentangleConfig, "crossdata": CrossDataConfig}[kind]
    cfg = cls()
    assert cls.from_dict(cfg.to_dict()) == cfg
    valid = sorted(cfg.to_dict())
    with pytest.raises(ValueError, match=r"unknown .* setting\(s\): seeed; valid: ") as err:
        cls.from_dict(cfg.to_dict() | {"seeed": 5})
    assert all(k in str(err.value) for k in valid)
