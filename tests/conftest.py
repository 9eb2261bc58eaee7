"""Shared fixtures: synthetic audio folders written in the test, fresh workspaces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("OMP_NUM_THREADS", "1")


def tone(freq: float, seconds: float = 0.5, sr: int = 16000, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


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
