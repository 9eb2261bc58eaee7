"""Blind-baseline operations on ingested synthetic datasets: the cross-dataset matrix
(shared clips, job kind, provenance) and matching on a partially shifted split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from core.data.ingest import ingest_path
from core.pipeline.blind import BlindRunConfig, audit_blind, match_dataset
from core.pipeline.crossdata import CrossDataConfig, _split_shared, cross_dataset_matrix, latest_crossdata
from core.runtime import jobs

SR = 16000
GROUPS = ("metadata", "acoustic")


def voice(rng: np.random.Generator) -> np.ndarray:
    """A 0.4-0.6 s harmonic tone with vibrato and a faint noise floor (random pitch)."""
    n = int(rng.uniform(0.4, 0.6) * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(120, 300) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 30) if k * f0.max() < SR / 2)
    x = x / np.abs(x).max() * rng.uniform(0.2, 0.4)
    return (x + 10 ** (-60 / 20) * rng.standard_normal(n)).astype(np.float32)


def recording_chain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "other" chain: band-limited to 2 kHz and a noise floor 30 dB down."""
    sos = signal.butter(8, 2000, fs=SR, output="sos")
    y = signal.sosfilt(sos, x)
    return (y + 10 ** (-30 / 20) * 0.3 * rng.standard_normal(y.size)).astype(np.float32)


def write_split(root: Path, *, n: int = 20, shifted: int = 0, seed: int = 0, members_from: Path | None = None) -> Path:
    """members/ + nonmembers/ WAV folders; the first ``shifted`` non-members go through
    :func:`recording_chain`. ``members_from`` copies another folder's member files."""
    rng = np.random.default_rng(seed)
    for label in ("members", "nonmembers"):
        (root / label).mkdir(parents=True)
    for i in range(n):
        if members_from is not None:
            (root / "members" / f"m{i}.wav").write_bytes((members_from / "members" / f"m{i}.wav").read_bytes())
        else:
            sf.write(root / "members" / f"m{i}.wav", voice(rng), SR, subtype="PCM_16")
        x = voice(rng)
        sf.write(root / "nonmembers" / f"u{i}.wav", recording_chain(x, rng) if i < shifted else x, SR, subtype="PCM_16")
    return root


@pytest.fixture
def two_datasets(tmp_path, workspace):
    """"clean" (i.i.d. split) and "shifted" (same member files, every non-member through
    the other chain)."""
    clean = write_split(tmp_path / "clean", seed=1)
    write_split(tmp_path / "shifted", shifted=20, seed=2, members_from=clean)
    ingest_path(workspace, clean, "clean")
    ingest_path(workspace, tmp_path / "shifted", "shifted")
    return workspace


def test_split_shared_keeps_each_shared_clip_on_exactly_one_side():
    a = ["h1", "h2", "h3", "x"]
    b = ["h3", "h2", "y", "h1", "z"]
    ka, kb, n = _split_shared(a, b, seed=3)
    assert n == 3
    kept = [a[i] for i in ka] + [b[i] for i in kb]
    assert sorted(kept) == sorted({*a, *b})  # every clip once, shared ones included
    assert "x" in [a[i] for i in ka] and {"y", "z"} <= {b[i] for i in kb}


def test_cross_dataset_matrix_member_and_nonmember(two_datasets):
    ws = two_datasets
    seen = []
    run_id, res = cross_dataset_matrix(ws, ["clean", "shifted"], status="member", groups=GROUPS, progress=lambda d, t, m: seen.append((d, t)))
    # identical member files: shared, each kept once, and indistinguishable
    assert res["shared"][0][1] == res["shared"][1][0] == 20
    assert res["cells"][0]["n_a"] + res["cells"][0]["n_b"] == 20
    assert abs(res["auc"][0][1] - 0.5) < 0.25
    assert any("share 20 member clips" in n for n in res["notes"])
    # diagonal: each dataset's own P vs U (the shifted one is separable)
    assert res["auc"][1][1] > 0.9 and 0 <= res["auc"][0][0] <= 1
    assert seen[-1][0] == seen[-1][1]

    _, non = cross_dataset_matrix(ws, ["clean", "shifted"], status="nonmember", groups=GROUPS)
    assert non["shared"][0][1] == 0
    assert non["auc"][0][1] > 0.9  # clean vs band-limited non-members: a domain shift
    # every cell has a permutation p-value and an interval beside its AUC
    assert non["p_value"][0][1] == non["p_value"][1][0] < 0.01 and non["cells"][0]["p_value"] == non["p_value"][0][1]
    assert res["p_value"][1][1] < 0.01  # the shifted dataset's own members vs non-members
    assert res["p_value"][0][1] > 0.05  # shared, identical members: not told apart
    lo, hi = non["ci"][0][1]
    assert lo <= non["auc"][0][1] <= hi

    run = ws.load_run(run_id)
    assert run["kind"] == "crossdata" and run["config"]["status"] == "member"
    prov = run["provenance"]
    assert set(prov["datasets"]) == {"clean", "shifted"} and prov["versions"]["scikit-learn"]
    assert len(prov["clip_hashes"]) == 60  # 20 shared members + 2 x 20 non-members
    assert latest_crossdata(ws, "member")["id"] == run_id


