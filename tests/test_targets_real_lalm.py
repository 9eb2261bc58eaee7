"""Chat audio-language adapter (Qwen2-Audio, Audio Flamingo 3) on tiny random-weight models.

Each model is built from a config with a character-level tokenizer, a Whisper feature
extractor and a chat template, saved with ``save_pretrained`` (safetensors) and loaded
back through ``core.targets.load_target``: the processor path a real checkpoint uses.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import core.targets
import core.targets.local  # noqa: F401  (registers the local loader)
from core.targets.base import ClipInput, EvidenceConfig
from core.targets.chat_lalm import ChatLALMTarget

SPECIALS = ["<unk>", "<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>",
            "<|audio_eos|>", "<sound>"]
CHARS = list(string.ascii_letters + string.digits + string.punctuation + " \n")
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'audio' %}AUDIO_SLOT\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FE_KW = dict(feature_size=16, sampling_rate=16000, hop_length=160, chunk_length=1, n_fft=400)
AUDIO_KW = dict(num_mel_bins=16, max_source_positions=50)
TEXT_KW = dict(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.3)
KINDS = ["qwen2_audio", "audioflamingo3"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    """Every test of this module on one torch thread."""


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=SPECIALS[2:])


def build(kind: str, path: Path, *, seed: int = 0) -> Path:
    """A tiny random-weight checkpoint of ``kind`` with its processor, saved to ``path``."""
    import transformers
    from transformers import WhisperFeatureExtractor

    tok = char_tokenizer()
    fe = WhisperFeatureExtractor(**FE_KW)
    torch.manual_seed(seed)
    if kind == "qwen2_audio":
        template = TEMPLATE.replace("AUDIO_SLOT", "<|audio_bos|><|AUDIO|><|audio_eos|>")
        proc = transformers.Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=template)
        cfg = transformers.Qwen2AudioConfig(
            audio_config=dict(model_type="qwen2_audio_encoder", encoder_layers=1, encoder_attention_heads=2,
                              encoder_ffn_dim=32, d_model=16, **AUDIO_KW),
            text_config=dict(TEXT_KW), audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"))
        model = transformers.Qwen2AudioForConditionalGeneration(cfg)
        eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    else:
        template = TEMPLATE.replace("AUDIO_SLOT", "<sound>")
        proc = transformers.AudioFlamingo3Processor(feature_extractor=fe, tokenizer=tok, chat_template=template,
                                                    max_audio_len=2)
        cfg = transformers.AudioFlamingo3Config(
            audio_config=dict(model_type="audioflamingo3_encoder", num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, hidden_size=16, **AUDIO_KW),
            text_config=dict(TEXT_KW), audio_token_id=tok.convert_tokens_to_ids("<sound>"))
        model = transformers.AudioFlamingo3ForConditionalGeneration(cfg)
        eos = [tok.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    # Chat checkpoints ship sampling settings; stage 1 must ignore them and decode greedily.
    model.generation_config.do_sample = True
    model.generation_config.temperature = 1.7
    model.generation_config.repetition_penalty = 1.5
    model.eval().save_pretrained(str(path))
    proc.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {k: build(k, tmp_path_factory.mktemp(k)) for k in KINDS}


@pytest.fixture(scope="module")
def targets(folders) -> dict[str, ChatLALMTarget]:
    return {k: core.targets.load_target(str(p), max_new_tokens=10) for k, p in folders.items()}


def make_clips(n: int, *, seed: int = 0) -> list[ClipInput]:
    rng = np.random.default_rng(seed)
    durations = [0.45, 0.8, 1.6, 0.3, 0.6][:n]
    texts = ["hello there", "a dog barks", "rain on a roof", "yes", "piano notes"]
    return [
        ClipInput(f"clip{i}", (0.1 * rng.standard_normal(int(16000 * d))).astype(np.float32), text=texts[i])
        for i, d in enumerate(durations)
    ]


def assert_same_stats(a, b, *, atol: float = 1e-4) -> None:
    assert np.array_equal(a.token_ids, b.token_ids)
    for name, x in a.to_arrays().items():
        np.testing.assert_allclose(x, b.to_arrays()[name], atol=atol, rtol=0, err_msg=name)


def full_logits(t: ChatLALMTarget, clip: ClipInput, answer: list[int]) -> np.ndarray:
    """Logits ``[N, V]`` predicting ``answer`` after the clip's prompt, from one unbatched
    forward pass of the whole model on the processor's own encoding."""
    enc = t.processor(text=[t.prompt_text], audio=[clip.audio[: t.max_samples]], sampling_rate=16000,
                      return_tensors="pt")
    P = enc["input_ids"].shape[1]
    ids = torch.cat([enc["input_ids"], torch.tensor([answer])], dim=1)
    inputs = {k: v for k, v in enc.items() if k not in ("num_audio_tokens", "input_ids", "attention_mask")}
    with torch.no_grad():
        logits = t.model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits
    return logits[0, P - 1 : P - 1 + len(answer)].double().numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_loads_through_registry_with_safe_defaults(kind, targets, folders):
    t = targets[kind]
    assert isinstance(t, ChatLALMTarget)
    assert t.family == "audio-language" and t.model_type == kind
    assert t.trust_remote_code is False and t.load_config.trust_remote_code is False
    assert t.load_config.dtype == "float32" and t.device.type == "cpu"
    assert "Transcribe the audio." in t.prompt_text
    other = core.targets.load_target(str(folders[kind]), prompt="Describe the audio.", max_new_tokens=10)
    assert "Describe the audio." in other.prompt_text
    assert other.fingerprint != t.fingerprint  # the prompt changes the evidence


