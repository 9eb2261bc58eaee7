"""Workspace durability: killed ingests resume, concurrent writers don't corrupt it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from core.runtime.store import Workspace, atomic_write
from tests.conftest import tone

ROOT = Path(__file__).resolve().parents[1]


def _folder(root: Path, n: int) -> Path:
    for lab in ("members", "nonmembers"):
        (root / lab).mkdir(parents=True)
        for i in range(n):
            sf.write(root / lab / f"{i:04d}.wav", tone(100 + i + (0 if lab == "members" else 3000), seconds=0.25, seed=i), 16000)
    return root


def _cli(*args: str, ws: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.cli", "--workspace", str(ws), "--json", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write(p, b"a" * 100)
    atomic_write(p, b"b" * 10)
    assert p.read_bytes() == b"b" * 10
    assert [x.name for x in tmp_path.iterdir()] == ["f.bin"]


def test_killed_ingest_resumes_without_loss(tmp_path):
    src = _folder(tmp_path / "src", 150)
    ws_dir = tmp_path / "ws"
    proc = _cli("ingest", str(src), "--name", "big", ws=ws_dir)
    ws = None
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once some batches are committed
        time.sleep(0.05)
        if (ws_dir / "overheard.db").exists():
            ws = Workspace(ws_dir)
            n = ws.query("SELECT COUNT(*) AS n FROM items")["n"].iloc[0]
            if n >= 64:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ws = Workspace(ws_dir)
    assert ws.query("PRAGMA integrity_check")["integrity_check"].iloc[0] == "ok"
    partial = ws.query("SELECT COUNT(*) AS n FROM items")["n"].iloc[0]
    status = ws.datasets().set_index("name").loc["big", "status"]
    assert status == "ingesting" and 0 < partial < 300
    # every stored item's audio exists (no dangling reference)
    for h in ws.query("SELECT clip_hash FROM items")["clip_hash"]:
        assert ws.audio_path(h).exists()
    out = subprocess.run([sys.executable, "-m", "core.cli", "--workspace", str(ws_dir), "--json", "ingest", str(src), "--name", "big"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["clips"] == 300 and rep["resumed"] == partial and rep["members"] == 150


def test_concurrent_ingests_do_not_corrupt(tmp_path):
    a = _folder(tmp_path / "a", 40)
    b = _folder(tmp_path / "b", 40)  # same content as a: shared clips, stored once
    ws_dir = tmp_path / "ws"
    Workspace(ws_dir)
    procs = [_cli("ingest", str(a), "--name", "a", ws=ws_dir), _cli("ingest", str(b), "--name", "b", ws=ws_dir), _cli("ingest", str(a), "--name", "c", ws=ws_dir)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    ws = Workspace(ws_dir)
    assert ws.query("PRAGMA integrity_check")["integrity_check"].iloc[0] == "ok"
    ds = ws.datasets().set_index("name")
    assert list(ds["members"]) == [40, 40, 40] and list(ds["nonmembers"]) == [40, 40, 40]
    assert ws.query("SELECT COUNT(*) AS n FROM clips")["n"].iloc[0] == 80
    files = [p for p in ws.audio_dir.rglob("*") if p.is_file()]
    assert len(files) == 80
