"""Real-checkpoint diffusers adapters: tiny random-weight pipelines saved and loaded locally."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: E402
from transformers import (  # noqa: E402
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    ClapTextModelWithProjection,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402

from core.targets.base import ClipInput, EvidenceConfig  # noqa: E402
from core.targets.diffusers_audio import (  # noqa: E402
    MelSpec,
    check_safetensors,
    load_pipeline_target,
    log_mel,
)
from core.targets.diffusion_audio import clip_noise  # noqa: E402
from core.targets.fingerprint import folder_fingerprint  # noqa: E402

N_MELS = 16  # vocoder model_in_dim
HOP = 4  # product of the vocoder's upsample rates
SR = 16000
N_FRAMES = 16
N_FFT = 16
CFG = EvidenceConfig(timesteps=(50, 400), n_noise=2, seed=3)


def _tokenizer(max_len: int = 24) -> RobertaTokenizer:
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_len)


def _clap_text_config() -> ClapTextConfig:
    return ClapTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, vocab_size=300, hidden_size=16, intermediate_size=24,
        num_attention_heads=2, num_hidden_layers=1, projection_dim=16, max_position_embeddings=40,
    )


def _shared_components(prediction_type: str) -> dict:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=N_FRAMES // 2, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(16, 32), attention_head_dim=4, norm_num_groups=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=16, class_embeddings_concat=True,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4, norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=N_MELS, sampling_rate=SR, upsample_initial_channel=8, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
        normalize_before=False,
    ))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, prediction_type=prediction_type,
    )
    return {"unet": unet, "vae": vae, "vocoder": vocoder, "scheduler": scheduler, "tokenizer": _tokenizer()}


def build_audioldm(folder: Path, prediction_type: str = "epsilon") -> Path:
    from diffusers import AudioLDMPipeline

    comps = _shared_components(prediction_type)
    comps["text_encoder"] = ClapTextModelWithProjection(_clap_text_config())
    AudioLDMPipeline(**comps).save_pretrained(str(folder), safe_serialization=True)
    return folder


def _clap_model() -> ClapModel:
    audio_cfg = ClapAudioConfig(
        spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=16, layer_norm_eps=1e-05, depths=[1, 1],
        num_attention_heads=[2, 2], num_hidden_layers=1, hidden_size=16, patch_stride=2, patch_embed_input_channels=4,
        projection_dim=16, enable_fusion=False,
    )
    return ClapModel(ClapConfig(text_config=_clap_text_config().to_dict(), audio_config=audio_cfg.to_dict(),
                                projection_dim=16))


def build_musicldm(folder: Path, prediction_type: str = "epsilon") -> Path:
    from diffusers import MusicLDMPipeline

    comps = _shared_components(prediction_type)
    comps["text_encoder"] = _clap_model()
    comps["feature_extractor"] = ClapFeatureExtractor()
    MusicLDMPipeline(**comps).save_pretrained(str(folder), safe_serialization=True)
    return folder


def build_audioldm2(folder: Path, prediction_type: str = "epsilon", *, lm_cls: type = GPT2LMHeadModel) -> Path:
    import string

    from diffusers import AudioLDM2Pipeline
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel

    comps = _shared_components(prediction_type)
    torch.manual_seed(0)
    comps["unet"] = AudioLDM2UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=N_FRAMES // 2, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 32], [None, 16, 32]), attention_head_dim=4, norm_num_groups=8,
    )
    comps["text_encoder"] = _clap_model()
    comps["feature_extractor"] = ClapFeatureExtractor()
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in string.ascii_letters + string.digits + string.punctuation]
    comps["tokenizer_2"] = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=24)
    comps["text_encoder_2"] = T5EncoderModel(
        T5Config(vocab_size=len(pieces), d_model=32, d_ff=16, d_kv=8, num_heads=2, num_layers=1)
    )
    torch.manual_seed(1)
    lm = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=10, n_ctx=40, n_positions=40))
    if lm_cls is GPT2Model:
        lm = lm.transformer
    lm.config.max_new_tokens = 4
    comps["language_model"] = lm
    comps["projection_model"] = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32,
                                                         langauge_model_dim=16)
    AudioLDM2Pipeline(**comps).save_pretrained(str(folder), safe_serialization=True)
    return folder


def chirp(seed: int, seconds: float = 0.01) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(seed)
    f0 = 300 + 500 * seed
    return (np.sin(2 * np.pi * (f0 + 4e5 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


CLIPS = [
    ClipInput("h0", chirp(0), "a dog barks twice"),
    ClipInput("h1", chirp(1, 0.005), "rain on a tin roof"),
    ClipInput("h2", chirp(2), ""),
]


@pytest.fixture(scope="module")
def audioldm_eps(tmp_path_factory) -> Path:
    return build_audioldm(tmp_path_factory.mktemp("audioldm_eps"))


@pytest.fixture(scope="module")
def audioldm_v(tmp_path_factory) -> Path:
    return build_audioldm(tmp_path_factory.mktemp("audioldm_v"), "v_prediction")


@pytest.fixture(scope="module")
def musicldm_eps(tmp_path_factory) -> Path:
    return build_musicldm(tmp_path_factory.mktemp("musicldm_eps"))


@pytest.fixture(scope="module")
def audioldm2_eps(tmp_path_factory) -> Path:
    return build_audioldm2(tmp_path_factory.mktemp("audioldm2_eps"))


def _load(folder: Path, **kw):
    return load_pipeline_target(folder, device="cpu", n_frames=N_FRAMES, n_fft=N_FFT, **kw)


# ---------------------------------------------------------------- mel front end


def test_log_mel_matches_librosa_reference():
    spec = MelSpec(sr=SR, n_fft=64, hop_length=HOP * 4, win_length=64, n_mels=N_MELS, fmin=0.0, fmax=SR / 2)
    y = chirp(4, 0.02)
    got = log_mel(y, spec=spec, n_frames=12, normalize_wav=True).numpy()
    import librosa

    x = y - y.mean()
    x = 0.5 * x / (np.abs(x).max() + 1e-8)
    n = 12 * spec.hop_length
    x = np.pad(x[:n], (0, max(0, n - x.size)))
    pad = (spec.n_fft - spec.hop_length) // 2
    x = np.pad(x, (pad, pad), mode="reflect")
    mag = np.abs(librosa.stft(x, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length,
                              window="hann", center=False))
    fb = librosa.filters.mel(sr=SR, n_fft=spec.n_fft, n_mels=N_MELS, fmin=0.0, fmax=SR / 2)
    ref = np.log(np.maximum(fb @ mag, 1e-5)).T[:12]
    assert got.shape == (12, N_MELS)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_log_mel_pads_with_silence_floor():
    spec = MelSpec(sr=SR, n_fft=64, hop_length=16, win_length=64, n_mels=N_MELS, fmax=SR / 2)
    m = log_mel(np.zeros(16, np.float32), spec=spec, n_frames=8).numpy()
    np.testing.assert_allclose(m, np.log(1e-5), rtol=1e-6)


# ---------------------------------------------------------------- AudioLDM


def test_audioldm_shapes_fingerprint_and_determinism(audioldm_eps):
    tgt = _load(audioldm_eps)
    assert tgt.family == "diffusion" and tgt.prediction_type == "epsilon"
    assert tgt.fingerprint == folder_fingerprint(
        audioldm_eps,
        {"adapter": "diffusers_audio", "version": 1, "pipeline": "AudioLDMPipeline", "dtype": "float32",
         "front_end": tgt.front_end.to_dict()},
    )
    evs = tgt.evidence(CLIPS, CFG)
    assert [e.clip_hash for e in evs] == ["h0", "h1", "h2"]
    for e in evs:
        d = e.diffusion
        assert d.loss_cond.shape == (2, 2) and d.loss_uncond.shape == (2, 2) and d.step_error.shape == (2,)
        assert np.array_equal(d.timesteps, [50, 400])
        assert np.all(np.isfinite(d.loss_cond)) and np.all(d.loss_cond > 0) and np.all(d.step_error >= 0)
    # a caption changes the conditional loss only
    assert not np.allclose(evs[0].diffusion.loss_cond, evs[0].diffusion.loss_uncond)
    again = _load(audioldm_eps).evidence(CLIPS, CFG)
    for a, b in zip(evs, again):
        np.testing.assert_array_equal(a.diffusion.loss_cond, b.diffusion.loss_cond)
        np.testing.assert_array_equal(a.diffusion.step_error, b.diffusion.step_error)
    other_seed = tgt.evidence(CLIPS[:1], EvidenceConfig(timesteps=(50, 400), n_noise=2, seed=4))[0]
    assert not np.allclose(other_seed.diffusion.loss_cond, evs[0].diffusion.loss_cond)


@pytest.mark.parametrize("fixture", ["audioldm_eps", "audioldm_v", "musicldm_eps", "audioldm2_eps"])
def test_batched_equals_unbatched(fixture, request):
    tgt = _load(request.getfixturevalue(fixture))
    full = tgt.evidence(CLIPS, CFG, batch_size=3)
    single = tgt.evidence(CLIPS, CFG, batch_size=1)
    for a, b in zip(full, single):
        for f in ("loss_cond", "loss_uncond", "step_error"):
            np.testing.assert_allclose(getattr(a.diffusion, f), getattr(b.diffusion, f), rtol=1e-4, atol=1e-6)


def _hand_losses(folder: Path, clip: ClipInput, t: int, caption: str, kind: str) -> np.ndarray:
    """Loss at one timestep from the pipeline's own pieces: vocoder-config mel, VAE mean,
    ``scheduler.add_noise`` / ``get_velocity``, the UNet with the pipeline's text embeddings."""
    import diffusers

    cls = getattr(diffusers, json.loads((folder / "model_index.json").read_text())["_class_name"])
    pipe = cls.from_pretrained(str(folder), use_safetensors=True)
    voc = pipe.vocoder.config
    spec = MelSpec(sr=voc.sampling_rate, n_fft=N_FFT, hop_length=int(np.prod(voc.upsample_rates)), win_length=N_FFT,
                   n_mels=voc.model_in_dim, fmin=0.0, fmax=voc.sampling_rate / 2)
    mel = log_mel(clip.audio, spec=spec, n_frames=N_FRAMES)[None, None]
    with torch.no_grad():
        x0 = pipe.vae.encode(mel).latent_dist.mean * pipe.vae.config.scaling_factor
        tok = pipe.tokenizer([caption], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        if kind == "audioldm":
            emb = pipe.text_encoder(tok.input_ids, attention_mask=tok.attention_mask).text_embeds
            cond = {"encoder_hidden_states": None, "class_labels": torch.nn.functional.normalize(emb, dim=-1)}
        elif kind == "musicldm":
            emb = pipe.text_encoder.get_text_features(tok.input_ids, attention_mask=tok.attention_mask).pooler_output
            cond = {"encoder_hidden_states": None, "class_labels": emb}
        else:
            emb, mask, gen = pipe.encode_prompt(caption, "cpu", 1, False)
            cond = {"encoder_hidden_states": gen, "encoder_hidden_states_1": emb, "encoder_attention_mask_1": mask}
        eps = clip_noise(clip.clip_hash, seed=CFG.seed, n=CFG.n_noise, shape=tuple(x0.shape[1:]))
        tt = torch.tensor([t])
        out = []
        for k in range(CFG.n_noise):
            x_t = pipe.scheduler.add_noise(x0, eps[k : k + 1], tt)
            target = eps[k : k + 1] if pipe.scheduler.config.prediction_type == "epsilon" else (
                pipe.scheduler.get_velocity(x0, eps[k : k + 1], tt))
            pred = pipe.unet(x_t, tt, **cond).sample
            out.append(float(((pred - target) ** 2).mean()))
    return np.array(out)


@pytest.mark.parametrize("fixture,kind", [("audioldm_eps", "audioldm"), ("audioldm_v", "audioldm"),
                                          ("musicldm_eps", "musicldm"), ("audioldm2_eps", "audioldm2")])
def test_loss_matches_hand_computation(fixture, kind, request):
    folder = request.getfixturevalue(fixture)
    tgt = _load(folder)
    ev = tgt.evidence(CLIPS[:1], CFG)[0].diffusion
    for j, t in enumerate(CFG.timesteps):
        np.testing.assert_allclose(ev.loss_cond[j], _hand_losses(folder, CLIPS[0], t, CLIPS[0].text, kind), rtol=1e-4)
        np.testing.assert_allclose(ev.loss_uncond[j], _hand_losses(folder, CLIPS[0], t, "", kind), rtol=1e-4)


def test_v_prediction_differs_from_epsilon(audioldm_eps, audioldm_v):
    e = _load(audioldm_eps).evidence(CLIPS[:1], CFG)[0].diffusion
    v = _load(audioldm_v).evidence(CLIPS[:1], CFG)[0].diffusion
    assert _load(audioldm_v).prediction_type == "v_prediction"
    assert not np.allclose(e.loss_cond, v.loss_cond)


def test_step_error_matches_ddim_round_trip(audioldm_eps):
    """The step error equals a DDIM step down and a DDIM inversion step up, done by hand."""
    tgt = _load(audioldm_eps)
    clip = CLIPS[0]
    t, s = 400, 390
    ev = tgt.evidence([clip], EvidenceConfig(timesteps=(t,), n_noise=1, seed=CFG.seed))[0].diffusion
    pipe = tgt.pipe
    with torch.no_grad():
        x0 = tgt.latents([clip]).float()
        eps = clip_noise(clip.clip_hash, seed=CFG.seed, n=1, shape=tuple(x0.shape[1:]))
        emb = tgt.conditioning([clip.text])
        ac = pipe.scheduler.alphas_cumprod
        x_t = ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * eps
        e_t = pipe.unet(x_t, torch.tensor([t]), **emb).sample
        x0_hat = (x_t - (1 - ac[t]).sqrt() * e_t) / ac[t].sqrt()
        x_s = ac[s].sqrt() * x0_hat + (1 - ac[s]).sqrt() * e_t
        e_s = pipe.unet(x_s, torch.tensor([s]), **emb).sample
        x0_s = (x_s - (1 - ac[s]).sqrt() * e_s) / ac[s].sqrt()
        back = ac[t].sqrt() * x0_s + (1 - ac[t]).sqrt() * e_s
    np.testing.assert_allclose(ev.step_error[0], float(((back - x_t) ** 2).mean()), rtol=1e-4)


def test_pia_matches_its_definition(audioldm_eps):
    """PIA on the latents, by hand: eps_0 from the UNet at t = 0 on the clean latent, x_t built
    with it, the l4 power sum of the two noise estimates' gap."""
    tgt = _load(audioldm_eps)
    clip = CLIPS[1]
    ts = (50, 400)
    ev = tgt.evidence([clip], EvidenceConfig(timesteps=ts, n_noise=1, seed=CFG.seed, pia=True))[0].diffusion
    pipe = tgt.pipe
    with torch.no_grad():
        x0 = tgt.latents([clip]).float()
        emb = tgt.conditioning([clip.text])
        ac = pipe.scheduler.alphas_cumprod
        e0 = pipe.unet(x0, torch.tensor([0]), **emb).sample
        for j, t in enumerate(ts):
            x_t = ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * e0
            e_t = pipe.unet(x_t, torch.tensor([t]), **emb).sample
            np.testing.assert_allclose(ev.pia[j], float(((e_t - e0).double().abs() ** 4).sum()), rtol=1e-4)
    assert tgt.evidence([clip], EvidenceConfig(timesteps=ts, n_noise=1, seed=CFG.seed))[0].diffusion.pia.size == 0


def test_latent_sample_mode_is_seeded(audioldm_eps):
    tgt = _load(audioldm_eps, latent="sample")
    a = tgt.latents(CLIPS[:2], seed=0)
    b = tgt.latents(CLIPS[:2], seed=0)
    mean = _load(audioldm_eps).latents(CLIPS[:2])
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, mean)


