"""Generation at the outputs access level: the zoo text-to-audio targets generate by themselves
(the TTA resynthesis reads the same samples as before), the output metrics against slow
computations written from their definitions, CLAP audio similarity against the model's own
embeddings, and MIA through the pipeline on a demo-sounds subset from generations alone."""

from __future__ import annotations


import librosa
import numpy as np
import pytest
import torch

from core.data.similarity import audio_similarity, generated_span
from core.pipeline import MIAConfig, audit_mia
from core.runtime.store import Workspace
from core.targets import load_target
from core.targets.base import AudioGenerator, access_levels
from core.targets.codebook import mel_filters
from tests.conftest import demo_workspace

SR = 16000
CAPTION = "A bright low ringing bell strike at 139 Hz, long and loud."
OTHER = "A hissing burst of white noise band-passed around 919 Hz (mid-range), short and loud."


@pytest.fixture(scope="module")
def diffusion(torch_one_thread):
    return load_target("zoo:diffusion-small")


@pytest.fixture(scope="module")
def ar(torch_one_thread):
    return load_target("zoo:ar-small")


# -- the mel-patch diffusion target ------------------------------------------------------------
def _reference_patches(target, captions, seeds, steps, guidance):
    """DDIM with classifier-free guidance written out step by step (eta = 0):
    x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps,
    with eps = uncond + guidance (cond - uncond) and the "leading" timestep spacing."""
    n_train = int(target.scheduler.config.num_train_timesteps)
    ts = (np.arange(steps) * (n_train // steps))[::-1]
    ac = target.scheduler.alphas_cumprod
    p = target.patch
    x = torch.stack([torch.randn((1, p.mel.n_mels, p.n_frames), generator=torch.Generator().manual_seed(s)) for s in seeds])
    b = len(captions)
    with torch.inference_mode():
        states, mask = target.conditioner(list(captions) + [""] * b)
        for t in ts:
            out = target.unet(x.repeat(2, 1, 1, 1), torch.full((2 * b,), int(t)), encoder_hidden_states=states,
                              encoder_attention_mask=mask).sample
            cond, uncond = out.chunk(2)
            eps = uncond + guidance * (cond - uncond)
            prev = int(t) - n_train // steps
            a_t, a_p = ac[int(t)], (ac[prev] if prev >= 0 else torch.tensor(1.0))  # DDIM's final alpha is one
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            x = a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps
    return x[:, 0].numpy() * p.std + p.mean


def _reference_audio(log_mel, mel, n_samples, seed, hop=256, n_iter=32):
    """The inversion as the TTA resynthesis has always done it: mel power interpolated onto a
    256-sample grid, pseudo-inverse of the filterbank, seeded Griffin-Lim, peak 0.5."""
    power = np.maximum(np.exp(log_mel.astype(np.float64)) - mel.floor, 0.0)
    src = np.arange(power.shape[1]) * mel.hop_length
    dst = np.arange(1 + n_samples // hop) * hop
    fine = np.stack([np.interp(dst, src, row) for row in power]).astype(np.float32)
    mag = np.sqrt(np.maximum(np.linalg.pinv(mel_filters(mel).numpy()) @ fine, 0.0))
    audio = librosa.griffinlim(mag, n_iter=n_iter, hop_length=hop, win_length=mel.n_fft, n_fft=mel.n_fft,
                               length=n_samples, random_state=np.random.RandomState(seed % 2**32))
    return (audio / np.abs(audio).max() * 0.5).astype(np.float32)


def test_diffusion_generate_follows_ddim_and_the_tta_resynthesis_reads_it(diffusion) -> None:
    from core.disentangle.tta import render_captions

    caps, seeds, lengths = [CAPTION, OTHER], [11, 12], [20000, 30000]
    ref = _reference_patches(diffusion, caps, seeds, steps=3, guidance=3.0)
    from core.targets.synthesis import sample_mel_patches

    np.testing.assert_allclose(sample_mel_patches(diffusion, caps, seeds=seeds, steps=3, guidance=3.0), ref, rtol=1e-4, atol=1e-3)
    out = diffusion.generate(caps, n_samples=lengths, sr=SR, seeds=seeds, steps=3)
    for o, n, s, p in zip(out, lengths, seeds, sample_mel_patches(diffusion, caps, seeds=seeds, steps=3, guidance=3.0)):
        assert o.dtype == np.float32 and o.shape == (n,)
        np.testing.assert_array_equal(o, _reference_audio(p, diffusion.patch.mel, n, s))  # at 16 kHz: no resampling
    # the TTA variant renders exactly what the target generates
    tta = render_captions(caps, n_samples=lengths, sr=SR, seeds=seeds, generator="zoo:diffusion-small", steps=3)
    for a, b in zip(tta, out):
        np.testing.assert_array_equal(a, b)


def test_diffusion_generate_is_seeded_and_fits_the_length(diffusion) -> None:
    n = 4 * SR  # longer than the 3 s patch: silence after it
    a, b, c = diffusion.generate([CAPTION] * 3, n_samples=[n] * 3, sr=SR, seeds=[5, 5, 6], steps=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    patch_len = diffusion.patch.n_frames * diffusion.patch.mel.hop_length
    assert a.shape == (n,) and np.abs(a[:patch_len]).max() == pytest.approx(0.5) and not a[patch_len:].any()
    (half,) = diffusion.generate([CAPTION], n_samples=[n], sr=SR // 2, seeds=[5], steps=2)
    assert half.shape == (n,) and half.dtype == np.float32 and not half[patch_len // 2:].any()
    with pytest.raises(ValueError, match="one each"):
        diffusion.generate([CAPTION], n_samples=[n, n], sr=SR, seeds=[1])


# -- the autoregressive target -----------------------------------------------------------------
def test_ar_generate_samples_codes_after_the_caption(ar) -> None:
    lay = ar.layout
    codes = ar.sample_codes(CAPTION, seeds=[1, 2, 3], max_frames=60)
    assert all(c.dtype == np.int64 and len(c) <= 60 and ((c >= 0) & (c < lay.n_codes)).all() for c in codes)
    # a sequence depends on its caption and seed only
    np.testing.assert_array_equal(ar.sample_codes(CAPTION, seeds=[2], max_frames=60)[0], codes[1])
    assert not all(np.array_equal(codes[0], c) for c in codes[1:])
    # the first code follows the model's distribution after [caption, SEP]: an unlikely code is rarely drawn
    with torch.no_grad():
        ids = torch.tensor([lay.vocab.encode(CAPTION) + [lay.sep]])
        probs = torch.softmax(ar.model(input_ids=ids).logits[0, -1, lay.audio_offset : lay.audio_eos + 1], -1).numpy()
    firsts = [c[0] for c in ar.sample_codes(CAPTION, seeds=list(range(40)), max_frames=1)]
    assert np.mean(probs[firsts]) > np.mean(probs[: lay.n_codes])
    # a lower temperature concentrates on the most likely code
    cold = [c[0] for c in ar.sample_codes(CAPTION, seeds=list(range(10)), max_frames=1, temperature=0.01)]
    assert set(cold) == {int(np.argmax(probs[: lay.n_codes + 1]))}
    with pytest.raises(ValueError, match="temperature"):
        ar.sample_codes(CAPTION, seeds=[1], max_frames=1, temperature=0.0)


def test_ar_generate_inverts_the_codes_centroids(ar) -> None:
    cb = ar.codebook
    codes = np.array([3, 3, 7, 0])
    expected = (cb.centroids[codes] * cb.std + cb.mean).numpy().T
    np.testing.assert_allclose(ar.codes_to_log_mel(codes), expected, rtol=1e-6)
    n = 2 * SR
    a, b, c = ar.generate([CAPTION, CAPTION, CAPTION], n_samples=[n, n, n], sr=SR, seeds=[4, 4, 9])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (n,) and a.dtype == np.float32 and not np.array_equal(a, c)
    (codes4,) = ar.sample_codes(CAPTION, seeds=[4], max_frames=1 + n // cb.mel.hop_length)
    n_gen = min(n, len(codes4) * cb.mel.hop_length)
    np.testing.assert_array_equal(a[:n_gen], _reference_audio(ar.codes_to_log_mel(codes4), cb.mel, n_gen, 4))
    assert not a[n_gen:].any()


def test_zoo_text_to_audio_targets_offer_outputs_access(diffusion, ar) -> None:
    for t in (diffusion, ar):
        assert isinstance(t, AudioGenerator) and access_levels(t) == ("white-box", "outputs")


# -- output metrics ----------------------------------------------------------------------------
def _stft_power(x, n_fft, hop):
    """|rfft|^2 of centered periodic-Hann frames, written as a loop."""
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    xp = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [np.abs(np.fft.rfft(xp[i * hop : i * hop + n_fft] * win)) ** 2 for i in range(1 + (len(xp) - n_fft) // hop)]
    return np.stack(frames, axis=1)


def slow_similarity(orig, gen, sr, n_fft=1024, hop=256, n_mels=64):
    """The metrics from their definitions (see core.data.similarity)."""
    y = np.asarray(gen, np.float64)
    peak = np.abs(y).max()
    last = max((i for i in range(len(y)) if abs(y[i]) > peak * 1e-3), default=-1) if peak > 0 else -1
    n = min(len(orig), last + 1)
    x, y = np.asarray(orig[:n], np.float64), y[:n]
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)

    def norm_mel(z):
        db = 10 * np.log10(np.maximum(fb @ _stft_power(z, n_fft, hop), 1e-10))
        db = np.maximum(db, db.max() - 80)
        return (db - db.mean()) / db.std()

    chroma_fb = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0)
    px = (chroma_fb @ _stft_power(x, n_fft, hop)).sum(1)
    py = (chroma_fb @ _stft_power(y, n_fft, hop)).sum(1)
    return {"mel_dist": float(np.mean(np.abs(norm_mel(x) - norm_mel(y)))),
            "chroma_sim": float(px @ py / np.linalg.norm(px) / np.linalg.norm(py))}


def _chirp(n, f0, f1, seed=0):
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / t[-1] / 2) * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("n_orig,n_gen,pad", [(24000, 24000, 0), (30000, 18000, 12000), (9000, 20000, 0), (500, 700, 0)])
def test_audio_similarity_matches_its_definition(n_orig, n_gen, pad) -> None:
    orig = _chirp(n_orig, 200, 900)
    gen = np.pad(_chirp(n_gen, 300, 700, seed=1), (0, pad))
    got, ref = audio_similarity(orig, gen, SR), slow_similarity(orig, gen, SR)
    assert got["mel_dist"] == pytest.approx(ref["mel_dist"], rel=1e-4)
    assert got["chroma_sim"] == pytest.approx(ref["chroma_sim"], rel=1e-5)


def test_audio_similarity_ignores_gain_and_padding_and_ranks_the_copy_first() -> None:
    orig = _chirp(24000, 200, 900)
    copy = audio_similarity(orig, np.pad(0.5 * orig, (0, 8000)), SR)
    assert copy["mel_dist"] == pytest.approx(0.0, abs=1e-5) and copy["chroma_sim"] == pytest.approx(1.0)
    other = audio_similarity(orig, _chirp(24000, 1200, 3000, seed=2), SR)
    assert other["mel_dist"] > 0.3 and other["chroma_sim"] < copy["chroma_sim"]
    assert generated_span(np.r_[np.ones(10), np.zeros(5)]) == 10 and generated_span(np.zeros(4)) == 0
    assert generated_span(np.r_[np.ones(10), np.nan]) == 0
    silent = audio_similarity(orig, np.zeros(24000, np.float32), SR)
    assert np.isnan(silent["mel_dist"]) and np.isnan(silent["chroma_sim"])


# -- CLAP ----------------------------------------------------------------------------------------
def test_clap_audio_similarity_is_the_cosine_of_the_models_audio_embeddings(tmp_path) -> None:
    from transformers import ClapFeatureExtractor, ClapModel

    from core.targets.clap import clap_audio_similarity
    from tests.test_resynthesis import build_clap

    folder = build_clap(tmp_path / "clap")
    sr = 22050  # resampled to the extractor's 16 kHz
    rng = np.random.default_rng(0)
    originals = [rng.standard_normal(int(s * sr)).astype(np.float32) * 0.1 for s in (0.5, 0.8, 0.6)]
    generated = [rng.standard_normal(int(s * sr)).astype(np.float32) * 0.1 for s in (0.5, 0.7, 0.6)]
    generated[2] = originals[2].copy()
    sims = clap_audio_similarity(str(folder), originals, generated, sr)
    model = ClapModel.from_pretrained(str(folder)).eval()
    fe = ClapFeatureExtractor.from_pretrained(str(folder))
    spans = [min(len(o), len(g)) for o, g in zip(originals, generated)]
    with torch.inference_mode():
        def emb(clips):
            res = [librosa.resample(c, orig_sr=sr, target_sr=SR) for c in clips]
            e = model.get_audio_features(**fe(res, sampling_rate=SR, return_tensors="pt"))
            return getattr(e, "pooler_output", e).numpy().astype(np.float64)
        a = emb([o[:n] for o, n in zip(originals, spans)])
        b = emb([g[:n] for g, n in zip(generated, spans)])
    ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(sims, ref, rtol=1e-4, atol=1e-5)
    assert sims[2] == pytest.approx(1.0)
    assert np.isnan(clap_audio_similarity(str(folder), [originals[0]], [np.zeros(100, np.float32)], sr)[0])
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text('{"model_type": "gpt2"}')
    for bad in (tmp_path / "gpt", tmp_path / "missing"):
        with pytest.raises(ValueError, match="not a CLAP checkpoint"):
            clap_audio_similarity(str(bad), originals[:1], generated[:1], sr)


# -- through the pipeline ----------------------------------------------------------------------
SMALL = dict(n_boot=50, n_perm=10, n_splits=4)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory, torch_one_thread) -> Workspace:
    return demo_workspace(tmp_path_factory.mktemp("generation"), 8, "demo-sounds", "sounds")


@pytest.mark.parametrize("target,steps,floor", [("zoo:ar-small", 1, 0.75), ("zoo:diffusion-small", 3, None)])
def test_mia_from_generations_alone(sounds: Workspace, target: str, steps: int, floor: float | None) -> None:
    cfg = MIAConfig(access="outputs", n_generations=2, gen_steps=steps, **SMALL)
    run_id, out = audit_mia(sounds, "sounds", target, cfg)
    run = sounds.load_run(run_id)
    table = sounds.run_table(run, "indicators")
    assert {"mel_dist@min", "mel_dist@mean", "chroma_sim@max", "chroma_sim@mean"} <= set(table.columns)
    assert not any(k.startswith(("min_k", "loss", "ppl")) for k in table.columns)  # nothing white-box was read
    assert out["access"] == "outputs" and len(table) == 16 and np.isfinite(table["mel_dist@min"]).sum() >= 12
    if floor is not None:  # ar-small reproduces its members' codes; diffusion-small's few-step samples do not
        assert out["auc"] >= floor
    _, again = audit_mia(sounds, "sounds", target, cfg)
    assert again["computed"] == 0 and again["auc"] == out["auc"]


def test_a_runs_generation_is_drawn_again_exactly_for_listening(sounds: Workspace) -> None:
    from core.data.audio import wav_bytes as wav
    from core.pipeline.outputs import generation_of

    cfg = MIAConfig(access="outputs", n_generations=2, gen_steps=1, **SMALL)
    run_id, _ = audit_mia(sounds, "sounds", "zoo:ar-small", cfg)
    run = sounds.load_run(run_id)
    table = sounds.run_table(run, "indicators")
    h = table.index[0]
    drawn = [generation_of(sounds, run, h, i) for i in range(2)]
    audio, sr, _ = drawn[0]
    assert sr == 16000 and audio.dtype == np.float32 and len(wav(audio, sr)) > 44
    dists = [sim["mel_dist"] for _, _, sim in drawn]
    # the same seeds as the run: what the run measured is what the auditor hears
    assert min(dists) == pytest.approx(table.loc[h, "mel_dist@min"], rel=1e-5)
    assert np.mean(dists) == pytest.approx(table.loc[h, "mel_dist@mean"], rel=1e-5)
    with pytest.raises(ValueError, match="generation 3 does not exist"):
        generation_of(sounds, run, h, 2)
    white_id, _ = audit_mia(sounds, "sounds", "zoo:ar-small", MIAConfig(**SMALL))
    with pytest.raises(ValueError, match="did not generate audio"):
        generation_of(sounds, sounds.load_run(white_id), h, 0)


def _player_page(root: str, run_id: str, clip_hash: str) -> None:
    from core.runtime.store import Workspace
    from core.ui import mia_view

    ws = Workspace(root)
    mia_view._generation_player(ws, ws.load_run(run_id), clip_hash)


def test_the_mia_page_plays_a_generation_on_request(sounds: Workspace) -> None:
    from streamlit.testing.v1 import AppTest

    run_id, _ = audit_mia(sounds, "sounds", "zoo:ar-small", MIAConfig(access="outputs", n_generations=2, gen_steps=1, **SMALL))
    h = sounds.run_table(sounds.load_run(run_id), "indicators").index[0]
    at = AppTest.from_function(_player_page, args=(str(sounds.root), run_id, h), default_timeout=120)
    at.run()
    assert not at.exception and not at.get("audio")  # nothing is generated until asked
    at.number_input(key=f"gen-index-{run_id}").set_value(2).run()
    at.button(key=f"gen-go-{run_id}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.get("audio")) == 1
    assert any("Generation 2 of 2" in c.value and "mel_dist" in c.value for c in at.caption)
