"""The audio-language reference targets (tiny Whisper) and the encoder-decoder adapter.

A micro model is trained from scratch in seconds and loaded back through the same code
path as a real checkpoint folder; every statistic is checked against an independent
computation (the model's own loss, a plain greedy loop, a log-softmax by hand).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.targets import EvidenceConfig, load_target
from core.targets.base import ClipInput
from core.targets.fingerprint import folder_fingerprint
from core.targets.seq2seq import Seq2SeqTarget
from core.targets.tokenizer import DEFAULT_ALPHABET, char_tokenizer, load_tokenizer
from core.recipes.zoo import lalm
from core.recipes.zoo import get_trainer

GIVEN = EvidenceConfig(mode="given")
GENERATED = EvidenceConfig(mode="generated")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("lalm-micro")
    seen: list[float] = []
    card = get_trainer("lalm-small")(folder, micro=True, progress=lambda d, t, _m: seen.append(d / t))
    assert seen[-1] == pytest.approx(1.0) and len(seen) == lalm.MICRO.epochs
    return folder, card


@pytest.fixture(scope="module")
def target(micro) -> Seq2SeqTarget:
    return Seq2SeqTarget(micro[0], device="cpu")


@pytest.fixture(scope="module")
def members() -> list[ClipInput]:
    return lalm.micro_clips(lalm.MICRO_MEMBERS)


@pytest.fixture(scope="module")
def heldout(members) -> list[ClipInput]:
    clips = lalm.micro_clips(6, seed=99)
    assert not {c.text for c in clips} & {c.text for c in members}
    return clips


def _features(target: Seq2SeqTarget, clip: ClipInput) -> torch.Tensor:
    f = target.feature_extractor(clip.audio, sampling_rate=16000, return_tensors="pt")
    return f.input_features


# ---------------------------------------------------------------------------- tokenizer
def test_char_tokenizer_ids_roundtrip(tmp_path):
    tok = char_tokenizer()
    text = "Who sold Café 42?"
    expected = [1] + [4 + DEFAULT_ALPHABET.index(ch) for ch in "who sold cafe 42?"] + [2]
    assert tok(text).input_ids == expected
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert len(tok) == 4 + len(DEFAULT_ALPHABET)
    assert tok.decode(expected, skip_special_tokens=True) == "who sold cafe 42?"
    assert tok("a~b").input_ids == [1, 5, 3, 6, 2]  # unknown character -> <unk>
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again(text).input_ids == expected
    assert again.decode(expected[1:-1]) == "who sold cafe 42?"
    with pytest.raises(ValueError):
        char_tokenizer(alphabet="abca")


# ---------------------------------------------------------------------------- training
def test_micro_card_and_safetensors_only(micro, members, target):
    folder, card = micro
    on_disk = json.loads((folder / "card.json").read_text())
    assert on_disk == card
    assert card["member_hashes"] == [c.clip_hash for c in members]
    assert card["param_count"] == sum(p.numel() for p in target.model.parameters())
    files = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in files and not any(n.endswith((".bin", ".pt", ".pkl")) for n in files)
    assert card["size_bytes"] == sum((folder / n).stat().st_size for n in files if n != "card.json")
    assert card["epochs"] == lalm.MICRO.epochs and card["seed"] == lalm.MICRO.seed
    assert card["loss_per_epoch"][-1] < card["loss_per_epoch"][0]
    assert target.fingerprint == folder_fingerprint(
        folder, {"adapter": "seq2seq", "version": 1, "dtype": "float32", "max_new_tokens": target.max_new_tokens, "generate_kwargs": {}}
    )


def test_training_is_deterministic(tmp_path, members):
    recipe = dataclasses.replace(lalm.MICRO, epochs=2)
    a = lalm.train_model(tmp_path / "a", members[:3], recipe=recipe, name="a")
    b = lalm.train_model(tmp_path / "b", members[:3], recipe=recipe, name="b")
    assert a["loss_per_epoch"] == b["loss_per_epoch"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_load_target_on_folder_uses_the_adapter(micro):
    t = load_target(str(micro[0]), device="cpu")
    assert isinstance(t, Seq2SeqTarget) and t.family == "audio-language" and t.spec == str(micro[0])
    assert t.model.dtype == torch.float32 and t.device.type == "cpu"
    t.unload()
    assert t.model is None


# ---------------------------------------------------------------------------- given mode
def test_given_matches_model_loss(target, members):
    ev = target.evidence(members, GIVEN)
    for clip, e in zip(members, ev):
        labels = torch.tensor([target.tokenizer(clip.text).input_ids[1:]])
        with torch.no_grad():
            loss = target.model(input_features=_features(target, clip), labels=labels).loss
        assert e.text == clip.text and e.clip_hash == clip.clip_hash and e.notes == ()
        assert len(e.tokens) == len(clip.text) + 1  # characters and end-of-text
        np.testing.assert_array_equal(e.tokens.token_ids, labels[0].numpy())
        assert -e.tokens.logprob.mean() == pytest.approx(float(loss), abs=1e-5)


def test_given_statistics_match_a_manual_softmax(target, members):
    clip = members[0]
    e = target.evidence([clip], GIVEN)[0]
    ids = target.tokenizer(clip.text).input_ids  # <s> text </s>
    with torch.no_grad():
        logits = target.model(
            input_features=_features(target, clip), decoder_input_ids=torch.tensor([ids[:-1]])
        ).logits[0].double()
    p = torch.softmax(logits, -1).numpy()
    lp = np.log(p)
    np.testing.assert_allclose(e.tokens.logprob, lp[np.arange(len(ids) - 1), ids[1:]], atol=1e-5)
    np.testing.assert_allclose(e.tokens.entropy, -(p * lp).sum(-1), atol=1e-5)
    np.testing.assert_allclose(e.tokens.top1, p.max(-1), atol=1e-5)
    np.testing.assert_allclose(e.tokens.renyi_2, -np.log((p**2).sum(-1)), atol=1e-5)


def test_given_mode_rejects_empty_text(target, members):
    blank = dataclasses.replace(members[1], text="  ")
    with pytest.raises(ValueError, match=blank.clip_hash):
        target.evidence([members[0], blank], GIVEN)


def test_micro_model_fits_members_better_than_heldout(target, members, heldout):
    def nll(clips):
        return np.array([-e.tokens.logprob.mean() for e in target.evidence(clips, GIVEN)])

    m, h = nll(members), nll(heldout)
    assert m.mean() < h.mean() - 0.3, (m, h)


# ---------------------------------------------------------------------------- generated mode
def test_generated_is_greedy_then_rescored(target, members, heldout):
    clips = [members[0], heldout[0]]
    ev = target.evidence(clips, GENERATED)
    for clip, e in zip(clips, ev):
        feats = _features(target, clip)
        ids = [target.decoder_start_id]
        with torch.no_grad():
            for _ in range(target.max_new_tokens):
                logits = target.model(input_features=feats, decoder_input_ids=torch.tensor([ids])).logits[0]
                ids.append(int(logits[-1].argmax()))
                if ids[-1] == target.eos_id:
                    break
        np.testing.assert_array_equal(e.tokens.token_ids, ids[1:])
        lp = torch.log_softmax(logits.double(), -1).numpy()
        np.testing.assert_allclose(e.tokens.logprob, lp[np.arange(len(ids) - 1), ids[1:]], atol=1e-5)
        assert e.text == target.tokenizer.decode(ids[1:], skip_special_tokens=True)
    # A memorized member is transcribed back verbatim (up to case).
    assert ev[0].text == members[0].text.lower()


@pytest.mark.parametrize("config", [GIVEN, GENERATED], ids=["given", "generated"])
def test_batched_equals_unbatched(target, members, heldout, config):
    clips = members[:3] + heldout[:3]
    one = target.evidence(clips, config, batch_size=1)
    many = target.evidence(clips, config, batch_size=4)
    for a, b in zip(one, many):
        assert a.text == b.text and a.notes == b.notes
        np.testing.assert_array_equal(a.tokens.token_ids, b.tokens.token_ids)
        for field in ("logprob", "entropy", "top1", "std_logp", "renyi_inf"):
            np.testing.assert_allclose(getattr(a.tokens, field), getattr(b.tokens, field), atol=1e-4)


def test_evidence_is_deterministic(target, heldout):
    a = target.evidence(heldout[:2], GENERATED)
    b = target.evidence(heldout[:2], GENERATED)
    for x, y in zip(a, b):
        assert x.to_bytes() == y.to_bytes()


# ---------------------------------------------------------------------------- inputs
def test_long_clip_is_truncated_with_a_note(target, members):
    clip = members[0]
    window = target.window_samples
    tail = np.random.default_rng(0).normal(0, 0.1, window).astype(np.float32)
    long = dataclasses.replace(clip, audio=np.concatenate([clip.audio, tail]), clip_hash="long")
    cut = dataclasses.replace(clip, audio=long.audio[:window], clip_hash="cut")
    e_long, e_cut = target.evidence([long, cut], GIVEN)
    assert len(e_long.notes) == 1 and "truncated" in e_long.notes[0] and e_cut.notes == ()
    np.testing.assert_allclose(e_long.tokens.logprob, e_cut.tokens.logprob, atol=1e-6)


def test_other_sample_rates_are_resampled(target, members):
    import librosa

    clip = members[1]
    at_8k = librosa.resample(clip.audio, orig_sr=16000, target_sr=8000)
    back = librosa.resample(at_8k, orig_sr=8000, target_sr=16000).astype(np.float32)
    e8 = target.evidence([ClipInput("x", at_8k, clip.text, 8000)], GIVEN)[0]
    e16 = target.evidence([ClipInput("y", back, clip.text, 16000)], GIVEN)[0]
    np.testing.assert_allclose(e8.tokens.logprob, e16.tokens.logprob, atol=1e-4)


def test_infill_is_declined_with_a_note(target, members):
    e = target.evidence(members[:1], EvidenceConfig(mode="given", infill_m=2))[0]
    assert e.tokens.infill is None and any("infilling" in n for n in e.notes)
    with pytest.raises(ValueError, match="mode"):
        target.evidence(members[:1], EvidenceConfig(mode="bogus"))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("name", ["lalm-small", "lalm-large"])
def test_shipped_card_lists_the_demo_members(name):
    from core.recipes.zoo.data import demo_clips
    from core.targets.zoo.registry import zoo_dir

    card = json.loads((zoo_dir() / name / "card.json").read_text())
    assert card["member_hashes"] == [c.clip_hash for c in demo_clips("demo-speech", "member")]
    nonmembers = {c.clip_hash for c in demo_clips("demo-speech", "nonmember")}
    assert not nonmembers & set(card["member_hashes"])
    assert card["dataset"] == "demo-speech" and card["family"] == "audio-language"
    t = load_target(f"zoo:{name}", device="cpu")
    assert t.spec == f"zoo:{name}" and t.fingerprint == folder_fingerprint(
        zoo_dir() / name, {"adapter": "seq2seq", "version": 1, "dtype": "float32", "max_new_tokens": t.max_new_tokens, "generate_kwargs": {}}
    )
    t.unload()
