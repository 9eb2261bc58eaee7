"""The diffusion reference target: mel patches, caption-conditioned UNet, adapter evidence."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from core.recipes.corpus.sounds import render_event
from core.targets.base import ClipInput, EvidenceConfig, Target
from core.targets.codebook import log_mel
from core.targets.diffusion_audio import (
    DEFAULT_TIMESTEPS, STEP_DELTA, MelDiffusionTarget, caption_ids, clip_noise, clip_patch, load_mel_diffusion,
)
from core.targets.fingerprint import folder_fingerprint
from core.recipes.zoo.diffusion import DiffusionRecipe, fit_diffusion
from core.recipes.zoo import get_trainer
from core.targets.zoo.registry import get_zoo

torch.set_num_threads(1)

MICRO = DiffusionRecipe(
    block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=8, epochs=40, batch_size=8, lr=3e-3,
)


def _clips(n: int, stream: int) -> list[ClipInput]:
    out = []
    for i in range(n):
        audio, caption = render_event(np.random.default_rng([stream, i]))
        out.append(ClipInput(hashlib.sha256(audio.tobytes()).hexdigest(), audio, caption))
    return out


@pytest.fixture(scope="module")
def data():
    return _clips(8, 1), _clips(8, 2)


@pytest.fixture(scope="module")
def target(data, tmp_path_factory) -> MelDiffusionTarget:
    folder = tmp_path_factory.mktemp("diff")
    fit_diffusion(data[0], folder, recipe=MICRO)
    return load_mel_diffusion(folder)


@pytest.fixture(scope="module")
def v_target(data, tmp_path_factory) -> MelDiffusionTarget:
    folder = tmp_path_factory.mktemp("diffv")
    fit_diffusion(data[0][:4], folder, recipe=replace(MICRO, prediction_type="v_prediction", epochs=2))
    return load_mel_diffusion(folder)


def _hand_loss(tg: MelDiffusionTarget, clip: ClipInput, t: int, eps: torch.Tensor, caption: str) -> float:
    x0 = clip_patch(clip.audio, clip.sr, config=tg.patch)[None]
    tt = torch.tensor([t])
    a = tg.scheduler.alphas_cumprod[t].double()
    x_t = tg.scheduler.add_noise(x0, eps[None], tt)
    # the forward process and velocity written out from their definitions
    torch.testing.assert_close(x_t.double(), a.sqrt() * x0.double() + (1 - a).sqrt() * eps[None].double(), rtol=0, atol=1e-5)
    if tg.prediction_type == "epsilon":
        target = eps[None]
    else:
        target = (a.sqrt() * eps[None].double() - (1 - a).sqrt() * x0.double()).float()
    ids, mask = caption_ids([caption], tg.patch.vocab)
    with torch.no_grad():
        states = tg.conditioner.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        pred = tg.unet(x_t, tt, encoder_hidden_states=states, encoder_attention_mask=mask).sample
    return float(((pred.double() - target.double()) ** 2).mean())


def test_patch_is_first_frames_normalized(target, data):
    clip = data[0][0]
    p = clip_patch(clip.audio, clip.sr, config=target.patch)
    cfg = target.patch
    assert p.shape == (1, cfg.mel.n_mels, cfg.n_frames)
    m = log_mel(clip.audio, config=cfg.mel).T
    n = min(m.shape[1], cfg.n_frames)
    torch.testing.assert_close(p[0, :, :n], (m[:, :n] - cfg.mean) / cfg.std)
    if n < cfg.n_frames:
        assert torch.allclose(p[0, :, n:], torch.tensor((np.log(cfg.mel.floor) - cfg.mean) / cfg.std, dtype=torch.float32))


def test_shapes_protocol_and_determinism(target, data):
    assert isinstance(target, Target) and target.family == "diffusion"
    cfg = EvidenceConfig(n_noise=3, timesteps=(20, 400))
    ev = target.evidence(data[0][:2], cfg)
    again = target.evidence(data[0][:2], cfg)
    for e, f in zip(ev, again):
        d = e.diffusion
        assert d.loss_cond.shape == d.loss_uncond.shape == (2, 3) and d.step_error.shape == (2,)
        np.testing.assert_array_equal(d.timesteps, [20, 400])
        np.testing.assert_array_equal(d.loss_cond, f.diffusion.loss_cond)
        assert np.all(d.loss_cond > 0) and np.all(d.step_error >= 0)
    default = target.evidence(data[0][:1], EvidenceConfig(n_noise=1))[0].diffusion
    np.testing.assert_array_equal(default.timesteps, DEFAULT_TIMESTEPS)
    with pytest.raises(ValueError, match="outside"):
        target.evidence(data[0][:1], EvidenceConfig(timesteps=(1000,)))


def test_noise_depends_on_clip_and_seed_only(target, data):
    a = clip_noise("abc", seed=0, n=2, shape=(1, 4, 4))
    np.testing.assert_array_equal(a, clip_noise("abc", seed=0, n=2, shape=(1, 4, 4)))
    assert not torch.equal(a, clip_noise("abc", seed=1, n=2, shape=(1, 4, 4)))
    assert not torch.equal(a, clip_noise("abd", seed=0, n=2, shape=(1, 4, 4)))
    e0 = target.evidence(data[0][:1], EvidenceConfig(n_noise=2, seed=0, timesteps=(100,)))[0].diffusion
    e1 = target.evidence(data[0][:1], EvidenceConfig(n_noise=2, seed=1, timesteps=(100,)))[0].diffusion
    assert not np.allclose(e0.loss_cond, e1.loss_cond)


def test_batched_equals_unbatched(target, data):
    clips = data[0][:3] + data[1][:2]
    cfg = EvidenceConfig(n_noise=2, timesteps=(50, 300))
    one = target.evidence(clips, cfg, batch_size=1)
    many = target.evidence(clips, cfg, batch_size=5)
    for a, b in zip(one, many):
        for k in ("loss_cond", "loss_uncond", "step_error"):
            np.testing.assert_allclose(getattr(a.diffusion, k), getattr(b.diffusion, k), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("which", ["target", "v_target"])
def test_loss_equals_hand_computation(which, request, data):
    tg = request.getfixturevalue(which)
    assert tg.prediction_type == ("epsilon" if which == "target" else "v_prediction")
    clip = data[1][0]
    cfg = EvidenceConfig(n_noise=2, timesteps=(30, 250), seed=7)
    ev = tg.evidence([clip], cfg)[0].diffusion
    eps = clip_noise(clip.clip_hash, seed=7, n=2, shape=(1, tg.patch.mel.n_mels, tg.patch.n_frames))
    for j, t in enumerate(cfg.timesteps):
        for k in range(2):
            assert ev.loss_cond[j, k] == pytest.approx(_hand_loss(tg, clip, t, eps[k], clip.text), rel=1e-4)
            assert ev.loss_uncond[j, k] == pytest.approx(_hand_loss(tg, clip, t, eps[k], ""), rel=1e-4)


def test_step_error_is_ddim_round_trip(target, data):
    """Reverse step with diffusers' DDIM (eta = 0), then the inversion step written out."""
    tg, clip, t = target, data[0][1], 200
    ev = tg.evidence([clip], EvidenceConfig(n_noise=1, timesteps=(t,)))[0].diffusion
    x0 = clip_patch(clip.audio, clip.sr, config=tg.patch)[None]
    eps = clip_noise(clip.clip_hash, seed=0, n=1, shape=tuple(x0.shape[1:]))
    x_t = tg.scheduler.add_noise(x0, eps, torch.tensor([t]))
    ddim = DDIMScheduler.from_config(tg.scheduler.config, set_alpha_to_one=False, clip_sample=False)
    ddim.set_timesteps(ddim.config.num_train_timesteps // STEP_DELTA)
    ids, mask = caption_ids([clip.text], tg.patch.vocab)
    with torch.no_grad():
        states = tg.conditioner.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        f = lambda x, s: tg.unet(x, torch.tensor([s]), encoder_hidden_states=states, encoder_attention_mask=mask).sample  # noqa: E731
        x_s = ddim.step(f(x_t, t), t, x_t, eta=0.0).prev_sample
        s = t - STEP_DELTA
        e_s = f(x_s, s)
    a_s, a_t = tg.scheduler.alphas_cumprod[s], tg.scheduler.alphas_cumprod[t]
    x0_s = (x_s - (1 - a_s).sqrt() * e_s) / a_s.sqrt()
    x_back = a_t.sqrt() * x0_s + (1 - a_t).sqrt() * e_s
    assert ev.step_error[0] == pytest.approx(float(((x_back - x_t).double() ** 2).mean()), rel=1e-3)


def _hand_pia(tg: MelDiffusionTarget, clip: ClipInput, t: int) -> float:
    """PIA from its definition: the model's noise estimate on the clean patch at t = 0 is
    the noise of x_t, and the distance is the l4 power sum of the two estimates' gap."""
    x0 = clip_patch(clip.audio, clip.sr, config=tg.patch)[None].double()
    ac = tg.scheduler.alphas_cumprod.double()
    ids, mask = caption_ids([clip.text], tg.patch.vocab)

    def eps_hat(x: torch.Tensor, s: int) -> torch.Tensor:
        with torch.no_grad():
            states = tg.conditioner.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
            out = tg.unet(x.float(), torch.tensor([s]), encoder_hidden_states=states, encoder_attention_mask=mask).sample.double()
        if tg.prediction_type == "epsilon":
            return out
        return ac[s].sqrt() * out + (1 - ac[s]).sqrt() * x  # v = sqrt(a) eps - sqrt(1 - a) x0, x = sqrt(a) x0 + sqrt(1 - a) eps

    e0 = eps_hat(x0, 0)
    x_t = ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * e0
    return float(((eps_hat(x_t, t) - e0).abs() ** 4).sum())


@pytest.mark.parametrize("which", ["target", "v_target"])
def test_pia_equals_hand_computation(which, request, data):
    tg = request.getfixturevalue(which)
    clip = data[1][1]
    cfg = EvidenceConfig(n_noise=1, timesteps=(20, 200), pia=True)
    ev = tg.evidence([clip], cfg)[0].diffusion
    assert ev.pia.shape == (2,)
    for j, t in enumerate(cfg.timesteps):
        assert ev.pia[j] == pytest.approx(_hand_pia(tg, clip, t), rel=1e-3)
    # measured only when asked, and the other evidence is the same either way
    plain = tg.evidence([clip], replace(cfg, pia=False))[0].diffusion
    assert plain.pia.size == 0
    for k in ("loss_cond", "loss_uncond", "step_error"):
        np.testing.assert_array_equal(getattr(plain, k), getattr(ev, k))


def test_pia_batched_equals_unbatched_and_separates_members(target, data):
    cfg = EvidenceConfig(n_noise=1, timesteps=(50, 300), pia=True)
    clips = data[0] + data[1]
    one = target.evidence(clips[:5], cfg, batch_size=1)
    many = target.evidence(clips[:5], cfg, batch_size=5)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.diffusion.pia, b.diffusion.pia, rtol=1e-4)
    pia = np.array([e.diffusion.pia.mean() for e in target.evidence(clips, cfg)])
    assert pia[: len(data[0])].mean() < pia[len(data[0]):].mean()  # members: closer to their own noise estimate


