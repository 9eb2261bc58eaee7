"""Several writers on one workspace: two dashboard sessions and a CLI at once, and CLI
ingests killed at random points then resumed."""

from __future__ import annotations

import hashlib
import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import soundfile as sf
import torch

from core.data.ingest import ingest_path, ingest_uploads
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.runtime.store import Workspace
from tests.conftest import tone

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _wav(freq: float, seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(freq, 0.2, seed=seed), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _folder(root: Path, n: int, *, base: int = 100, broken: bool = False) -> Path:
    for lab, off in (("members", 0), ("nonmembers", 3000)):
        (root / lab).mkdir(parents=True)
        for i in range(n):
            (root / lab / f"{i:04d}.wav").write_bytes(_wav(base + off + 5 * i, i))
    if broken:
        (root / "members" / "zz_broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    return root


def _integrity(ws: Workspace) -> int:
    """Database and audio store consistent; returns the number of orphaned staging files."""
    assert ws.query("PRAGMA integrity_check")["integrity_check"].iloc[0] == "ok"
    assert ws.query("PRAGMA foreign_key_check").empty
    dup = ws.query("SELECT dataset_id, path, COUNT(*) AS n FROM items GROUP BY dataset_id, path HAVING n > 1")
    assert dup.empty, dup
    dup = ws.query("SELECT hash, COUNT(*) AS n FROM clips GROUP BY hash HAVING n > 1")
    assert dup.empty, dup
    dangling = ws.query("SELECT i.clip_hash FROM items i LEFT JOIN clips c ON c.hash=i.clip_hash WHERE c.hash IS NULL")
    assert dangling.empty, dangling
    for h in ws.query("SELECT hash FROM clips")["hash"]:
        assert hashlib.sha256(ws.audio_path(h).read_bytes()).hexdigest() == h, "a torn audio write"
    # a SIGKILL inside atomic_write can leave its staging file: never under a clip's name
    names = [p.name for p in ws.audio_dir.rglob("*") if p.is_file()]
    stray = [n for n in names if n.startswith(".")]
    assert all(n.endswith(".tmp") for n in stray), stray
    return len(stray)


def test_two_sessions_and_a_cli_write_one_workspace(tmp_path):
    ws_dir = tmp_path / "ws"
    ws0 = Workspace(ws_dir)
    ingest_path(ws0, _folder(tmp_path / "shared", 12), "shared")
    cli_src = _folder(tmp_path / "cli", 30, base=150)
    uploads = {
        s: [(f"members/{i}.wav", _wav(150 + 5 * i, i)) for i in range(20)] + [(f"nonmembers/{i}.wav", _wav(3150 + 5 * i, i)) for i in range(20)]
        for s in ("A", "B")
    }  # the same bytes as the CLI's first 20 + 20 files: clips shared between three writers
    results: dict[str, list] = {"A": [], "B": []}
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def session(s: str) -> None:
        try:
            ws = Workspace(ws_dir)  # each page run builds its own handle
            start.wait()
            rep = ingest_uploads(ws, uploads[s], f"session{s}")
            results[s].append(("ingest", rep.clips, rep.members, rep.nonmembers))
            for k in range(2):
                run_id, res = audit_blind(ws, "shared", BlindRunConfig(groups=("metadata",), n_boot=50, seed=k))
                results[s].append(("blind", run_id, res["auc"]["metadata"]))
                run_id = ws.save_run("note", dataset=f"session{s}", target=None, config={"k": k}, result={"session": s, "k": k}, provenance={})
                results[s].append(("note", run_id, k))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(s,)) for s in ("A", "B")]
    for t in threads:
        t.start()
    start.wait()
    cli = subprocess.run([sys.executable, "-m", "core.cli", "--workspace", str(ws_dir), "--json", "ingest", str(cli_src), "--name", "cli"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["clips"] == 60

    ws = Workspace(ws_dir)
    _integrity(ws)
    ds = ws.datasets().set_index("name")
    assert ds.loc[["cli", "sessionA", "sessionB", "shared"], ["members", "nonmembers"]].to_dict("list") == {"members": [30, 20, 20, 12], "nonmembers": [30, 20, 20, 12]}
    assert set(ds["status"]) == {"ready"}
    # 24 shared + 60 CLI clips; the sessions' 40 are a subset of the CLI's: stored once
    assert ws.query("SELECT COUNT(*) AS n FROM clips")["n"].iloc[0] == 84
    assert len([p for p in ws.audio_dir.rglob("*") if p.is_file()]) == 84
    for s in ("A", "B"):
        assert results[s][0] == ("ingest", 40, 20, 20)
        blind_aucs = [r[2] for r in results[s] if r[0] == "blind"]
        for kind, run_id, value in results[s][1:]:
            run = ws.load_run(run_id)
            assert run["kind"] == kind
            if kind == "blind":
                assert run["result"]["auc"]["metadata"] == value and run["dataset"] == "shared"
            else:
                assert run["result"] == {"session": s, "k": value}
        # same seed on the same data in both sessions: the same number
        assert blind_aucs == [r[2] for r in results["A"] if r[0] == "blind"]
    assert len(ws.runs("blind", "shared")) == 4 and len(ws.runs("note")) == 4


def test_cli_ingest_killed_at_random_points_resumes(tmp_path):
    """Five seeded kill times across a CLI ingest; each time the database is intact and a
    second ingest completes the dataset without loss or duplication."""
    n = 100
    src = _folder(tmp_path / "src", n, broken=True)
    # kill times are fractions of a full run's wall time, so they land mid-run on any machine
    t0 = time.monotonic()
    full = subprocess.run([sys.executable, "-m", "core.cli", "--workspace", str(tmp_path / "ref"), "--json", "ingest", str(src), "--name", "d"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert full.returncode == 0, full.stderr
    whole = time.monotonic() - t0
    rng = random.Random(20240607)
    delays = [whole * (0.25 + 0.14 * k + rng.uniform(0, 0.14)) for k in range(5)]  # one per fifth of the run
    outcomes = []
    for k, delay in enumerate(delays):
        ws_dir = tmp_path / f"ws{k}"
        proc = subprocess.Popen([sys.executable, "-m", "core.cli", "--workspace", str(ws_dir), "--json", "ingest", str(src), "--name", "d"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        killed = proc.returncode == -signal.SIGKILL
        ws = Workspace(ws_dir)
        orphans = _integrity(ws)
        state = ws.query("SELECT status FROM datasets WHERE name='d'")["status"].tolist()
        done = int(ws.query("SELECT (SELECT COUNT(*) FROM items) + (SELECT COUNT(*) FROM rejected) AS n")["n"].iloc[0])
        outcomes.append((round(delay, 2), killed, state[0] if state else "absent", done, orphans))
        if state == ["ready"]:
            assert done == 2 * n + 1
        else:
            rerun = subprocess.run([sys.executable, "-m", "core.cli", "--workspace", str(ws_dir), "--json", "ingest", str(src), "--name", "d"], cwd=ROOT, capture_output=True, text=True, timeout=180)
            assert rerun.returncode == 0, rerun.stderr
            rep = json.loads(rerun.stdout)
            assert rep["resumed"] == (done if state else 0)
            assert (rep["clips"], rep["members"], rep["nonmembers"]) == (2 * n, n, n)
            assert [r["path"] for r in rep["rejected"]] == ["members/zz_broken.wav"]
        ws = Workspace(ws_dir)
        left = _integrity(ws)
        outcomes[-1] += (left,)
        ds = ws.datasets().set_index("name")
        assert ds.loc["d", "status"] == "ready" and (ds.loc["d", "members"], ds.loc["d", "nonmembers"], ds.loc["d", "rejected"]) == (n, n, 1)
    print(f"\nfull run {whole:.2f} s; kill points (delay s, killed, state, rows committed, orphan .tmp files after kill, after resume):", outcomes)
    assert sum(o[1] for o in outcomes) >= 3, outcomes  # most kills land mid-run
