"""A tiny random-weight multilingual Whisper folder (``save_pretrained`` layout): a
character-level tokenizer with Whisper's special tokens and three language tokens, and a
generation config that lists them, as a real multilingual checkpoint's does."""

from __future__ import annotations

from pathlib import Path

import torch

LANGS = ("en", "fr", "de")
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in LANGS], "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
ALPHABET = " abcdefghijklmnopqrstuvwxyz."


def char_tokenizer_json(path: Path, specials: list[str]) -> dict[str, int]:
    """A character-level ``tokenizer.json`` with Whisper's special tokens ``specials`` and
    template (``<|startoftranscript|> <|notimestamps|> $A <|endoftext|>``); returns the
    vocabulary (characters, ``<unk>`` and the specials)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {ch: i for i, ch in enumerate(ALPHABET)}
    vocab["<unk>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    ids = {t: tok.token_to_id(t) for t in specials}
    sot, nots, eot = "<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>"
    tok.post_processor = processors.TemplateProcessing(single=f"{sot} {nots} $A {eot}",
                                                       special_tokens=[(t, ids[t]) for t in (sot, nots, eot)])
    tok.save(str(path))
    return {**vocab, **ids}


def tiny_multilingual_whisper(folder: Path, seed: int = 0, *, multilingual: bool = True) -> Path:
    """Write the folder and return it (``multilingual=False``: the same model with an
    English-only generation config, as Whisper's ``.en`` checkpoints have)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    ids = char_tokenizer_json(folder / "tokenizer.json", SPECIALS)
    vocab = {t: i for t, i in ids.items() if t not in SPECIALS}
    sot, nots, eot = "<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), unk_token=eot, bos_token=eot, eos_token=eot,
                                     pad_token=eot, additional_special_tokens=[t for t in SPECIALS if t != eot])
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = WhisperConfig(
        vocab_size=len(vocab) + len(SPECIALS), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=50, max_target_positions=24, pad_token_id=ids[eot], bos_token_id=ids[eot], eos_token_id=ids[eot],
        decoder_start_token_id=ids[sot], suppress_tokens=None, begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids[sot], bos_token_id=ids[eot], eos_token_id=ids[eot], pad_token_id=ids[eot], max_length=24,
        no_timestamps_token_id=ids[nots], prev_sot_token_id=ids["<|startofprev|>"], is_multilingual=multilingual,
        return_timestamps=False,
        **({"lang_to_id": {f"<|{c}|>": ids[f"<|{c}|>"] for c in LANGS},
            "task_to_id": {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}} if multilingual else {}),
    )
    model.save_pretrained(folder, safe_serialization=True)
    WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(folder)
    return folder
