"""CTranslate2 (faster-whisper) Whisper folders: the model.bin reader, the conversion to a
Hugging Face Whisper, the registration as a local model type, and refusals.

The folders are written by a small writer in this file, from the CTranslate2 format
(binary version 6, ``WhisperSpec`` revision 3: fused q/k/v projections, int8 weights with
per-row scales ``127 / max|row|``); the real checkpoint test lives in
``tests/test_targets_ct2_real.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import core.targets  # noqa: F401  (registers the loaders)
import core.targets.local as local
from core.targets.base import ClipInput, EvidenceConfig
from core.targets.ct2 import read_model
from core.targets.registry import load_target, target_family
from tests.multilingual_fixture import char_tokenizer_json

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------------------- a writer, from the format
def whisper_tokenizer_json(path: Path) -> dict[str, int]:
    """A character-level tokenizer.json with Whisper's special tokens and template
    (``<|startoftranscript|> <|notimestamps|> $A <|endoftext|>``); returns the vocabulary."""
    return char_tokenizer_json(path, SPECIALS)


def tiny_whisper(vocab_size: int, ids: dict[str, int], seed: int = 0):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    cfg = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=80, d_model=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=50, max_target_positions=24, pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"], suppress_tokens=None, begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # random biases so that a dropped or misplaced bias shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return model


def ct2_variables(model) -> dict[str, np.ndarray]:
    """The WhisperSpec variables of a Hugging Face Whisper (float32)."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}

    def norm(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def lin(dst, src):
        out[f"{dst}/weight"], out[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def fuse(dst, srcs):
        out[f"{dst}/weight"] = np.concatenate([sd[f"{s}.weight"] for s in srcs])
        out[f"{dst}/bias"] = np.concatenate([sd.get(f"{s}.bias", np.zeros(sd[f"{s}.weight"].shape[0], np.float32)) for s in srcs])

    cfg = model.config
    for side, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        out[f"{side}/num_heads"] = np.int16(2)
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(n):
            s, d = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            norm(f"{d}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
            fuse(f"{d}/self_attention/linear_0", [f"{s}.self_attn.{p}_proj" for p in "qkv"])
            lin(f"{d}/self_attention/linear_1", f"{s}.self_attn.out_proj")
            norm(f"{d}/ffn/layer_norm", f"{s}.final_layer_norm")
            lin(f"{d}/ffn/linear_0", f"{s}.fc1")
            lin(f"{d}/ffn/linear_1", f"{s}.fc2")
            if side == "decoder":
                norm(f"{d}/attention/layer_norm", f"{s}.encoder_attn_layer_norm")
                lin(f"{d}/attention/linear_0", f"{s}.encoder_attn.q_proj")
                fuse(f"{d}/attention/linear_1", [f"{s}.encoder_attn.{p}_proj" for p in "kv"])
                lin(f"{d}/attention/linear_2", f"{s}.encoder_attn.out_proj")
    for c in ("conv1", "conv2"):
        lin(f"encoder/{c}", f"model.encoder.{c}")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    out["decoder/activation"] = np.int8(3)
    out["decoder/pre_norm"] = np.int8(1)
    out["decoder/scale_embeddings"] = np.int8(0)
    return out


_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def quantize(variables: dict[str, np.ndarray], quantization: str) -> dict[str, np.ndarray]:
    """float16: every float variable; int8: every weight matrix (and conv kernel) as int8
    with per-row scales ``127 / max|row|``, the rest float32."""
    out: dict[str, np.ndarray] = {}
    for name, v in variables.items():
        if v.ndim == 0 or quantization == "float32":
            out[name] = v
        elif quantization == "float16":
            out[name] = v.astype(np.float16)
        elif quantization == "int8" and name.endswith("/weight") and v.ndim >= 2:
            amax = np.abs(v.reshape(v.shape[0], -1)).max(axis=1)
            amax[amax == 0] = 127.0
            scale = (127.0 / amax).astype(np.float32)
            out[name] = np.rint(v * scale.reshape((-1,) + (1,) * (v.ndim - 1))).astype(np.int8)
            out[name + "_scale"] = scale
        else:
            out[name] = v
    return out


def write_model_bin(path: Path, variables: dict[str, np.ndarray], *, aliases: dict[str, str] | None = None,
                    spec: str = "WhisperSpec", revision: int = 3, version: int = 6) -> None:
    def string(s: str) -> bytes:
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    parts = [struct.pack("<I", version), string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name in sorted(variables):
        v = np.asarray(variables[name])
        parts += [string(name), struct.pack("<B", v.ndim), *(struct.pack("<I", d) for d in v.shape),
                  struct.pack("<B", _TYPE_IDS[v.dtype.name]), struct.pack("<I", v.nbytes), v.astype(v.dtype.newbyteorder("<")).tobytes()]
    aliases = aliases or {}
    parts.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        parts += [string(a), string(t)]
    path.write_bytes(b"".join(parts))


def write_ct2_folder(folder: Path, quantization: str = "float32", seed: int = 0):
    """A CTranslate2 Whisper folder of a tiny random Whisper; returns the original model."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = whisper_tokenizer_json(folder / "tokenizer.json")
    model = tiny_whisper(len(ids), ids, seed)
    write_model_bin(folder / "model.bin", quantize(ct2_variables(model), quantization),
                    aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    (folder / "config.json").write_text(json.dumps({
        "suppress_ids": [ids["<|nocaptions|>"]], "suppress_ids_begin": [ids[" "], ids["<|endoftext|>"]],
        "lang_ids": [ids["<|en|>"]], "alignment_heads": [[1, 0]],
    }))
    (folder / "vocabulary.txt").write_text("\n".join(sorted(ids, key=ids.get)))
    return model


def _features(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 80, 100)).astype(np.float32))


TOLERANCE = {"float32": 1e-5, "float16": 5e-3, "int8": 0.05}
"""Largest logit difference allowed, as a fraction of the reference logits' spread."""


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("quantization", ["float32", "float16", "int8"])
def test_converted_model_gives_the_original_logits(tmp_path, quantization):
    from core.targets.ct2_whisper import whisper_from_ct2

    original = write_ct2_folder(tmp_path, quantization)
    converted = whisper_from_ct2(tmp_path)
    dec = torch.tensor([[30, 3, 5, 7, 0, 1], [30, 8, 2, 2, 9, 12]])
    with torch.no_grad():
        ref = original(input_features=_features(), decoder_input_ids=dec).logits
        got = converted(input_features=_features(), decoder_input_ids=dec).logits
    err = float((ref - got).abs().max() / ref.std())
    assert err <= TOLERANCE[quantization], err
    if quantization != "float32":  # the tolerance is not loose enough to pass without dequantization
        assert err > 1e-6
    stored = read_model(tmp_path / "model.bin")
    assert stored.quantization == quantization
    assert stored.get("decoder/projection/weight") is stored.get("decoder/embeddings/weight")
    assert converted.proj_out.weight.data_ptr() == converted.model.decoder.embed_tokens.weight.data_ptr()


def test_int8_weights_are_divided_by_their_scales(tmp_path):
    v = {"x/weight": np.array([[1.0, -0.5], [0.0, 0.0], [0.25, 0.125]], np.float32), "x/num": np.int16(4)}
    write_model_bin(tmp_path / "model.bin", quantize(v, "int8"), spec="WhisperSpec")
    m = read_model(tmp_path)
    np.testing.assert_allclose(m.get("x/weight"), v["x/weight"], atol=0.5 / 127)
    assert "x/weight_scale" not in m.variables and m.dtypes["x/weight"] == "int8"
    assert int(m.get("x/num")) == 4


def test_folder_loads_as_a_whisper_target_by_its_files(tmp_path):
    from core.targets.ct2_whisper import Ct2WhisperTarget

    folder = tmp_path / "faster-whisper-tiny"
    write_ct2_folder(folder, "int8")
    assert local.detect_kind(folder) == "ctranslate2-whisper"
    assert target_family(str(folder)) == "audio-language"
    t = load_target(str(folder), device="cpu")
    assert isinstance(t, Ct2WhisperTarget) and t.family == "audio-language"
    clip = ClipInput("c", (0.1 * np.random.default_rng(2).standard_normal(8000)).astype(np.float32), "a cat.")
    given = t.evidence([clip], EvidenceConfig(mode="given"))[0]
    # "a cat." is 6 characters, plus end-of-text; the <|notimestamps|> prefix is not scored
    assert len(given.tokens) == 7 and given.text == "a cat."
    gen = t.evidence([clip], EvidenceConfig(mode="generated"))[0]
    assert len(gen.tokens) >= 1 and isinstance(gen.text, str)
    assert t.model.generation_config.no_timestamps_token_id == t.tokenizer.convert_tokens_to_ids("<|notimestamps|>")


def test_fingerprint_hashes_the_original_files(tmp_path):
    import shutil

    a = tmp_path / "a"
    write_ct2_folder(a, "float16")
    fa = load_target(str(a), device="cpu").fingerprint
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert load_target(str(b), device="cpu").fingerprint == fa
    cfg = json.loads((b / "config.json").read_text())
    cfg["suppress_ids"] = []
    (b / "config.json").write_text(json.dumps(cfg))
    fb = load_target(str(b), device="cpu").fingerprint
    write_ct2_folder(b, "float16", seed=1)
    assert len({fa, fb, load_target(str(b), device="cpu").fingerprint}) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spec": "TransformerSpec"}, "spec 'TransformerSpec' is not supported"),
        ({"version": 3}, "binary version 3, revision 3 is not supported"),
        ({"revision": 2}, "revision 2 is not supported"),
    ],
)
def test_unreadable_ct2_folders_are_refused_in_one_line(tmp_path, kwargs, message):
    write_ct2_folder(tmp_path)
    variables = ct2_variables(tiny_whisper(40, {"<|endoftext|>": 0, "<|startoftranscript|>": 1}))
    write_model_bin(tmp_path / "model.bin", variables, **kwargs)
    for call in (lambda: target_family(str(tmp_path)), lambda: load_target(str(tmp_path), device="cpu")):
        with pytest.raises(ValueError, match=message) as exc:
            call()
        assert "\n" not in str(exc.value)


def test_unknown_dtype_truncation_and_awq_are_refused(tmp_path):
    from core.targets.ct2 import read_model

    write_ct2_folder(tmp_path)
    raw = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_model(tmp_path / "cut.bin")
    write_model_bin(tmp_path / "awq.bin", {"w/weight": np.zeros((2, 2), np.int8), "w/weight_scale": np.ones(2, np.float32),
                                           "w/weight_zero": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="4-bit"):
        read_model(tmp_path / "awq.bin")
    bad = bytearray(raw)
    at = raw.index(b"decoder/activation\0") + len("decoder/activation\0") + 1  # rank 0, then the dtype id
    bad[at] = 9
    (tmp_path / "dtype.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="unknown CTranslate2 dtype id 9"):
        read_model(tmp_path / "dtype.bin")
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "quantization_type": 1}))
    with pytest.raises(ValueError, match="quantization_type"):
        load_target(str(tmp_path), device="cpu")


def test_a_pickle_model_bin_is_not_taken_for_ctranslate2(tmp_path):
    """A PyTorch ``model.bin`` (a zip or pickle) is not a CTranslate2 folder: the usual
    loading rules answer (pickle weights refused)."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper", "is_encoder_decoder": True}))
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.bin")
    from core.targets.ct2 import read_header

    assert read_header(tmp_path / "model.bin") is None
    assert local.detect_kind(tmp_path) == "seq2seq"
    with pytest.raises(ValueError, match="pickle"):
        load_target(str(tmp_path), device="cpu")


def test_missing_tokenizer_json_is_named(tmp_path):
    write_ct2_folder(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="needs tokenizer.json"):
        load_target(str(tmp_path), device="cpu")
