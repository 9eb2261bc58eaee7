"""MusicGen adapter on a tiny random-weight model (T5 text encoder, EnCodec, decoder).

The model, a character tokenizer and an EnCodec feature extractor are saved with
``save_pretrained`` (safetensors) and loaded through the local-folder loader
(``core.targets.local.load_local``, what ``load_target`` dispatches folders to).
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from core.targets.local import detect_kind, load_local
from core.targets.base import ClipInput, EvidenceConfig
from core.targets.musicgen import MusicgenTarget

CODEBOOK = 64
SR = 8000


@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    """Every test of this module on one torch thread."""


def t5_like_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>"] + list(string.ascii_lowercase + " "))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build(path: Path, *, audio_channels: int = 1, seed: int = 0) -> Path:
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    t5 = T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0)
    # hop 64 at 8 kHz = 125 frames/s; 750 bit/s per 64-entry codebook -> 4 codebooks at 3 kbit/s.
    enc = EncodecConfig(sampling_rate=SR, upsampling_ratios=[4, 4, 4], codebook_size=CODEBOOK, target_bandwidths=[3.0],
                        hidden_size=16, num_filters=4, num_lstm_layers=1, chunk_length_s=None, overlap=None)
    dec = MusicgenDecoderConfig(vocab_size=CODEBOOK, max_position_embeddings=96, num_hidden_layers=2, ffn_dim=32,
                                num_attention_heads=2, hidden_size=16, num_codebooks=4 * audio_channels,
                                audio_channels=audio_channels, pad_token_id=CODEBOOK, bos_token_id=CODEBOOK,
                                decoder_start_token_id=CODEBOOK, dropout=0.0, initializer_factor=0.3)
    cfg = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(), decoder=dec.to_dict())
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(cfg).eval()
    # A fresh EnCodec has all-zero codebooks (every frame would be code 0): draw them at
    # the encoder's output scale so the tokens vary.
    with torch.no_grad():
        scale = float(model.audio_encoder.encoder(0.1 * torch.randn(1, 1, SR)).std())
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.copy_(torch.randn_like(layer.codebook.embed) * scale)
            scale *= 0.5
    model.save_pretrained(str(path))
    t5_like_tokenizer().save_pretrained(str(path))
    EncodecFeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("musicgen"))


@pytest.fixture(scope="module")
def target(folder) -> MusicgenTarget:
    t = load_local(str(folder))
    assert isinstance(t, MusicgenTarget)
    return t


def make_clips(n: int, *, seed: int = 0) -> list[ClipInput]:
    rng = np.random.default_rng(seed)
    specs = [(0.2, "a calm piano"), (0.35, "drums"), (0.9, ""), (0.15, "bass and drums"), (0.25, "choir")][:n]
    out = []
    for i, (d, caption) in enumerate(specs):
        t = np.arange(int(16000 * d)) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t) + 0.05 * rng.standard_normal(t.shape)
        out.append(ClipInput(f"m{i}", audio.astype(np.float32), text=caption))
    return out


def delays_of(K: int, stereo: bool) -> list[int]:
    """Codebook k is delayed by k steps (mono); stereo pairs (2c, 2c + 1) by c."""
    return [k // 2 for k in range(K)] if stereo else list(range(K))


def delayed_reference(codes: np.ndarray, pad: int, *, stereo: bool = False) -> np.ndarray:
    """The delay pattern from its definition: after the start step, codebook k is shifted
    right by its delay."""
    K, T = codes.shape
    delays = delays_of(K, stereo)
    D = np.full((K, T + max(delays) + 1), pad, dtype=np.int64)
    for k in range(K):
        for t in range(T):
            D[k, delays[k] + 1 + t] = codes[k, t]
    return D


def reference_stats(target: MusicgenTarget, clip: ClipInput):
    """Codebook-major log-probs and entropies ``[K*T]`` from the model's ``labels=`` path,
    plus its loss, un-delayed with an explicit loop."""
    codes = target.encode_audio(clip).cpu().numpy()
    K, T = codes.shape
    stereo = target.audio_channels == 2
    delays = delays_of(K, stereo)
    D = delayed_reference(codes, target.pad_id, stereo=stereo)
    labels = torch.from_numpy(D[:, 1:].T.copy())[None]  # [1, L-1, K]
    text = target.tokenizer([clip.text], return_tensors="pt")
    with torch.no_grad():
        out = target.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], labels=labels)
    logits = out.logits.reshape(K, D.shape[1] - 1, -1).double().numpy()
    logp = scipy.special.log_softmax(logits, axis=-1)
    lp, ent = [], []
    for k in range(K):
        for t in range(T):
            row = logp[k, delays[k] + t]
            lp.append(row[codes[k, t]])
            ent.append(scipy.stats.entropy(np.exp(row)))
    return codes, np.array(lp), np.array(ent), float(out.loss)


def test_loads_with_safe_defaults(target, folder):
    assert detect_kind(folder) == "musicgen"
    assert target.family == "autoregressive"
    assert target.trust_remote_code is False and target.load_config.to_dict()["trust_remote_code"] is False
    assert target.load_config.dtype == "float32"
    assert target.num_codebooks == 4 and target.sampling_rate == SR


def test_codes_match_the_processor_path(target, folder):
    """The adapter's codes equal EnCodec's on the saved feature extractor's input."""
    import librosa
    from transformers import AutoFeatureExtractor

    clip = make_clips(2)[1]
    fe = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    audio = librosa.resample(clip.audio, orig_sr=16000, target_sr=SR)
    feats = fe(raw_audio=audio, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        ref = target.model.audio_encoder.encode(feats["input_values"], feats["padding_mask"]).audio_codes[0, 0]
    codes = target.encode_audio(clip)
    np.testing.assert_array_equal(codes.numpy(), ref.numpy())
    assert codes.shape[1] == int(np.ceil(len(audio) / 64))


def test_delay_pattern_matches_the_definition(target):
    codes = target.encode_audio(make_clips(1)[0])
    assert codes.shape[0] == 4 and len(np.unique(codes.numpy())) > 4
    np.testing.assert_array_equal(target.delayed(codes).numpy(), delayed_reference(codes.numpy(), target.pad_id))


def test_statistics_match_the_models_own_loss_per_token(target):
    for clip in make_clips(2):
        ev = target.evidence([clip], EvidenceConfig())[0]
        codes, lp, ent, loss = reference_stats(target, clip)
        K, T = codes.shape
        assert len(ev.tokens) == K * T
        np.testing.assert_array_equal(ev.tokens.token_ids, codes.reshape(-1))  # codebook-major
        np.testing.assert_allclose(ev.tokens.logprob, lp, atol=1e-4)
        np.testing.assert_allclose(ev.tokens.entropy, ent, atol=1e-4)
        # Every codebook has T valid labels, so the mean of per-codebook means is the mean.
        np.testing.assert_allclose(loss, -ev.tokens.logprob.mean(), atol=1e-4)
        assert f"codebooks={K} frames={T} order=codebook-major" in ev.notes


def test_batched_equals_unbatched_and_is_deterministic(target):
    clips = make_clips(4, seed=3)
    batched = target.evidence(clips, EvidenceConfig(), batch_size=4)
    again = target.evidence(clips, EvidenceConfig(), batch_size=4)
    for clip, b, a in zip(clips, batched, again):
        s = target.evidence([clip], EvidenceConfig(), batch_size=1)[0]
        assert b.clip_hash == clip.clip_hash and b.text == clip.text
        np.testing.assert_array_equal(b.tokens.token_ids, s.tokens.token_ids)
        for name, x in b.tokens.to_arrays().items():
            np.testing.assert_allclose(x, s.tokens.to_arrays()[name], atol=1e-4, rtol=0, err_msg=name)
            np.testing.assert_array_equal(x, a.tokens.to_arrays()[name])
    assert any("unconditionally" in n for n in batched[2].notes)


def test_long_clip_is_truncated_to_the_decoder_context(target):
    clip = ClipInput("long", (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), "long")
    ev = target.evidence([clip], EvidenceConfig())[0]
    assert len(ev.tokens) == 4 * target.max_frames
    assert any("truncated" in n for n in ev.notes)


def test_caption_changes_the_evidence(target):
    clip = make_clips(1)[0]
    a = target.evidence([clip], EvidenceConfig())[0]
    b = target.evidence([ClipInput(clip.clip_hash, clip.audio, "loud metal guitar")], EvidenceConfig())[0]
    np.testing.assert_array_equal(a.tokens.token_ids, b.tokens.token_ids)
    assert np.abs(a.tokens.logprob - b.tokens.logprob).max() > 1e-6


def test_stereo_checkpoint_scores_interleaved_codebooks(tmp_path):
    t = load_local(str(build(tmp_path / "stereo", audio_channels=2)))
    clip = make_clips(1)[0]
    codes = t.encode_audio(clip)
    assert codes.shape[0] == 8
    np.testing.assert_array_equal(codes[0::2].numpy(), codes[1::2].numpy())  # mono input: L == R
    np.testing.assert_array_equal(t.delayed(codes).numpy(), delayed_reference(codes.numpy(), t.pad_id, stereo=True))
    ev = t.evidence([clip], EvidenceConfig())[0]
    _, lp, _, loss = reference_stats(t, clip)
    np.testing.assert_allclose(ev.tokens.logprob, lp, atol=1e-4)
    np.testing.assert_allclose(loss, -ev.tokens.logprob.mean(), atol=1e-4)