def test_crossdata_needs_two_datasets_and_valid_status(two_datasets):
    with pytest.raises(ValueError, match="at least 2"):
        cross_dataset_matrix(two_datasets, ["clean"], groups=GROUPS)
    with pytest.raises(ValueError, match="status"):
        CrossDataConfig(status="both")


def test_crossdata_job_runs_in_process(two_datasets):
    ws = two_datasets
    cfg = CrossDataConfig(status="nonmember", groups=("metadata",))
    job_id = jobs.submit(ws, "crossdata", {"datasets": None, "config": cfg.to_dict()}, start=False)
    run_id = jobs.run_job(ws, job_id)
    row = jobs.job(ws, job_id)
    assert row["status"] == "done" and row["run_id"] == run_id
    res = ws.load_run(run_id)["result"]
    assert res["datasets"] == ["clean", "shifted"] and res["groups"] == ["metadata"]


def test_matching_lowers_blind_auc_on_a_partially_shifted_split(tmp_path, workspace):
    ingest_path(workspace, write_split(tmp_path / "partial", n=24, shifted=12, seed=5), "partial")
    cfg = BlindRunConfig(groups=GROUPS, n_boot=200)
    _, blind = audit_blind(workspace, "partial", cfg)
    assert blind["auc_ci"]["acoustic"][0] > 0.5
    _, res = match_dataset(workspace, "partial", "partial-matched", caliper=0.2, config=cfg)
    m = res["matching"]
    assert 2 <= m["n_pairs"] < 24
    assert res["after"]["auc"]["all"] < res["before"]["auc"]["all"] - 0.1
    clips = workspace.analysis_clips("partial-matched")
    assert len(clips) == res["n_clips"] == 2 * m["n_pairs"]
    assert clips["y"].sum() == m["n_pairs"]


def test_any_registered_audio_group_runs_through_the_pipeline_and_is_cached(tmp_path, audio_folder):
    """A feature group that reads audio (not only the built-in acoustic one: egemaps, a
    plugin) gets the clips' audio from the blind pipeline, in batches, cached per clip."""
    import pandas as pd

    from core.blind.registry import register_group, unregister_group
    from core.data.audio import load_analysis
    from core.runtime.store import Workspace

    calls = []

    @register_group("peak_test", description="peak and RMS (test plugin)", needs=("audio",))
    def _peak(inputs):
        audio = list(inputs.audio)
        calls.append(len(audio))
        return pd.DataFrame({"peak": [float(np.abs(a).max()) for a in audio], "rms": [float(np.sqrt(np.mean(a ** 2))) for a in audio]})

    try:
        ws = Workspace(tmp_path / "ws")
        ingest_path(ws, audio_folder, "d")
        cfg = BlindRunConfig(groups=("metadata", "peak_test"), n_boot=20, n_perm=10, batch_size=3)
        _, out = audit_blind(ws, "d", cfg)
        assert "peak_test" in out["auc"] and calls == [3, 3, 2]
        clips = ws.analysis_clips("d")
        from core.pipeline.blind import audio_group_cached
        from core.runtime.settings import Settings

        settings = Settings.from_env(ws.root)
        table = audio_group_cached(ws, clips, "peak_test", settings=settings)
        assert calls == [3, 3, 2], "a cached run recomputed"
        ref = [float(np.abs(load_analysis(ws.read_audio(h), settings.analysis_sr)).max()) for h in clips["clip_hash"]]
        np.testing.assert_allclose(table["peak"].to_numpy(), ref)
        assert list(table.columns) == ["peak", "rms"]
    finally:
        unregister_group("peak_test")
