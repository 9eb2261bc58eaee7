"""The autoregressive reference target: codebook, caption -> audio-token GPT-2, adapter."""

from __future__ import annotations

import hashlib
import json

import librosa
import numpy as np
import pytest
import torch

from core.recipes.corpus.sounds import render_event
from core.targets.infilling import infilling_scores, infilling_token_scores
from core.targets.base import ClipInput, EvidenceConfig, Target
from core.targets.causal_audio import CausalAudioTarget, load_causal_audio, pad_batch
from core.targets.codebook import CharVocab, Codebook, MelConfig, log_mel
from core.targets.fingerprint import folder_fingerprint
from core.recipes.zoo.ar import ARRecipe, fit_ar
from core.recipes.zoo import get_trainer
from core.targets.zoo.registry import get_zoo

torch.set_num_threads(1)

MICRO = ARRecipe(n_layer=1, n_embd=32, n_head=2, n_codes=16, max_audio_tokens=40, epochs=40, batch_size=8, lr=1e-2)


def _clips(n: int, stream: int) -> list[ClipInput]:
    out = []
    for i in range(n):
        audio, caption = render_event(np.random.default_rng([stream, i]))
        out.append(ClipInput(hashlib.sha256(audio.tobytes()).hexdigest(), audio, caption))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    members, heldout, pool = _clips(8, 1), _clips(8, 2), _clips(10, 3)
    codebook = Codebook.fit([c.audio for c in pool], n_codes=MICRO.n_codes, seed=0)
    folder = tmp_path_factory.mktemp("ar")
    facts = fit_ar(members, codebook, folder, recipe=MICRO)
    return members, heldout, pool, folder, facts


@pytest.fixture(scope="module")
def target(setup) -> CausalAudioTarget:
    return load_causal_audio(setup[3])


