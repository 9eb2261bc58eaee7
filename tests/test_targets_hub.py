"""Hugging Face hub ids resolved from the local cache only: a fake cache in the real layout
(``models--owner--name/refs/main`` -> ``snapshots/<commit>/``) holding a tiny random
Whisper, found through ``HF_HUB_CACHE``; a model that is not cached is refused before any
model library is imported, with the cache folder named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import core.targets  # noqa: F401  (registers the loaders)
from core.runtime.hub_cache import hub_cache_dir, is_hub_id, resolve_hub_id
from core.targets import resolve_target
from core.targets.base import ClipInput, EvidenceConfig
from core.targets.registry import load_target, target_family
from tests.test_targets_local import build_whisper

pytestmark = pytest.mark.usefixtures("torch_one_thread")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / "models--acme--whisper-nano"
    build_whisper(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.fixture
def env(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def test_cache_folder_follows_huggingface_hub_order(tmp_path):
    assert hub_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hub_cache_dir({"HUGGINGFACE_HUB_CACHE": "/c"}) == Path("/c")
    assert hub_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hub_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")


def test_hub_id_shape():
    assert is_hub_id("openai/whisper-tiny") and is_hub_id("acme/m@v1.0")
    assert not is_hub_id("zoo:lalm-small") and not is_hub_id("/abs/path") and not is_hub_id("justaname")


def test_cached_hub_id_loads_from_its_snapshot(env):
    spec = "acme/whisper-nano"
    folder = resolve_hub_id(spec)
    assert folder == env / "models--acme--whisper-nano" / "snapshots" / COMMIT
    assert resolve_hub_id(f"{spec}@{COMMIT}") == folder
    resolve_target(spec)
    assert target_family(spec) == "audio-language"
    t = load_target(spec, device="cpu")
    direct = load_target(str(folder), device="cpu")
    assert t.fingerprint == direct.fingerprint
    clip = ClipInput("h", (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), "hi")
    ev, ref = t.evidence([clip], EvidenceConfig(mode="given"))[0], direct.evidence([clip], EvidenceConfig(mode="given"))[0]
    np.testing.assert_array_equal(ev.tokens.logprob, ref.tokens.logprob)


def test_uncached_hub_id_is_refused_naming_the_cache(env):
    for call in (resolve_target, lambda s: load_target(s, device="cpu"), target_family):
        with pytest.raises((ValueError, FileNotFoundError)) as exc:
            call("acme/not-downloaded")
        assert str(env) in str(exc.value) and "models--acme--not-downloaded" in str(exc.value)
    with pytest.raises(FileNotFoundError, match="not revision 'v2'.*cached refs: main"):
        resolve_hub_id("acme/whisper-nano@v2")


def test_a_snapshot_whose_ref_points_nowhere_is_refused(env, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(env, cache, symlinks=True)
    shutil.rmtree(cache / "models--acme--whisper-nano" / "snapshots" / COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ValueError, match="not revision 'main'"):
        resolve_target("acme/whisper-nano")
