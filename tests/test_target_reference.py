"""One target reference: a spec is resolved once, at the edge, and a rerun whose evidence is
all cached loads no model.

- Walking ``overheard mia`` from the CLI to the evidence cache resolves the target spec
  once (and each reference once), counted at the registry.
- ``overheard mia --seed 1`` after ``--seed 0`` loads no model, for a speech model whose
  evidence ignores the seed; a multilingual Whisper whose language was detected loads none
  either (the detection is cached, the fingerprint of that language recorded).
- A record the model disagrees with is replaced, and the evidence is computed under the
  model's real fingerprint; a replaced weight file makes the record unknown.
"""

from __future__ import annotations

import json

import pytest

import core.targets.registry as registry
from core.cli import main
from core.pipeline import MIAConfig, audit_mia
from core.runtime.pool import POOL
from core.runtime.store import Workspace
from tests.conftest import demo_workspace

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = ["--n-boot", "20", "--n-perm", "0", "--n-splits", "2"]


@pytest.fixture
def counted(monkeypatch):
    """Counts of spec resolutions (registry lookups) and model loads."""
    counts = {"resolved": [], "loaded": []}
    lookup, load = registry._loader, registry.TargetRef.load

    def counting_lookup(spec):
        counts["resolved"].append(spec)
        return lookup(spec)

    def counting_load(self, **kw):
        counts["loaded"].append(self.spec)
        return load(self, **kw)

    monkeypatch.setattr(registry, "_loader", counting_lookup)
    monkeypatch.setattr(registry.TargetRef, "load", counting_load)
    POOL.clear()
    yield counts
    POOL.clear()


def _mia(ws: Workspace, *extra: str) -> dict:
    args = ["mia", "--workspace", str(ws.root), "--json", "--dataset", "speech", "--target", "zoo:lalm-small", *FAST, *extra]
    assert main(args) == 0
    return args


def test_a_spec_is_resolved_once_and_a_seed_change_loads_no_model(tmp_path, counted, capsys):
    ws = demo_workspace(tmp_path, 3)
    _mia(ws, "--seed", "0")
    first = json.loads(capsys.readouterr().out)
    assert first["computed"] == 6
    assert counted["resolved"] == ["zoo:lalm-small"] and counted["loaded"] == ["zoo:lalm-small"]
    counted["resolved"].clear(), counted["loaded"].clear()
    POOL.clear()  # a new process: nothing resident
    _mia(ws, "--seed", "1")
    again = json.loads(capsys.readouterr().out)
    assert again["computed"] == 0 and counted["loaded"] == []
    assert counted["resolved"] == ["zoo:lalm-small"]
    fps = [ws.load_run(r)["provenance"]["model_fingerprint"] for r in (first["run_id"], again["run_id"])]
    assert fps[0] == fps[1]
    # a setting it reads (the text mode) needs the model again, and it is loaded once
    POOL.clear()
    _mia(ws, "--mode", "given")
    assert json.loads(capsys.readouterr().out)["computed"] == 6 and counted["loaded"] == ["zoo:lalm-small"]


def test_each_reference_is_resolved_once(tmp_path, counted, capsys):
    ws = demo_workspace(tmp_path, 3)
    _mia(ws, "--reference", "zoo:lalm-base")
    assert json.loads(capsys.readouterr().out)["calibration"]
    assert sorted(counted["resolved"]) == ["zoo:lalm-base", "zoo:lalm-small"]


def test_a_stale_record_is_replaced_and_the_real_fingerprint_keys_the_evidence(tmp_path, counted):
    from core.pipeline.target_memo import _path
    from core.targets import resolve_target

    ws, name = demo_workspace(tmp_path, 3), "speech"
    cfg = MIAConfig(n_boot=20, n_perm=0, n_splits=2)
    _, first = audit_mia(ws, name, "zoo:lalm-small", cfg)
    path = _path(ws, resolve_target("zoo:lalm-small"), cfg_device(), {})
    record = json.loads(path.read_text())
    real = record["fingerprints"][""]
    record["fingerprints"][""] = "0" * 16  # a record that lies: its fingerprint keys nothing
    path.write_text(json.dumps(record))
    POOL.clear()
    run_id, again = audit_mia(ws, name, "zoo:lalm-small", cfg)
    assert again["computed"] == 0  # the model was loaded, disagreed, and the real key found the cache
    assert ws.load_run(run_id)["provenance"]["model_fingerprint"] == real
    assert json.loads(path.read_text())["fingerprints"][""] == real


def cfg_device() -> str:
    from core.runtime.settings import Settings

    return Settings.from_env().device


def test_a_replaced_file_makes_the_record_unknown(tmp_path):
    import shutil

    from core.pipeline.target_memo import known_target, remember
    from core.runtime.settings import assets_dir
    from core.targets import resolve_target

    folder = tmp_path / "ckpt"
    shutil.copytree(assets_dir() / "zoo" / "lalm-small", folder)
    ws = Workspace(tmp_path / "ws")
    ref = resolve_target(str(folder))

    class Loaded:
        fingerprint, family = "f" * 16, "audio-language"

    remember(ws, ref, "auto", {}, Loaded(), {"white-box": ["mode"], "outputs": ["seed"]})
    known = known_target(ws, ref, "auto", {})
    assert known is not None and known.fingerprint == "f" * 16 and known.reads("white-box") == ("mode",)
    assert known_target(ws, ref, "cuda", {}) is None and known_target(ws, ref, "auto", {"prompt": "x"}) is None
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert known_target(ws, resolve_target(str(folder)), "auto", {}) is None


def test_a_multilingual_rerun_with_a_detected_language_loads_no_model(tmp_path, counted):
    from core.data.ingest import ingest_path
    from tests.multilingual_fixture import tiny_multilingual_whisper
    from tests.test_language import SMALL, _dataset

    folder = tiny_multilingual_whisper(tmp_path / "ml")
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, _dataset(tmp_path / "plain", None, seed=1), "plain")
    _, first = audit_mia(ws, "plain", str(folder), MIAConfig(**SMALL))
    assert first["language"]["source"] == "detected" and counted["loaded"] == [str(folder)]
    POOL.clear()
    _, again = audit_mia(ws, "plain", str(folder), MIAConfig(**SMALL, seed=1))
    assert again["computed"] == 0 and again["language"] == first["language"]
    assert counted["loaded"] == [str(folder)]  # the first run's load only