@pytest.mark.parametrize("kind", KINDS)
def test_generated_is_greedy_deterministic_and_batch_independent(kind, targets):
    t = targets[kind]
    clips = make_clips(3)
    batched = t.evidence(clips, EvidenceConfig(), batch_size=3)
    single = [t.evidence([c], EvidenceConfig(), batch_size=1)[0] for c in clips]
    again = t.evidence(clips, EvidenceConfig(), batch_size=3)
    for b, s, a, clip in zip(batched, single, again, clips):
        assert b.clip_hash == clip.clip_hash
        n = len(b.tokens)
        assert 1 <= n <= 10
        assert all(v.shape == (n,) for v in b.tokens.to_arrays().values())
        assert_same_stats(b.tokens, s.tokens)
        assert_same_stats(b.tokens, a.tokens, atol=0.0)
        # Greedy decoding: every answer token is the argmax of its teacher-forced
        # distribution (the audio placeholder excluded), read from an independent full pass.
        answer = b.tokens.token_ids.tolist()
        logits = full_logits(t, clip, answer)
        logits[:, t.audio_token_id] = -np.inf
        assert logits.argmax(-1).tolist() == answer
        logp = scipy.special.log_softmax(full_logits(t, clip, answer), axis=-1)
        np.testing.assert_allclose(b.tokens.logprob, logp[np.arange(n), answer], atol=1e-4)
        assert b.text == t.tokenizer.decode(b.tokens.token_ids.tolist(), skip_special_tokens=True)
        ended = b.tokens.token_ids[-1] in t.eos_ids
        assert ended != any("token limit" in note for note in b.notes)
    # The 1.6 s clip exceeds Qwen2-Audio's 1 s window; AF3 splits it into two windows.
    truncated = any("truncated" in note for note in batched[2].notes)
    assert truncated == (kind == "qwen2_audio")


@pytest.mark.parametrize("kind", KINDS)
def test_given_mode_matches_model_loss_and_manual_softmax(kind, targets):
    """Teacher-forced statistics against the model's own ``labels=`` loss and full logits."""
    t = targets[kind]
    clip = make_clips(2)[1]
    ev = t.evidence([clip], EvidenceConfig(mode="given"))[0]
    answer = list(t.tokenizer(clip.text, add_special_tokens=False).input_ids) + [t.end_id]
    assert ev.tokens.token_ids.tolist() == answer

    full = t.processor(text=[t.prompt_text + clip.text + "<|im_end|>"], audio=[clip.audio], sampling_rate=16000,
                       return_tensors="pt")
    ids = full["input_ids"]
    P = ids.shape[1] - len(answer)
    assert ids[0, P:].tolist() == answer
    labels = ids.clone()
    labels[:, :P] = -100
    with torch.no_grad():
        out = t.model(**{k: v for k, v in full.items() if k != "num_audio_tokens"}, labels=labels)
    np.testing.assert_allclose(float(out.loss), -ev.tokens.logprob.mean(), atol=1e-4)

    logits = out.logits[0, P - 1 : P - 1 + len(answer)].double().numpy()
    logp = scipy.special.log_softmax(logits, axis=-1)
    np.testing.assert_allclose(ev.tokens.logprob, logp[np.arange(len(answer)), answer], atol=1e-4)
    np.testing.assert_allclose(ev.tokens.entropy, scipy.stats.entropy(np.exp(logp), axis=-1), atol=1e-4)
    np.testing.assert_allclose(ev.tokens.top1, np.exp(logp).max(-1), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_given_mode_batched_equals_unbatched_and_rejects_empty(kind, targets):
    t = targets[kind]
    clips = make_clips(3, seed=1)
    batched = t.evidence(clips, EvidenceConfig(mode="given"), batch_size=3)
    for c, b in zip(clips, batched):
        assert_same_stats(b.tokens, t.evidence([c], EvidenceConfig(mode="given"))[0].tokens)
        assert b.text == c.text
    with pytest.raises(ValueError, match="empty text"):
        t.evidence([ClipInput("e", clips[0].audio, text="  ")], EvidenceConfig(mode="given"))
    with pytest.raises(ValueError, match="unknown mode"):
        t.evidence(clips[:1], EvidenceConfig(mode="bogus"))  # type: ignore[arg-type]


def test_out_of_memory_halves_the_batch(targets):
    """A batch above 2 clips raises CUDA out-of-memory; evidence still comes back whole,
    equal to the unbatched result, and the smaller batch size is kept."""
    t = ChatLALMTarget.__new__(ChatLALMTarget)
    t.__dict__.update(targets["qwen2_audio"].__dict__)
    real = t._evidence_batch
    seen: list[int] = []

    def limited(batch, mode, infill_m):
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return real(batch, mode, infill_m)

    t._evidence_batch = limited  # type: ignore[method-assign]
    clips = make_clips(5, seed=2)
    out = t.evidence(clips, EvidenceConfig(mode="given"), batch_size=8)
    assert seen == [5, 4, 2, 2, 1]
    assert t.batch_size == 2
    assert [e.clip_hash for e in out] == [c.clip_hash for c in clips]
    for c, e in zip(clips, out):
        assert_same_stats(e.tokens, real([c], "given", 0)[0].tokens)


def test_resampled_input_and_infill_note(targets):
    t = targets["audioflamingo3"]
    clip = make_clips(1)[0]
    import librosa

    at8k = ClipInput(clip.clip_hash, librosa.resample(clip.audio, orig_sr=16000, target_sr=8000), clip.text, sr=8000)
    ev = t.evidence([at8k], EvidenceConfig(mode="given", infill_m=2))[0]
    assert any("infilling" in n for n in ev.notes)
    assert len(ev.tokens) == len(clip.text) + 1
