"""The ``egemaps`` blind group (openSMILE eGeMAPSv02 functionals, the ``dev`` extra
``opensmile``) computed through the blind pipeline: 88 features per clip, cached per clip,
and a shift that eGeMAPS can hear (louder, higher-pitched non-members) detected."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audio_group_cached, audit_blind
from core.runtime.settings import Settings

opensmile = pytest.importorskip("opensmile", reason="dev extra opensmile not installed")

SR = 16000


def vowel(rng: np.random.Generator, f0: float, level: float) -> np.ndarray:
    """0.8 s of a harmonic tone with vibrato and a faint noise floor."""
    t = np.arange(int(0.8 * SR)) / SR
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    x = level * x / np.abs(x).max()
    return (x + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)


def test_egemaps_runs_through_the_blind_pipeline(tmp_path, workspace):
    rng = np.random.default_rng(0)
    for label, f0, level in (("members", 120.0, 0.1), ("nonmembers", 240.0, 0.5)):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(12):
            sf.write(tmp_path / "d" / label / f"{label}{i}.wav", vowel(rng, f0 * rng.uniform(0.9, 1.1), level), SR)
    ingest_path(workspace, tmp_path / "d", "d")
    _, out = audit_blind(workspace, "d", BlindRunConfig(groups=("egemaps",), n_boot=20, n_perm=0, batch_size=8))
    assert "egemaps" in out["auc"] and out["auc"]["egemaps"] > 0.9
    settings = Settings.from_env(workspace.root)
    clips = workspace.analysis_clips("d")
    table = audio_group_cached(workspace, clips, "egemaps", settings=settings)
    assert table.shape == (24, 88) and np.isfinite(table.to_numpy()).all()
    assert "F0semitoneFrom27.5Hz_sma3nz_amean" in table.columns
    f0 = table["F0semitoneFrom27.5Hz_sma3nz_amean"].to_numpy()
    y = clips["y"].to_numpy()
    # one octave apart is 12 semitones
    assert 10 < f0[y == 0].mean() - f0[y == 1].mean() < 14
