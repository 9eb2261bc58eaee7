"""Background jobs: long work runs in a worker process that writes progress, logs and
results to the workspace database, so any page, tab or CLI can watch it, a reload loses
nothing, and a job killed mid-way resumes (its per-batch results are in the cache).

A job kind is a function ``fn(ws, params, ctx) -> run_id`` registered with
:func:`job_kind`. ``submit`` records the job and starts ``python -m core.runtime.worker``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from core.registry import Registry
from core.runtime.store import Workspace

HEARTBEAT_STALE_S = 60.0

JobFn = Callable[["Workspace", dict, "JobContext"], str]
_KINDS: Registry[JobFn] = Registry("job kind")
"""Job kinds, registered by the application (``core.pipeline``) with :func:`job_kind`; the
runtime imports nothing above itself. A worker process imports the module that registered
its job's kind (passed on its command line) before it runs the job."""


def job_kind(name: str) -> Callable[[JobFn], JobFn]:
    return _KINDS.decorator(name)


def get_kind(name: str) -> JobFn:
    return _KINDS.get(name)


def _kind_module(ws: Workspace, job_id: str) -> str:
    """The module that registered the job's kind in this process (the worker imports it)."""
    row = ws.query("SELECT kind FROM jobs WHERE id=?", (job_id,))
    if row.empty:
        raise KeyError(f"no job {job_id!r}")
    return get_kind(str(row["kind"].iloc[0])).__module__


@dataclass
class JobContext:
    """What a running job uses to report; all writes go to the database."""

    ws: Workspace
    job_id: str
    _last: float = 0.0

    def progress(self, done: int, total: int, message: str = "") -> None:
        now = time.time()
        if done < total and now - self._last < 0.25:
            return  # rate-limit database writes
        self._last = now
        with self.ws.connect() as con:
            con.execute(
                "UPDATE jobs SET progress=?, total=?, message=?, heartbeat=? WHERE id=?",
                (int(done), int(total), message, now, self.job_id),
            )

    def log(self, line: str) -> None:
        with self.ws.connect() as con:
            con.execute("INSERT INTO job_log VALUES (?,?,?)", (self.job_id, time.time(), line))
            con.execute("UPDATE jobs SET heartbeat=? WHERE id=?", (time.time(), self.job_id))

    def cancelled(self) -> bool:
        df = self.ws.query("SELECT cancel FROM jobs WHERE id=?", (self.job_id,))
        return bool(not df.empty and df["cancel"].iloc[0])


def submit(ws: Workspace, kind: str, params: dict, *, start: bool = True) -> str:
    """Record a job and start its worker process (detached). Returns the job id."""
    get_kind(kind)
    job_id = f"{kind}-{uuid.uuid4().hex[:10]}"
    with ws.connect() as con:
        con.execute(
            "INSERT INTO jobs(id, kind, params, status, created) VALUES (?,?,?,?,?)",
            (job_id, kind, json.dumps(params), "queued", time.time()),
        )
    if start:
        spawn(ws, job_id)
    return job_id


def spawn(ws: Workspace, job_id: str) -> subprocess.Popen:
    # the child gets its own copy of the descriptor; the parent's is closed right away
    with open(ws.root / "tmp" / f"{job_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.runtime.worker", str(ws.root), job_id, _kind_module(ws, job_id)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    # reaped as soon as it ends: a long-lived dashboard never collects zombie workers
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
    return proc


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, OverflowError, ValueError):
        return False
    try:  # a zombie (killed child not yet reaped) counts as dead
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


STALL_AFTER_S = 900.0
"""A running job whose worker has not reported for this long is shown as ``stalled``
(``$OVERHEARD_JOB_STALL_S`` changes it). Workers report after every batch, and no batch
of a built-in stage takes minutes, so silence that long means a hung worker."""


def stall_after_s() -> float:
    return float(os.environ.get("OVERHEARD_JOB_STALL_S", STALL_AFTER_S))


