"""Evidence extraction on Ray gives the local executor's results and shares its cache.

A local Ray instance is started by the test (``ray.init(num_cpus=2)``): two CPU actors,
each loading the zoo model once.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from core.cli import main  # noqa: E402
from core.data.ingest import ingest_path  # noqa: E402
from core.pipeline.evidence import extract_evidence  # noqa: E402
from core.pipeline.mia import MIAConfig  # noqa: E402
from core.runtime.settings import Settings  # noqa: E402
from core.runtime.store import Workspace  # noqa: E402
from core.targets.zoo.registry import assets_dir  # noqa: E402

pytestmark = pytest.mark.slow
N_PER_CLASS = 12


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def speech_subset(tmp_path_factory) -> Path:
    """A 24-clip copy of demo-speech (12 members, 12 non-members) with its metadata."""
    src = assets_dir() / "demo" / "demo-speech"
    dst = tmp_path_factory.mktemp("speech")
    meta = pd.read_csv(src / "metadata.csv")
    keep = pd.concat([meta[meta["label"] == lab].head(N_PER_CLASS) for lab in ("member", "nonmember")])
    for rel in keep["path"]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, dst / rel)
    keep.to_csv(dst / "metadata.csv", index=False)
    return dst


def _arrays(ev) -> dict[str, np.ndarray]:
    tok = ev.tokens
    return {"text": ev.text, **{k: np.asarray(v) for k, v in tok.to_arrays().items()}}


def test_ray_evidence_equals_local_and_fills_the_same_cache(ray_local, speech_subset, tmp_path):
    cfg = MIAConfig(batch_size=4)
    ws_local = Workspace(tmp_path / "local")
    ws_ray = Workspace(tmp_path / "ray")
    for ws in (ws_local, ws_ray):
        ingest_path(ws, speech_subset, "d")
    base = Settings.from_env(tmp_path)
    _, ev_local, fp_local, n_local, _ = extract_evidence(ws_local, "d", "zoo:lalm-small", cfg, settings=base.with_workspace(ws_local.root))
    seen = []
    on_ray = replace(base.with_workspace(ws_ray.root), executor="ray")
    clips, ev_ray, fp_ray, n_ray, _ = extract_evidence(ws_ray, "d", "zoo:lalm-small", cfg, settings=on_ray,
                                                    progress=lambda d, t, m: seen.append(d))
    assert fp_ray == fp_local and n_ray == n_local == 2 * N_PER_CLASS
    assert [e.clip_hash for e in ev_ray] == clips["clip_hash"].tolist() == [e.clip_hash for e in ev_local]
    for a, b in zip(ev_local, ev_ray):
        xa, xb = _arrays(a), _arrays(b)
        assert xa.pop("text") == xb.pop("text")
        assert xa.keys() == xb.keys()
        for k in xa:
            np.testing.assert_allclose(xa[k], xb[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert seen[0] == 0 and seen[-1] == 2 * N_PER_CLASS and seen == sorted(seen)

    # a second Ray run is all cache hits; the local executor reads the Ray-written cache too
    _, again, _, n_again, _ = extract_evidence(ws_ray, "d", "zoo:lalm-small", cfg, settings=on_ray)
    assert n_again == 0 and [e.to_bytes() for e in again] == [e.to_bytes() for e in ev_ray]
    _, local_read, _, n_read, _ = extract_evidence(ws_ray, "d", "zoo:lalm-small", cfg, settings=base.with_workspace(ws_ray.root))
    assert n_read == 0 and len(local_read) == 2 * N_PER_CLASS


def test_ray_cancel_keeps_finished_batches(ray_local, speech_subset, tmp_path):
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, speech_subset, "d")
    on_ray = replace(Settings.from_env(ws.root), executor="ray")
    done = []
    with pytest.raises(InterruptedError):
        extract_evidence(ws, "d", "zoo:lalm-small", MIAConfig(batch_size=4), settings=on_ray,
                         progress=lambda d, t, m: done.append(d), cancelled=lambda: bool(done) and done[-1] >= 8)
    kept = done[-1]
    assert 8 <= kept < 2 * N_PER_CLASS
    _, _, _, computed, _ = extract_evidence(ws, "d", "zoo:lalm-small", MIAConfig(batch_size=4), settings=on_ray)
    assert computed == 2 * N_PER_CLASS - kept


def test_cli_mia_on_ray_matches_local(ray_local, speech_subset, tmp_path, capsys):
    results = {}
    for executor in ("local", "ray"):
        ws = str(tmp_path / executor)
        assert main(["ingest", str(speech_subset), "--name", "d", "--workspace", ws]) == 0
        capsys.readouterr()
        rc = main(["mia", "--dataset", "d", "--target", "zoo:lalm-small", "--n-boot", "50", "--batch-size", "4",
                   "--executor", executor, "--workspace", ws, "--json"])
        assert rc == 0
        results[executor] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["ray"]["computed"] == results["local"]["computed"] == 2 * N_PER_CLASS
    assert results["ray"]["auc"] == pytest.approx(results["local"]["auc"], abs=1e-9)
    assert results["ray"]["indicators"] == pytest.approx(results["local"]["indicators"], abs=1e-6)


def test_ray_address_without_ray_executor_is_refused(tmp_path, capsys):
    rc = main(["mia", "--dataset", "d", "--target", "zoo:lalm-small", "--ray-address", "auto", "--workspace", str(tmp_path)])
    assert rc == 2 and "--executor ray" in capsys.readouterr().err


def test_unreachable_cluster_is_one_clear_error(tmp_path, capsys, speech_subset, monkeypatch):
    """ray.init's own failure (it retries for minutes on a dead address) becomes one line."""
    ws = str(tmp_path / "ws")
    assert main(["ingest", str(speech_subset), "--name", "d", "--workspace", ws]) == 0
    capsys.readouterr()

    def refuse(*a, **kw):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    rc = main(["mia", "--dataset", "d", "--target", "zoo:lalm-small", "--executor", "ray",
               "--ray-address", "127.0.0.1:1", "--workspace", ws])
    err = capsys.readouterr().err
    assert rc == 2 and "could not join the Ray cluster at 127.0.0.1:1: Could not find any running Ray instance" in err
