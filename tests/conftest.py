"""Shared fixtures: synthetic audio folders written in the test, fresh workspaces."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("OMP_NUM_THREADS", "1")

SESSION_MARK = "OVERHEARD_TEST_SESSION"
os.environ[SESSION_MARK] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
"""Every process a test starts inherits this mark, so the session can find what it left."""
LEFTOVER_GRACE_S = 20.0


def marked_processes() -> list[tuple[int, str]]:
    """(pid, command line) of live processes carrying this session's mark, other than this
    one (zombies, already dead, are not counted)."""
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                continue
            out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()))
        except OSError:
            continue
    return out


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Fail the session when a test leaves a process running (a server not stopped, a job
    worker not cancelled): after a grace period they are killed and named."""
    yield
    if not Path("/proc/self/environ").exists():
        return
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = marked_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked_processes()
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes left running after the tests: {left}"


def tone(freq: float, seconds: float = 0.5, sr: int = 16000, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


SHADOW_TEXTS = ["a red cat", "the sun is up", "we run home", "dogs bark", "it is cold", "my old hat", "a big ship", "the sea",
                "one blue bird", "she sings", "rain falls", "a small box"]
"""Transcripts of :func:`transcribed_tones`: the first 4 clips are members, the other 8 non-members."""


def transcribed_tones(root: Path, dataset: str = "tiny"):
    """A workspace under ``root/ws`` holding ``dataset``: 12 short tones with transcripts
    (:data:`SHADOW_TEXTS`), 4 members and 8 known non-members, enough to build a shadow."""
    from core.data.ingest import ingest_path
    from core.runtime.store import Workspace

    corpus = root / "corpus"
    for i, text in enumerate(SHADOW_TEXTS):
        label = "members" if i < 4 else "nonmembers"
        (corpus / label).mkdir(parents=True, exist_ok=True)
        sf.write(corpus / label / f"c{i:02d}.wav", tone(200 + 37 * i, 0.6, seed=i), 16000, subtype="PCM_16")
        (corpus / label / f"c{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    ws = Workspace(root / "ws")
    ingest_path(ws, corpus, dataset)
    return ws


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """members/ + nonmembers/ with 4 + 4 short clips and sidecar transcripts."""
    root = tmp_path / "corpus"
    for label, base in (("members", 300), ("nonmembers", 500)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            sf.write(root / label / f"{label[0]}{i}.wav", tone(base + 40 * i, seed=i), 16000, subtype="PCM_16")
            (root / label / f"{label[0]}{i}.txt").write_text(f"clip {label} number {i}\n", encoding="utf-8")
    return root


@pytest.fixture
def workspace(tmp_path: Path):
    from core.runtime.store import Workspace

    return Workspace(tmp_path / "ws")


def demo_subset(dst: Path, n: int, dataset: str = "demo-speech") -> Path:
    """The first ``n`` clips per label of a demo dataset, copied with their metadata rows
    (speakers and transcripts included) into ``dst``: the demo's kind of data at the size
    a test's time budget allows."""
    taken = {"member": 0, "nonmember": 0}

    def first_n(row: dict) -> bool:
        taken[row["label"]] = taken.get(row["label"], 0) + 1
        return taken[row["label"]] <= n

    copy_demo_rows(dst, dataset, first_n)
    assert min(taken.values()) >= n, f"{dataset} has fewer than {n} clips per label"
    return dst


def copy_demo_rows(dst: Path, dataset: str, keep) -> Path:
    """The clips of a bundled demo dataset whose metadata row satisfies ``keep(row)``
    (rows in file order), copied with those rows into ``dst``, ready to ingest."""
    import csv
    import shutil

    from core.targets.zoo.registry import assets_dir

    src = assets_dir() / "demo" / dataset
    with open(src / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if keep(r)]
    for r in kept:
        (dst / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / r["path"], dst / r["path"])
    with open(dst / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    return dst


def demo_workspace(tmp: Path, n: int, dataset: str = "demo-speech", name: str = "speech"):
    """A fresh workspace under ``tmp`` holding :func:`demo_subset` of ``dataset`` (``n`` clips
    per label), ingested as ``name``."""
    from core.data.ingest import ingest_path
    from core.runtime.store import Workspace

    ws = Workspace(tmp / "ws")
    (tmp / "sub").mkdir()
    ingest_path(ws, demo_subset(tmp / "sub", n, dataset), name)
    return ws


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for a module's tests (the machine's cores are shared), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
