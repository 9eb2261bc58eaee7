"""The local-folder loader and the shared loading rules (safetensors only, remote code off,
device/dtype defaults, batch halving on CUDA out-of-memory)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import core.targets
import core.targets.local as local
from core.targets import loading
from core.targets.base import ClipInput, EvidenceConfig
from core.targets.fingerprint import folder_fingerprint


@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    """Every test of this module on one torch thread."""


def write_config(folder: Path, config: dict, *, weights: str | None = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if weights is not None:
        (folder / weights).write_bytes(b"not really weights")
    return folder


# ---------------------------------------------------------------------------- batch halving
def test_halving_retries_the_failed_batch_and_keeps_the_smaller_size():
    seen: list[int] = []
    shrinks: list[int] = []

    def fn(batch: list[int]) -> list[int]:
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return [x * x for x in batch]

    out, bs = loading.run_batches_halving(fn, list(range(7)), batch_size=8, on_shrink=shrinks.append)
    assert out == [x * x for x in range(7)]
    assert bs == 2 and shrinks == [4, 2]
    assert seen == [7, 4, 2, 2, 2, 1]


def test_halving_gives_up_at_batch_size_one_and_passes_other_errors():
    def always(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        loading.run_batches_halving(always, [1, 2, 3], batch_size=4)

    def broken(batch):
        raise RuntimeError("not memory")

    with pytest.raises(RuntimeError, match="not memory"):
        loading.run_batches_halving(broken, [1, 2], batch_size=2)
    with pytest.raises(RuntimeError, match="results"):
        loading.run_batches_halving(lambda b: b[:1], [1, 2], batch_size=2)


def test_halving_also_catches_host_out_of_memory():
    """An allocation the CPU allocator refuses (a real one: 2**60 bytes is beyond any
    address space) and a ``MemoryError`` halve the batch like CUDA out-of-memory does."""
    seen: list[int] = []

    def fn(batch: list[int]) -> list[int]:
        seen.append(len(batch))
        if len(batch) > 2:
            torch.empty(1 << 60, dtype=torch.uint8)
        if len(batch) > 1:
            raise MemoryError
        return batch

    out, bs = loading.run_batches_halving(fn, list(range(5)), batch_size=4)
    assert out == list(range(5)) and bs == 1
    assert seen == [4, 2, 1, 1, 1, 1, 1]
    assert not loading.is_out_of_memory(RuntimeError("shape mismatch"))


# ---------------------------------------------------------------------------- device and dtype
def test_device_and_dtype_defaults():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loading.resolve_device(None).type == expected and loading.resolve_device("auto").type == expected
    assert loading.resolve_device("cpu") == torch.device("cpu")
    assert loading.default_dtype(torch.device("cuda")) == torch.bfloat16
    assert loading.default_dtype(torch.device("cpu")) == torch.float32
    assert loading.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert loading.resolve_dtype("float16", torch.device("cpu")) == torch.float16
    assert loading.resolve_dtype(torch.bfloat16, torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        loading.resolve_dtype("float7", torch.device("cpu"))
    assert loading.default_batch_size(torch.device("cuda")) > loading.default_batch_size(torch.device("cpu"))
    cfg = loading.LoadConfig(device="cpu", dtype="float32")
    assert cfg.to_dict() == {"device": "cpu", "dtype": "float32", "trust_remote_code": False, "batch_size": 4}


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.pt", "weights.pkl"])
def test_pickle_only_folder_is_refused(tmp_path, weights):
    folder = write_config(tmp_path / "ckpt", {"model_type": "qwen2_audio"}, weights=weights)
    with pytest.raises(ValueError, match="safetensors only"):
        core.targets.load_target(str(folder))


def test_folder_without_weights_is_refused(tmp_path):
    folder = write_config(tmp_path / "ckpt", {"model_type": "musicgen"}, weights=None)
    with pytest.raises(ValueError, match="no weight files"):
        core.targets.load_target(str(folder))


def test_custom_code_needs_trust_remote_code(tmp_path):
    folder = write_config(tmp_path / "ckpt", {"model_type": "qwen2_audio", "auto_map": {"AutoModel": "m.Model"}})
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        core.targets.load_target(str(folder))


def test_unknown_model_type_lists_the_supported_ones(tmp_path):
    folder = write_config(tmp_path / "ckpt", {"model_type": "bert", "architectures": ["BertModel"]})
    with pytest.raises(ValueError, match="not supported") as err:
        core.targets.load_target(str(folder))
    for name in ("qwen2_audio", "audioflamingo3", "musicgen", "whisper", "model_index.json"):
        assert name in str(err.value)


def test_missing_folder_is_not_matched(tmp_path):
    with pytest.raises(ValueError, match="no such local folder"):
        core.targets.load_target(str(tmp_path / "absent"))


def test_detect_kind_reads_model_type(tmp_path):
    assert local.detect_kind(write_config(tmp_path / "a", {"model_type": "audioflamingo3"})) == "audioflamingo3"
    assert local.detect_kind(write_config(tmp_path / "b", {"model_type": "qwen2_audio"})) == "qwen2_audio"
    enc_dec = {"is_encoder_decoder": True}
    assert local.detect_kind(write_config(tmp_path / "c", {"model_type": "musicgen", **enc_dec})) == "musicgen"
    assert local.detect_kind(write_config(tmp_path / "d", {"model_type": "whisper", **enc_dec})) == "seq2seq"
    with pytest.raises(FileNotFoundError):
        local.detect_kind(tmp_path)


# ---------------------------------------------------------------------------- diffusers dispatch
def test_pipeline_folder_goes_to_the_diffusers_adapter(tmp_path, monkeypatch):
    import core.targets.diffusers_audio as da

    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    calls = []
    sentinel = object()

    def fake_load(path, *, device=None, **options):
        calls.append((path, device, options))
        return sentinel

    monkeypatch.setattr(da, "load_pipeline_target", fake_load)
    assert local.load_local(folder, device="cpu", n_noise=2) is sentinel
    assert calls == [(str(folder), "cpu", {"n_noise": 2})]


def test_pipeline_folder_without_the_adapter_module_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "core.targets.diffusers_audio", None)
    with pytest.raises(ImportError, match="diffusers adapter"):
        local.load_local(folder)


# ---------------------------------------------------------------------------- a real folder end to end
def build_whisper(folder: Path) -> Path:
    """An untrained tiny Whisper saved to ``folder`` the way real checkpoints are."""
    from transformers import WhisperForConditionalGeneration

    from core.targets.tokenizer import char_tokenizer
    from core.recipes.zoo import lalm

    recipe = lalm.LalmRecipe(d_model=16, layers=1, heads=2, ffn_dim=32, window_s=1, max_target_positions=24)
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(lalm._model_config(recipe, tok)).eval()
    model.generation_config = lalm._generation_config(recipe, tok)
    lalm._save(model, tok, lalm._feature_extractor(recipe), folder)
    return folder


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory) -> Path:
    return build_whisper(tmp_path_factory.mktemp("whisper"))


def test_whisper_folder_dispatches_to_seq2seq_with_the_flag_recorded(whisper_folder):
    from core.targets.seq2seq import Seq2SeqTarget

    t = local.load_local(whisper_folder, device="cpu")
    assert isinstance(t, Seq2SeqTarget) and t.trust_remote_code is False
    assert local.detect_kind(whisper_folder) == "seq2seq"
    clip = ClipInput("w", (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), "hi")
    ev = t.evidence([clip], EvidenceConfig(mode="given"))[0]
    assert len(ev.tokens) >= 2


def test_fingerprint_hashes_the_weights(whisper_folder, tmp_path):
    import shutil

    from core.targets.seq2seq import Seq2SeqTarget

    t = local.load_local(whisper_folder, device="cpu")
    copy = tmp_path / "copy"
    shutil.copytree(whisper_folder, copy)
    assert local.load_local(copy, device="cpu").fingerprint == t.fingerprint
    from safetensors.torch import load_file, save_file

    w = copy / "model.safetensors"
    state = load_file(str(w))
    name = sorted(state)[0]
    state[name] = state[name] + 1.0
    save_file(state, str(w), metadata={"format": "pt"})
    changed = local.load_local(copy, device="cpu")
    assert isinstance(changed, Seq2SeqTarget) and changed.fingerprint != t.fingerprint
    assert folder_fingerprint(copy) != folder_fingerprint(whisper_folder)


def test_generation_options_change_the_fingerprint_and_the_cached_evidence(whisper_folder, tmp_path):
    """Changing ``max_new_tokens`` or ``generate_kwargs`` changes what ``generated`` mode
    decodes, so it must change the fingerprint (and with it the cache key), never return
    the old evidence."""
    from core.runtime.cache import evidence_key

    base = local.load_local(whisper_folder, device="cpu")
    short = local.load_local(whisper_folder, device="cpu", max_new_tokens=2)
    beams = local.load_local(whisper_folder, device="cpu", generate_kwargs={"num_beams": 2})
    assert len({base.fingerprint, short.fingerprint, beams.fingerprint}) == 3
    assert local.load_local(whisper_folder, device="cpu", max_new_tokens=2).fingerprint == short.fingerprint
    clip = ClipInput("w", (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32), "")
    cfg = EvidenceConfig(mode="generated")
    a, b = base.evidence([clip], cfg)[0], short.evidence([clip], cfg)[0]
    assert len(b.tokens) <= 3 < len(a.tokens) or a.text != b.text
    assert evidence_key(base.fingerprint, "w", {"mode": "generated"}, 16000) != evidence_key(short.fingerprint, "w", {"mode": "generated"}, 16000)