def test_log_mel_matches_librosa():
    cfg = MelConfig()
    audio, _ = render_event(np.random.default_rng(5))
    ours = log_mel(audio, config=cfg).numpy()
    ref = librosa.feature.melspectrogram(
        y=audio, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
        fmin=cfg.fmin, fmax=cfg.fmax, power=2.0, center=True, pad_mode="reflect",
    )
    ref = np.log(ref + cfg.floor).T
    assert ours.shape == (1 + audio.size // cfg.hop_length, cfg.n_mels) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-3)


def test_codebook_nearest_centroid_deterministic_and_roundtrip(setup, tmp_path):
    _, _, pool, _, _ = setup
    a = Codebook.fit([c.audio for c in pool], n_codes=16, seed=0)
    b = Codebook.fit([c.audio for c in pool], n_codes=16, seed=0)
    torch.testing.assert_close(a.centroids, b.centroids, rtol=0, atol=0)
    audio = pool[0].audio
    z = ((log_mel(audio, config=a.mel) - a.mean) / a.std).numpy().astype(np.float64)
    d = ((z[:, None, :] - a.centroids.numpy().astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(a.encode(audio), d.argmin(1))
    a.save(tmp_path)
    np.testing.assert_array_equal(Codebook.load(tmp_path).encode(audio), a.encode(audio))
    assert a.frame_rate == pytest.approx(25.0)


def test_char_vocab():
    v = CharVocab(max_chars=5)
    assert v.encode("Ab~ c de") == [v.N_SPECIAL + 0, v.N_SPECIAL + 1, CharVocab.UNK, v.N_SPECIAL + 36, v.N_SPECIAL + 2]
    assert len(v) == CharVocab.N_SPECIAL + len(v.chars)


def test_protocol_shapes_and_token_ids(setup, target):
    members = setup[0]
    assert isinstance(target, Target) and target.family == "autoregressive"
    assert target.fingerprint == folder_fingerprint(setup[3])
    ev = target.evidence(members[:3], EvidenceConfig())
    for clip, e in zip(members[:3], ev):
        codes = target.codebook.encode(clip.audio)[: MICRO.max_audio_tokens]
        assert e.clip_hash == clip.clip_hash and e.text == clip.text
        np.testing.assert_array_equal(e.tokens.token_ids, codes + target.layout.audio_offset)
        assert len(e.tokens) == codes.size
        assert np.all(e.tokens.logprob <= 0) and e.tokens.infill is None
        assert e.notes == (("audio truncated to 40 tokens",) if target.codebook.encode(clip.audio).size > 40 else ())


def test_batched_equals_unbatched(setup, target):
    clips = setup[0][:3] + setup[1][:3]
    one = target.evidence(clips, EvidenceConfig(), batch_size=1)
    many = target.evidence(clips, EvidenceConfig(), batch_size=4)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a.tokens.token_ids, b.tokens.token_ids)
        np.testing.assert_allclose(a.tokens.logprob, b.tokens.logprob, atol=1e-4)
        np.testing.assert_allclose(a.tokens.entropy, b.tokens.entropy, atol=1e-4)


def test_logprobs_agree_with_model_loss(setup, target):
    """-mean log p over audio tokens == the model's own loss with labels masked to them."""
    clips = setup[0][:2] + setup[1][:2]
    ev = target.evidence(clips, EvidenceConfig())
    for clip, e in zip(clips, ev):
        ids, start, n, _ = target.tokenize(clip)
        x = torch.tensor([ids])
        labels = torch.full_like(x, -100)
        labels[0, start : start + n] = x[0, start : start + n]
        with torch.no_grad():
            out = target.model(input_ids=x, labels=labels)
        assert -e.tokens.logprob.mean() == pytest.approx(out.loss.item(), abs=1e-4)
        ref = torch.log_softmax(out.logits[0].double(), -1)[torch.arange(start - 1, start + n - 1), x[0, start : start + n]]
        np.testing.assert_allclose(e.tokens.logprob, ref.numpy(), atol=1e-4)


def test_members_fit_better_than_heldout(setup, target):
    members, heldout = setup[0], setup[1]
    nll = lambda cs: np.array([-e.tokens.logprob.mean() for e in target.evidence(cs, EvidenceConfig())])  # noqa: E731
    m, h = nll(members), nll(heldout)
    assert m.mean() < h.mean() and np.median(m) < np.median(h)


def test_infilling_restricted_to_audio_tokens(setup, target):
    clip = setup[0][0]
    e = target.evidence([clip], EvidenceConfig(infill_m=2))[0]
    ids, start, n, _ = target.tokenize(clip)
    ref = infilling_token_scores(target.model, torch.tensor(ids), 2)[start : start + n]
    assert e.tokens.infill.shape == (n,)
    np.testing.assert_allclose(e.tokens.infill, ref, atol=1e-6)
    authors = infilling_scores(target.model, torch.tensor(ids), 2).ref[start : start + n]
    assert e.tokens.infill_ref.shape == (n,)
    np.testing.assert_allclose(e.tokens.infill_ref, authors, atol=1e-6)


def test_training_is_deterministic(setup, tmp_path):
    members, _, pool, folder, _ = setup
    codebook = Codebook.fit([c.audio for c in pool], n_codes=MICRO.n_codes, seed=0)
    fit_ar(members, codebook, tmp_path, recipe=MICRO)
    assert folder_fingerprint(tmp_path) == folder_fingerprint(folder)


def test_pad_batch():
    ids, mask = pad_batch([[5, 6, 7], [8]])
    np.testing.assert_array_equal(ids.numpy(), [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("name", ["ar-small", "ar-large"])
def test_zoo_micro_build_and_load(name, tmp_path):
    entry = get_zoo(name)
    assert entry.family == "autoregressive" and entry.dataset == "demo-sounds"
    card = get_trainer(name)(tmp_path / name, micro=True)
    on_disk = json.loads((tmp_path / name / "card.json").read_text())
    assert on_disk == card and card["micro"] and len(card["members"]) == card["n_members"] == 12
    assert card["n_parameters"] > 0 and card["size_bytes"] > 0
    t = entry.load(tmp_path / name)
    assert t.spec == f"zoo:{name}" and t.fingerprint == folder_fingerprint(tmp_path / name)
    from core.recipes.zoo.ar import audited_clips

    members, nonmembers = audited_clips()
    assert set(card["members"]) <= {c.clip_hash for c in members}
    assert not set(card["members"]) & {c.clip_hash for c in nonmembers}
    ev = t.evidence(members[:2], EvidenceConfig())
    assert all(len(e.tokens) > 0 for e in ev)