def test_out_of_memory_halves_batch(audioldm_eps):
    tgt = _load(audioldm_eps)
    sizes: list[int] = []
    inner = tgt._batch

    def limited(chunk, *a):
        sizes.append(len(chunk))
        if len(chunk) > 1:
            raise torch.OutOfMemoryError("simulated")
        return inner(chunk, *a)

    tgt._batch = limited
    evs = tgt.evidence(CLIPS, CFG, batch_size=4)
    assert sizes[:3] == [3, 2, 1] and len(evs) == 3
    ref = _load(audioldm_eps).evidence(CLIPS, CFG)
    np.testing.assert_allclose(evs[2].diffusion.loss_cond, ref[2].diffusion.loss_cond, rtol=1e-4)


# ---------------------------------------------------------------- loading rules


def test_refuses_bin_only_weights(tmp_path, audioldm_eps):
    import shutil

    folder = shutil.copytree(audioldm_eps, tmp_path / "bin")
    for p in (folder / "unet").glob("*.safetensors"):
        p.rename(p.with_name("diffusion_pytorch_model.bin"))
    with pytest.raises(ValueError, match="safetensors only.*unet/"):
        check_safetensors(folder)
    with pytest.raises(ValueError, match="safetensors only"):
        load_pipeline_target(folder, device="cpu")


