"""A CTranslate2 (faster-whisper) Whisper folder as an audit target.

:func:`whisper_from_ct2` maps the variables read by :func:`core.targets.ct2.read_model`
onto a Hugging Face ``WhisperForConditionalGeneration``: CTranslate2 fuses the query, key
and value projections into one matrix (self-attention) or key and value into one
(cross-attention), with a zero bias standing in for Whisper's bias-free key projection;
everything else is a renaming. The architecture (layers, heads, widths, mel bins, context
lengths) is read from the weights' shapes and the stored head counts, since a CTranslate2
``config.json`` holds only decoding settings (suppressed tokens, language ids).

:class:`Ct2WhisperTarget` is :class:`core.targets.seq2seq.Seq2SeqTarget` with those parts:
the evidence is the same two-stage token statistics, and the fingerprint hashes the
original files (``model.bin``, ``config.json``, vocabulary and tokenizer files), not the
converted weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.targets.ct2 import Ct2Model, ct2_files, is_ct2_whisper_folder, read_ct2_config, read_model
from core.targets.language import MULTILINGUAL_VOCAB
from core.targets.seq2seq import Seq2SeqTarget

_GELU = 3
"""CTranslate2's activation id for exact GELU, Whisper's activation."""

_SPECIAL = {"eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "no_ts": "<|notimestamps|>",
            "prev": "<|startofprev|>", "transcribe": "<|transcribe|>", "translate": "<|translate|>"}
_SR, _HOP = 16000, 160
"""Whisper's feature extractor: 16 kHz audio, 10 ms mel frames."""


def _count_layers(model: Ct2Model, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    found = {int(m.group(1)) for n in model.variables if (m := pat.match(n))}
    if not found or found != set(range(len(found))):
        raise ValueError(f"CTranslate2 Whisper model has no contiguous {prefix} layers")
    return len(found)


def _scalar(model: Ct2Model, name: str, default: int | None = None) -> int:
    if name not in model:
        if default is None:
            raise ValueError(f"CTranslate2 Whisper model lacks {name!r}")
        return default
    return int(np.asarray(model.get(name)).reshape(()))


def whisper_config_kwargs(model: Ct2Model) -> dict[str, Any]:
    """Architecture of the Whisper model in ``model``, as ``WhisperConfig`` arguments.

    Raises
    ------
    ValueError
        A spec other than Whisper, or settings a Hugging Face Whisper cannot reproduce
        (another activation, scaled embeddings, post-norm layers).
    """
    if model.spec != "WhisperSpec":
        raise ValueError(f"CTranslate2 spec {model.spec!r} is not a Whisper model")
    for name, want in (("decoder/activation", _GELU), ("decoder/scale_embeddings", 0), ("decoder/pre_norm", 1)):
        got = _scalar(model, name, want)
        if got != want:
            raise ValueError(f"CTranslate2 Whisper model has {name} = {got}; a Whisper model has {want}")
    emb = model.get("decoder/embeddings/weight")
    conv1 = model.get("encoder/conv1/weight")
    return {
        "vocab_size": int(emb.shape[0]),
        "d_model": int(emb.shape[1]),
        "num_mel_bins": int(conv1.shape[1]),
        "encoder_layers": _count_layers(model, "encoder"),
        "decoder_layers": _count_layers(model, "decoder"),
        "encoder_attention_heads": _scalar(model, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(model, "decoder/num_heads"),
        "encoder_ffn_dim": int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "decoder_ffn_dim": int(model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        "max_source_positions": int(model.get("encoder/position_encodings/encodings").shape[0]),
        "max_target_positions": int(model.get("decoder/position_encodings/encodings").shape[0]),
        "scale_embedding": False,
        "tie_word_embeddings": "decoder/projection/weight" not in model.variables,
    }


def whisper_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    """The Hugging Face ``WhisperForConditionalGeneration`` state dict of ``model``
    (float32), fused projections split back into query, key and value."""
    sd: dict[str, np.ndarray] = {}

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = model.get(f"{src}/gamma")
        sd[f"{dst}.bias"] = model.get(f"{src}/beta")

    def linear(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = model.get(f"{src}/weight")
        sd[f"{dst}.bias"] = model.get(f"{src}/bias")

    def fused(dsts: list[str], src: str) -> None:
        weights = np.split(model.get(f"{src}/weight"), len(dsts), axis=0)
        biases = np.split(model.get(f"{src}/bias"), len(dsts), axis=0)
        for dst, w, b in zip(dsts, weights, biases):
            sd[f"{dst}.weight"] = w
            if not dst.endswith("k_proj"):  # Whisper's key projections have no bias
                sd[f"{dst}.bias"] = b

    for side in ("encoder", "decoder"):
        n = _count_layers(model, side)
        sd[f"model.{side}.embed_positions.weight"] = model.get(f"{side}/position_encodings/encodings")
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(n):
            dst, src = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            fused([f"{dst}.self_attn.{p}_proj" for p in "qkv"], f"{src}/self_attention/linear_0")
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            if side == "decoder":
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                fused([f"{dst}.encoder_attn.{p}_proj" for p in "kv"], f"{src}/attention/linear_1")
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.decoder.embed_tokens.weight"] = model.get("decoder/embeddings/weight")
    sd["proj_out.weight"] = model.get("decoder/projection/weight")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}


def load_tokenizer(folder: str | Path):
    """The Whisper tokenizer of a CTranslate2 folder, from its ``tokenizer.json``; every
    special added token (task, language, timestamp-off markers) is marked special, so the
    adapter does not score it.

    Raises
    ------
    ValueError
        No ``tokenizer.json`` (``vocabulary.txt`` alone lacks the BPE merges).
    """
    import json

    from transformers import WhisperTokenizerFast

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{folder}: a CTranslate2 Whisper folder needs tokenizer.json (vocabulary.* alone has no BPE merges)")
    added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    special = [t["content"] for t in added if t.get("special")]
    eot = _SPECIAL["eot"]
    return WhisperTokenizerFast(
        tokenizer_file=str(path), unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot,
        additional_special_tokens=[t for t in special if t != eot],
    )


def generation_config(config_kwargs: dict[str, Any], ct2_config: dict[str, Any], tokenizer):
    """Whisper's generation settings from the architecture, the CTranslate2 decoding
    settings (suppressed tokens, language ids) and the tokenizer's special tokens."""
    from transformers import GenerationConfig

    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in _SPECIAL.items()}
    multilingual = config_kwargs["vocab_size"] >= MULTILINGUAL_VOCAB
    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"], bos_token_id=ids["sot"], eos_token_id=ids["eot"], pad_token_id=ids["eot"],
        max_length=config_kwargs["max_target_positions"], no_timestamps_token_id=ids["no_ts"],
        prev_sot_token_id=ids["prev"], suppress_tokens=list(ct2_config.get("suppress_ids") or []),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin") or []), is_multilingual=multilingual,
        return_timestamps=False, max_initial_timestamp_index=50,
    )
    if multilingual:
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(int(i)): int(i) for i in ct2_config.get("lang_ids") or []}
        gen.task_to_id = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
    return gen


