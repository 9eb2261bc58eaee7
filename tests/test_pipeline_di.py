"""Dataset inference as an operation: reads a stored MIA run, tests, stores a DI run.

The MIA runs are stored from :func:`core.mia.aggregate.run_mia` on synthetic indicator
tables of registered keys (members shifted towards "member" by a known amount), attached to
an ingested synthetic dataset, so no model is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.data.ingest import ingest_path
from core.di import ScorerConfig, dataset_inference, pvalue_curve, scorer_names
from core.mia.aggregate import run_mia
from core.mia.registry import direction
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.pipeline.common import provenance
from core.pipeline.di import DIRunConfig, audit_di, compare_scorers, di_inputs
from core.runtime import jobs
from core.runtime.store import Workspace

TARGET = "zoo:lalm-small"
KEYS = ("min_k@0.2", "ppl", "zlib", "prob_gap")
N_PER_SIDE = 60
FAST = DIRunConfig(n_resamples=60, null_resamples=100)


def write_corpus(root: Path, *, n: int = N_PER_SIDE, shifted: bool = False, seed: int = 0) -> Path:
    """members/ + nonmembers/ of 0.2 s tones; ``shifted``: members low, non-members high pitch."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(int(0.2 * sr)) / sr
    for label in ("members", "nonmembers"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            if shifted:
                f = rng.uniform(200, 400) if label == "members" else rng.uniform(2000, 4000)
            else:
                f = rng.uniform(200, 4000)
            x = 0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(root / label / f"c{i:03d}.wav", x.astype(np.float32), sr, subtype="PCM_16")
            (root / label / f"c{i:03d}.txt").write_text(f"a short tone number {i}\n", encoding="utf-8")
    return root


def save_mia(ws: Workspace, dataset: str, *, shift: float, seed: int = 0, nan_cells: int = 0) -> str:
    """An MIA run over a synthetic indicator table: members shifted by ``shift`` sd per indicator."""
    clips = ws.analysis_clips(dataset)
    y = clips["y"].to_numpy()
    rng = np.random.default_rng(seed)
    cols = {}
    for k in KEYS:
        cols[k] = rng.normal(0.0, 1.0, len(y)) + shift * direction(k) * y
    table = pd.DataFrame(cols, index=pd.Index(clips["clip_hash"], name="clip_hash"))
    if nan_cells:
        table.iloc[:nan_cells, 1] = np.nan
    out = run_mia(table, y, n_splits=5, seed=seed, n_boot=50).to_dict()
    out["labels"] = dict(zip(clips["clip_hash"], (int(v) for v in y)))
    out["table"] = {c: [None if not np.isfinite(v) else float(v) for v in table[c].to_numpy()] for c in table.columns}
    out["clip_order"] = clips["clip_hash"].tolist()
    return ws.save_run("mia", dataset=dataset, target=TARGET, config={"mode": "generated", "synthetic": True, "shift": shift}, result=out, provenance=provenance(ws, dataset, seed=seed))


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    ingest_path(w, write_corpus(tmp_path / "iid"), "synth")
    return w


def _direct(ws: Workspace, run_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    res = ws.load_run(run_id)["result"]
    X = np.column_stack([res["table"][k] for k in KEYS])
    y = np.array([res["labels"][h] for h in res["clip_order"]])
    return X[y == 1], X[y == 0], np.array([direction(k) for k in KEYS], dtype=float)


def test_run_equals_direct_dataset_inference_and_is_stored(ws: Workspace) -> None:
    mia_id = save_mia(ws, "synth", shift=0.5)
    run_id, out = audit_di(ws, "synth", TARGET, FAST)
    P, U, s = _direct(ws, mia_id)
    ref = dataset_inference(P, U, directions=s, scorer="auto", alpha=0.01, seed=0, null_resamples=100)
    assert out["p_value"] == pytest.approx(ref.p_value, rel=1e-12)
    np.testing.assert_allclose(out["p_scores"], ref.p_scores)
    np.testing.assert_allclose(out["u_scores"], ref.u_scores)
    assert out["scorer"] == ref.scorer == "normalized_sum"
    assert out["null_rejection_rate"] == pytest.approx(ref.null_check.rate)
    curve = pvalue_curve(P, U, directions=s, alpha=0.01, seed=0, n_resamples=60)
    assert out["min_suspects"] == curve.min_suspects
    # the spread over other splits: the run's own split first, the rest redrawn
    from core.di import needed_over_splits

    spread = needed_over_splits(P, U, directions=s, alpha=0.01, seed=0, n_resamples=60)
    assert out["needed_over_splits"] == spread and spread["needed"][0] == curve.min_suspects
    assert [c["n"] for c in out["curve"]] == curve.n.tolist()
    assert set(out["curve"][0]) >= {"n", "p_median", "p_lo", "p_hi"}
    assert out["mia_run"] == mia_id and out["indicators"] == list(KEYS)
    stored = ws.latest_run("di", "synth", TARGET)
    assert stored["id"] == run_id and stored["result"]["p_value"] == out["p_value"]
    assert stored["provenance"]["mia_run"] == mia_id and stored["provenance"]["dataset"] == "synth"
    assert DIRunConfig.from_dict(stored["config"]) == FAST
    for key in ("alpha", "verdict", "warnings", "headline", "null_ci"):
        assert key in out
    _, pooled = audit_di(ws, "synth", TARGET, DIRunConfig(scorer="pooled_sum", n_resamples=60, null_resamples=20))
    assert "needed_over_splits" not in pooled  # no split drawn, nothing to spread


def test_shifted_table_rejects_iid_table_does_not(ws: Workspace) -> None:
    save_mia(ws, "synth", shift=0.6, seed=1)
    _, hit = audit_di(ws, "synth", TARGET, FAST)
    assert hit["rejected"] and hit["p_value"] < 1e-4
    assert hit["min_suspects"] is not None and hit["min_suspects"] <= N_PER_SIDE
    assert hit["headline"].startswith("Evidence that the suspect set was used")

    save_mia(ws, "synth", shift=0.0, seed=2)  # newer run: the operation must pick it up
    _, miss = audit_di(ws, "synth", TARGET, FAST)
    assert not miss["rejected"] and miss["p_value"] > 0.01
    assert miss["min_suspects"] is None
    assert any("do not keep the median p-value below alpha" in w for w in miss["warnings"])
    lo, hi = miss["null_ci"]
    assert lo <= 0.01 + 1e-9 and miss["null_rejection_rate"] < 0.06
    # the null curve (non-members as suspects) stays above alpha
    assert all(p["p_median"] > 0.01 for p in miss["null_curve"]["points"])


def test_confounded_warning_quotes_the_blind_auc(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, write_corpus(tmp_path / "shift", n=40, shifted=True), "shifted")
    save_mia(ws, "shifted", shift=0.0)
    _, before = audit_di(ws, "shifted", TARGET, FAST)
    assert not any("confounded" in w for w in before["warnings"]) and not before["confounded"]
    _, blind = audit_blind(ws, "shifted", BlindRunConfig(groups=("acoustic",), n_splits=5, n_boot=50))
    auc = blind["auc"]["all"]
    assert auc >= 0.6
    _, after = audit_di(ws, "shifted", TARGET, FAST)
    confounded = [w for w in after["warnings"] if w.startswith("confounded")]
    assert len(confounded) == 1 and f"AUC {auc:.2f}" in confounded[0]
    assert after["confounded"] and after["blind_auc"] == auc
    assert "confounded" in after["verdict"]


def test_di_inputs_drops_empty_and_fills_partial_columns(ws: Workspace) -> None:
    run = ws.load_run(save_mia(ws, "synth", shift=0.3, nan_cells=5))
    res = dict(run["result"])
    res["table"] = dict(res["table"], **{"entropy": [None] * len(res["clip_order"])})
    inp = di_inputs(res)
    assert inp.keys == KEYS
    assert inp.P.shape == (N_PER_SIDE, 4) and inp.U.shape == (N_PER_SIDE, 4)
    assert np.all(np.isfinite(inp.P)) and np.all(np.isfinite(inp.U))
    assert inp.directions.tolist() == [1, -1, -1, 1]
    assert "dropped 1 indicator(s) with no finite value: entropy" in inp.notes[0]
    assert any(n.startswith("ppl: 5 non-finite") for n in inp.notes)
    ppl = np.array([np.nan if v is None else v for v in res["table"]["ppl"]])
    filled = np.r_[inp.P[:, 1], inp.U[:, 1]]
    assert np.sum(filled == np.nanmedian(ppl)) >= 5
    y = np.array([res["labels"][h] for h in res["clip_order"]])
    assert set(inp.p_clips) == {h for h, v in zip(res["clip_order"], y) if v == 1}


def test_compare_scorers_matches_each_scorer(ws: Workspace) -> None:
    mia_id = save_mia(ws, "synth", shift=0.5, seed=3)
    P, U, s = _direct(ws, mia_id)
    cfg = ScorerConfig(keys=tuple(KEYS))  # mean_loss finds its column by key
    rows = compare_scorers(P, U, directions=s, n_resamples=40, null_resamples=40, config=cfg)
    assert [r["scorer"] for r in rows] == [n for n in scorer_names() if n != "auto"]
    assert not any("error" in r for r in rows)
    for r in rows:
        ref = dataset_inference(P, U, directions=s, scorer=r["scorer"], null_resamples=40, config=cfg)
        assert r["p_value"] == pytest.approx(ref.p_value, rel=1e-12)
        assert r["null_rejection_rate"] == pytest.approx(ref.null_check.rate)
        assert 0.0 <= r["null_ci_low"] <= r["null_rejection_rate"] <= r["null_ci_high"] <= 1.0
    _, out = audit_di(ws, "synth", TARGET, DIRunConfig(n_resamples=40, null_resamples=40, compare=True))
    assert [r["scorer"] for r in out["comparison"]] == [r["scorer"] for r in rows]


def test_job_kind_runs_the_operation(ws: Workspace) -> None:
    save_mia(ws, "synth", shift=0.5)
    job_id = jobs.submit(ws, "di", {"dataset": "synth", "target": TARGET, "config": DIRunConfig(scorer="control_split", n_resamples=30, null_resamples=30).to_dict()}, start=False)
    run_id = jobs.run_job(ws, job_id)
    assert jobs.job(ws, job_id)["status"] == "done"
    run = ws.load_run(run_id)
    assert run["kind"] == "di" and run["result"]["scorer"] == "control_split"


def test_config_validates() -> None:
    with pytest.raises(KeyError, match="valid: .*normalized_sum"):
        DIRunConfig(scorer="nope")
    with pytest.raises(ValueError, match="alpha"):
        DIRunConfig(alpha=1.5)


def test_di_reads_the_mia_run_of_its_mode_and_records_it(tmp_path):
    """DI reads the newest MIA run in its own text mode (never a newer run of the other
    mode), or the run it is given, and records which; a run of another target is refused."""
    from core.data.ingest import ingest_path
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.di import DIRunConfig, audit_di, latest_mia
    from core.runtime.store import Workspace
    from core.targets.zoo.registry import assets_dir

    import shutil

    src = assets_dir() / "demo" / "demo-speech"
    for lab in ("members", "nonmembers"):  # 30 + 30 clips of the demo are enough here
        (tmp_path / "sub" / lab).mkdir(parents=True)
        for f in sorted((src / lab).glob("*.flac"))[:30]:
            shutil.copy(f, tmp_path / "sub" / lab / f.name)
            shutil.copy(f.with_suffix(".txt"), tmp_path / "sub" / lab / f.with_suffix(".txt").name)
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, tmp_path / "sub", "speech")
    cfg = dict(n_boot=50, n_perm=10)
    gen_id, _ = audit_mia(ws, "speech", "zoo:lalm-small", MIAConfig(mode="generated", **cfg))
    given_id, _ = audit_mia(ws, "speech", "zoo:lalm-small", MIAConfig(mode="given", **cfg))
    small = DIRunConfig(n_resamples=20, null_resamples=20)
    _, r = audit_di(ws, "speech", "zoo:lalm-small", small)
    assert (r["mia_run"], r["mia_mode"]) == (gen_id, "generated")  # the newer run is "given"
    _, r = audit_di(ws, "speech", "zoo:lalm-small", DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given"))
    assert (r["mia_run"], r["mia_mode"]) == (given_id, "given")
    _, r = audit_di(ws, "speech", "zoo:lalm-small", DIRunConfig(n_resamples=20, null_resamples=20, mia_run=gen_id))
    assert r["mia_run"] == gen_id
    with pytest.raises(ValueError, match="not an MIA run of zoo:lalm-large"):
        audit_di(ws, "speech", "zoo:lalm-large", DIRunConfig(mia_run=gen_id))
    assert latest_mia(ws, "speech", "zoo:lalm-small", "given")["id"] == given_id
    # loader options: a DI run given them reads (or makes) an MIA run loaded with exactly them
    opts = DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given", target_options=(("batch_size", 4),))
    _, r = audit_di(ws, "speech", "zoo:lalm-small", opts)
    made = ws.load_run(r["mia_run"])
    assert r["mia_run"] != given_id and made["config"]["target_options"] == {"batch_size": 4}
    _, again = audit_di(ws, "speech", "zoo:lalm-small", opts)
    assert again["mia_run"] == r["mia_run"]  # read, not made again
    other = DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given", target_options=(("batch_size", 2),))
    assert latest_mia(ws, "speech", "zoo:lalm-small", "given", options=other.target_options) is None
    assert latest_mia(ws, "speech", "zoo:lalm-small", "given", options={"batch_size": 4})["id"] == r["mia_run"]
    # without options, the newest run of the mode is read whatever its options
    _, r = audit_di(ws, "speech", "zoo:lalm-small", DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given"))
    assert r["mia_run"] == made["id"]


def test_di_splits_by_the_mia_runs_speakers_and_says_so(ws: Workspace) -> None:
    """The MIA run's per-clip groups reach the DI scorer (same result as calling it with
    them), the run records the grouping, and a run stored without groups is ungrouped."""
    mia_id = save_mia(ws, "synth", shift=0.3)
    _, old = audit_di(ws, "synth", TARGET, DIRunConfig(scorer="control_split", n_resamples=10, null_resamples=20))
    assert old["grouping"] == "none"
    run = ws.load_run(mia_id)
    spk = [f"s{i % 12}" for i in range(len(run["result"]["clip_order"]))]
    res = dict(run["result"], clip_groups=spk, config=dict(run["result"]["config"], grouping="speaker"))
    ws.save_run("mia", dataset="synth", target=TARGET, config=run["config"], result=res, provenance=run["provenance"])
    _, out = audit_di(ws, "synth", TARGET, DIRunConfig(scorer="control_split", n_resamples=10, null_resamples=20))
    assert out["grouping"] == "speaker"
    P, U, s = _direct(ws, mia_id)
    y = np.array([run["result"]["labels"][h] for h in run["result"]["clip_order"]])
    g = np.array(spk)
    ref = dataset_inference(P, U, directions=s, scorer="control_split", alpha=0.01, seed=0, null_resamples=20, groups=(g[y == 1], g[y == 0]))
    assert out["p_value"] == pytest.approx(ref.p_value, rel=1e-12)
    assert out["p_value"] != pytest.approx(old["p_value"], rel=1e-9)