def test_refuses_stable_audio_and_unknown(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableAudioPipeline"}))
    with pytest.raises(ValueError, match="StableAudioPipeline is not supported.*v-objective"):
        load_pipeline_target(tmp_path, device="cpu")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="valid: AudioLDM2Pipeline, AudioLDMPipeline, MusicLDMPipeline"):
        load_pipeline_target(tmp_path, device="cpu")
    with pytest.raises(ValueError, match="no model_index.json"):
        load_pipeline_target(tmp_path / "nope", device="cpu")


def test_rejects_bad_options(audioldm_eps):
    with pytest.raises(ValueError, match="unknown options"):
        load_pipeline_target(audioldm_eps, device="cpu", n_frame=8)
    with pytest.raises(ValueError, match="multiple of the VAE"):
        load_pipeline_target(audioldm_eps, device="cpu", n_frames=15, n_fft=N_FFT)
    with pytest.raises(ValueError, match="too short"):
        load_pipeline_target(audioldm_eps, device="cpu", n_frames=N_FRAMES)
    tgt = _load(audioldm_eps)
    with pytest.raises(ValueError, match="outside"):
        tgt.evidence(CLIPS[:1], EvidenceConfig(timesteps=(1000,)))


def test_audioldm2_bare_gpt2_folder_matches(tmp_path, audioldm2_eps):
    """Published AudioLDM2 folders declare a bare GPT2Model; it loads and scores the same."""
    bare = build_audioldm2(tmp_path / "bare", lm_cls=GPT2Model)
    assert json.loads((bare / "model_index.json").read_text())["language_model"][1] == "GPT2Model"
    a = _load(bare).evidence(CLIPS[:1], CFG)[0].diffusion
    b = _load(audioldm2_eps).evidence(CLIPS[:1], CFG)[0].diffusion
    np.testing.assert_allclose(a.loss_cond, b.loss_cond, rtol=1e-5)
    np.testing.assert_allclose(a.loss_uncond, b.loss_uncond, rtol=1e-5)