def whisper_from_ct2(folder: str | Path, *, tokenizer=None):
    """A Hugging Face ``WhisperForConditionalGeneration`` (float32, eval mode) with the
    weights of a CTranslate2 Whisper folder.

    Raises
    ------
    ValueError
        Not a readable CTranslate2 Whisper model (see :func:`core.targets.ct2.read_model`).
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = Path(folder)
    ct2 = read_model(folder / "model.bin")
    kwargs = whisper_config_kwargs(ct2)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(folder)
    gen = generation_config(kwargs, read_ct2_config(folder), tokenizer)
    config = WhisperConfig(
        **kwargs, pad_token_id=gen.pad_token_id, bos_token_id=gen.eos_token_id, eos_token_id=gen.eos_token_id,
        decoder_start_token_id=gen.decoder_start_token_id, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, activation_function="gelu", suppress_tokens=None, begin_suppress_tokens=None,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(ct2)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (kwargs["tie_word_embeddings"] and m == "proj_out.weight")]
    if missing or unexpected:
        raise ValueError(f"{folder}: CTranslate2 weights do not fit a Whisper model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if kwargs["tie_word_embeddings"]:
        model.tie_weights()
    model.generation_config = gen
    return model.eval()


class Ct2WhisperTarget(Seq2SeqTarget):
    """A CTranslate2 Whisper folder (``model.bin``, ``config.json``, ``tokenizer.json``,
    ``vocabulary.*``) as a :class:`Seq2SeqTarget`: same options, same evidence.

    The weights are dequantized to float32 and then cast to the target's dtype; the
    fingerprint hashes the original files.
    """

    adapter = "ctranslate2-whisper"
    version = 1

    def _checked_config(self, trust_remote_code: bool) -> dict[str, Any]:
        if not is_ct2_whisper_folder(self.path):
            raise ValueError(f"{self.path} is not a CTranslate2 Whisper folder (no CTranslate2 model.bin)")
        return read_ct2_config(self.path)

    def _weight_files(self) -> list[Path]:
        return ct2_files(self.path)

    def _load_parts(self) -> tuple[Any, Any, Any]:
        from transformers import WhisperFeatureExtractor

        tokenizer = load_tokenizer(self.path)
        model = whisper_from_ct2(self.path, tokenizer=tokenizer).to(self.dtype)
        n_mels = int(model.config.num_mel_bins)
        if (self.path / "preprocessor_config.json").is_file():
            fe = WhisperFeatureExtractor.from_pretrained(str(self.path), local_files_only=True)
            if int(fe.feature_size) != n_mels:
                raise ValueError(f"{self.path}: preprocessor_config.json has {fe.feature_size} mel bins, the model {n_mels}")
        else:  # the window the encoder's positions cover: two mel frames per position
            seconds = int(model.config.max_source_positions) * 2 * _HOP / _SR
            fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=_SR, hop_length=_HOP,
                                         chunk_length=int(seconds) if seconds == int(seconds) else seconds)
        return model, fe, tokenizer