def _mark_interrupted(df: pd.DataFrame) -> pd.DataFrame:
    """A job recorded as running whose worker process is gone was interrupted; one whose
    worker is alive but silent for :func:`stall_after_s` is stalled."""
    if not df.empty:
        running = df["status"] == "running"
        dead = running & ~df["pid"].apply(_alive)
        df.loc[dead, "status"] = "interrupted"
        beat = pd.to_numeric(df["heartbeat"], errors="coerce").fillna(0.0)
        df["silent_s"] = np.where(running & ~dead, time.time() - beat, 0.0)
        df.loc[running & ~dead & (df["silent_s"] > stall_after_s()), "status"] = "stalled"
    return df


def jobs(ws: Workspace, *, kind: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Recent jobs, with ``status`` 'interrupted' for running jobs whose worker died."""
    sql = "SELECT * FROM jobs" + (" WHERE kind=?" if kind else "") + " ORDER BY created DESC LIMIT ?"
    return _mark_interrupted(ws.query(sql, ((kind,) if kind else ()) + (limit,)))


def job(ws: Workspace, job_id: str) -> dict:
    """One job by id (pages poll this every second: one indexed row, not the table)."""
    row = _mark_interrupted(ws.query("SELECT * FROM jobs WHERE id=?", (job_id,)))
    if row.empty:
        raise KeyError(f"no job {job_id!r}")
    d = row.iloc[0].to_dict()
    d["params"] = json.loads(d["params"] or "{}")
    return d


def job_log(ws: Workspace, job_id: str, tail: int = 50) -> list[str]:
    df = ws.query("SELECT line FROM job_log WHERE job_id=? ORDER BY ts DESC LIMIT ?", (job_id, tail))
    return df["line"].tolist()[::-1]


def cancel(ws: Workspace, job_id: str) -> None:
    with ws.connect() as con:
        con.execute("UPDATE jobs SET cancel=1 WHERE id=?", (job_id,))


def stop(ws: Workspace, job_id: str) -> None:
    """End a job's worker now (a stalled worker never reads the cancel flag): its process
    group is killed and the job is left interrupted, resumable from its cached batches."""
    row = job(ws, job_id)
    if row["status"] not in ("running", "stalled", "queued"):
        return
    pid = row.get("pid")
    if pid and _alive(pid):
        try:
            os.killpg(int(pid), signal.SIGKILL)  # workers start their own session
        except (ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    with ws.connect() as con:
        con.execute("UPDATE jobs SET status='interrupted', error='stopped by the user' WHERE id=? AND status IN ('running','queued')", (job_id,))


def resume(ws: Workspace, job_id: str) -> None:
    """Restart an interrupted or failed job; cached batches are not recomputed."""
    with ws.connect() as con:
        con.execute("UPDATE jobs SET status='queued', error=NULL, cancel=0 WHERE id=?", (job_id,))
    spawn(ws, job_id)


def run_job(ws: Workspace, job_id: str) -> str | None:
    """Execute a job in this process (the worker's body; tests call it directly)."""
    with ws.connect() as con:
        row = con.execute("SELECT kind, params, status FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id!r}")
        con.execute(
            "UPDATE jobs SET status='running', pid=?, started=?, heartbeat=? WHERE id=?",
            (os.getpid(), time.time(), time.time(), job_id),
        )
    kind, params = row[0], json.loads(row[1] or "{}")
    ctx = JobContext(ws, job_id)
    try:
        run_id = get_kind(kind)(ws, params, ctx)
    except InterruptedError:
        with ws.connect() as con:
            con.execute("UPDATE jobs SET status='cancelled', finished=? WHERE id=?", (time.time(), job_id))
        return None
    except Exception as exc:
        ctx.log(traceback.format_exc())
        with ws.connect() as con:
            con.execute(
                "UPDATE jobs SET status='failed', error=?, finished=? WHERE id=?",
                (f"{type(exc).__name__}: {exc}", time.time(), job_id),
            )
        return None
    with ws.connect() as con:
        con.execute(
            "UPDATE jobs SET status='done', run_id=?, finished=?, progress=total WHERE id=?",
            (run_id, time.time(), job_id),
        )
    return run_id
