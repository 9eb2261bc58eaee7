"""Workspace durability: killed ingests resume, concurrent writers don't corrupt it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def test_cache_is_listed_per_model_and_cleared_on_request(tmp_path, audio_folder, monkeypatch, capsys):
    """The cache never evicts: its size per fingerprint is shown (CLI and Home page) and
    clearing one fingerprint, one part or everything frees exactly that."""
    import json as _json
    from pathlib import Path as _Path

    from streamlit.testing.v1 import AppTest

    from core.cli import main
    from core.pipeline.common import cache_overview
    from core.runtime.cache import clear_cache
    from core.runtime.store import Workspace

    ws = Workspace(tmp_path / "ws")
    for part, name, n in (("evidence", "aaaa", 3), ("evidence", "bbbb", 2), ("features", "acoustic-x", 4)):
        for i in range(n):
            p = ws.cache_dir / part / name / f"{i:02d}" / f"{i}.ev"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * (100 + i))
    ws.save_run("mia", dataset="d", target="zoo:lalm-small", config={}, result={}, provenance={"model_fingerprint": "aaaa"})
    df = cache_overview(ws).set_index("name")
    assert df.loc["aaaa", "used_by"] == "zoo:lalm-small" and df.loc["aaaa", "files"] == 3 and df.loc["aaaa", "bytes"] == 303
    assert main(["cache", "--workspace", str(ws.root), "--json"]) == 0
    assert _json.loads(capsys.readouterr().out)["total_bytes"] == 303 + 201 + 406
    assert main(["cache", "--clear", "evidence/bbbb", "--workspace", str(ws.root), "--json"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert out["freed_bytes"] == 201 and {e["name"] for e in out["entries"]} == {"aaaa", "acoustic-x"}
    assert main(["cache", "--clear", "evidence/../x", "--workspace", str(ws.root)]) == 2
    with pytest.raises(ValueError):
        clear_cache(ws.cache_dir, "runs")

    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    at = AppTest.from_file(str(_Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception and at.expander[0].label == "Cache: 0.0 MB"  # 709 bytes
    at.selectbox(key="cache-clear-pick").set_value("everything")
    at.checkbox(key="cache-clear-sure").check().run()
    at.button(key="cache-clear").click().run()
    assert any("Freed" in s.value for s in at.success)
    assert cache_overview(ws).empty and ws.load_run(ws.runs("mia").iloc[0]["id"])["target"] == "zoo:lalm-small"


def _diffusion_evidence(clip_hash: str):
    import numpy as np

    from core.evidence import ClipEvidence, DiffusionEvidence

    return ClipEvidence(clip_hash, diffusion=DiffusionEvidence(np.array([10, 50]), np.ones((2, 3)), np.ones((2, 3))))


def _fill_cache(ws, ours: list[str], other: str) -> None:
    """Evidence of two models and one feature set for ``ours``, and of one model for ``other``."""
    import numpy as np

    from core.runtime.cache import EvidenceCache, FeatureCache

    ev = EvidenceCache(ws.cache_dir)
    for fp in ("fp-a", "fp-b"):
        for h in ours:
            ev.put(fp, f"{fp}{h}", _diffusion_evidence(h))
    ev.put("fp-a", "fp-a-other", _diffusion_evidence(other))
    feats = FeatureCache(ws.cache_dir, "acoustic-x")
    for h in [*ours, other]:
        feats.put(h, np.arange(4.0))


def test_cache_of_one_dataset_counts_and_clears_only_its_clips(workspace, audio_folder, capsys):
    import json as _json

    from core.cli import main
    from core.data.ingest import ingest_path
    from core.pipeline.common import cache_overview
    from core.runtime.cache import cache_entries, clear_cache

    ingest_path(workspace, audio_folder, "d")
    ours = sorted(set(workspace.items("d")["clip_hash"]))
    other = "f" * 64
    _fill_cache(workspace, ours, other)
    every = {(r["part"], r["name"]): r for r in cache_entries(workspace.cache_dir)}
    mine = {(r["part"], r["name"]): r for r in cache_entries(workspace.cache_dir, clips=set(ours))}
    assert {k: r["files"] for k, r in every.items()} == {("evidence", "fp-a"): len(ours) + 1, ("evidence", "fp-b"): len(ours),
                                                         ("features", "acoustic-x"): len(ours) + 1}
    assert {k: r["files"] for k, r in mine.items()} == {k: len(ours) for k in every}
    assert mine[("evidence", "fp-b")]["bytes"] == every[("evidence", "fp-b")]["bytes"]
    assert mine[("evidence", "fp-a")]["bytes"] < every[("evidence", "fp-a")]["bytes"]
    assert cache_overview(workspace, "d")["files"].sum() == 3 * len(ours)

    assert main(["cache", "--dataset", "d", "--clear", "evidence/fp-a", "--workspace", str(workspace.root), "--json"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert out["freed_bytes"] == mine[("evidence", "fp-a")]["bytes"]
    assert {e["name"] for e in out["entries"]} == {"fp-b", "acoustic-x"}  # fp-a now holds only the other clip
    left = {(r["part"], r["name"]): r["files"] for r in cache_entries(workspace.cache_dir)}
    assert left[("evidence", "fp-a")] == 1
    freed = clear_cache(workspace.cache_dir, clips=set(ours))
    assert freed == mine[("evidence", "fp-b")]["bytes"] + mine[("features", "acoustic-x")]["bytes"]
    assert {(r["part"], r["name"]): r["files"] for r in cache_entries(workspace.cache_dir)} == {
        ("evidence", "fp-a"): 1, ("features", "acoustic-x"): 1}
    assert main(["cache", "--dataset", "nope", "--workspace", str(workspace.root)]) == 2


def test_dataset_page_clears_the_cache_of_its_clips(workspace, audio_folder, monkeypatch):
    from pathlib import Path as _Path

    from streamlit.testing.v1 import AppTest

    from core.data.ingest import ingest_path
    from core.runtime.cache import cache_entries

    ingest_path(workspace, audio_folder, "d")
    ours = sorted(set(workspace.items("d")["clip_hash"]))
    _fill_cache(workspace, ours, "f" * 64)
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    at = AppTest.from_file(str(_Path(__file__).resolve().parents[1] / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    panel = [e for e in at.expander if e.label.startswith("Cached evidence and features of these clips")]
    assert len(panel) == 1
    assert at.button(key="cache-clear").disabled  # guarded: nothing is cleared before the box is ticked
    at.selectbox(key="cache-clear-pick").set_value("everything")
    at.checkbox(key="cache-clear-sure").check().run()
    at.button(key="cache-clear").click().run()
    assert not at.exception and any("Freed" in s.value for s in at.success)
    left = {(r["part"], r["name"]): r["files"] for r in cache_entries(workspace.cache_dir)}
    assert left == {("evidence", "fp-a"): 1, ("features", "acoustic-x"): 1}  # the other clip's stay
    at.run()
    assert any(e.label == "Cached evidence and features of these clips: 0.0 MB" for e in at.expander)