def test_members_fit_better_than_heldout(target, data):
    cfg = EvidenceConfig(n_noise=2, timesteps=(100, 300))
    score = lambda cs: np.array([e.diffusion.loss_cond.mean() for e in target.evidence(cs, cfg)])  # noqa: E731
    m, h = score(data[0]), score(data[1])
    assert m.mean() < h.mean()


@pytest.mark.parametrize("name", ["diffusion-small", "diffusion-large"])
def test_zoo_micro_build_and_load(name, tmp_path):
    entry = get_zoo(name)
    assert entry.family == "diffusion" and entry.dataset == "demo-sounds"
    card = get_trainer(name)(tmp_path / name, micro=True)
    assert json.loads((tmp_path / name / "card.json").read_text()) == card
    assert card["micro"] and len(card["members"]) == card["n_members"] == 12 and card["size_bytes"] > 0
    t = entry.load(tmp_path / name)
    assert t.spec == f"zoo:{name}" and t.fingerprint == folder_fingerprint(tmp_path / name)
    from core.recipes.zoo.ar import audited_clips

    members, _ = audited_clips()
    ev = t.evidence(members[:2], EvidenceConfig(n_noise=1, timesteps=(100,)))
    assert ev[0].diffusion.loss_cond.shape == (1, 1)
