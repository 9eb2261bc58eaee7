"""Shadow references of released-checkpoint layouts: MusicGen, chat audio-language models
(Qwen2-Audio) and diffusers pipelines (AudioLDM), fully fine-tuned and with LoRA.

The public bases are tiny random-weight checkpoints built from configs and saved with
``save_pretrained`` (the builders of the adapters' own tests); the audited dataset is the
12 transcribed tones of :func:`tests.conftest.transcribed_tones` (each clip's text serves as
the transcript or the caption). For each layout:

- a build on 4 drawn non-members runs through :func:`core.pipeline.reference.build_shadow`,
  which picks the objective from the folder's layout; the training loss falls over the
  epochs, and the shadow fits those clips better than its base by the audit's own measure
  (mean token NLL in given mode, or the conditional denoising loss at fixed timesteps and
  noise draws);
- its card names the family, the objective, the recipe and exactly the clips drawn; the
  folder loads back as a target of the same adapter and family and scores clips; the parts
  the objective freezes (MusicGen's T5 and codec, AudioLDM's VAE, vocoder and text encoder)
  are saved unchanged;
- a LoRA build (``--lora-rank`` through the CLI) changes the weights, records its settings
  on the card and saves an ordinary checkpoint: the base's weight names and shapes, no
  adapter weights, loadable as a target of the same family.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.runtime.store import Workspace
from tests.conftest import transcribed_tones
from tests.test_shadow import _card_of_drawn, _cli, _inputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LAYOUTS = {
    # layout: (family, adapter class name, learning rate, files of parts the objective freezes)
    "musicgen": ("autoregressive", "MusicgenTarget", 3e-3, ("text_encoder.", "audio_encoder.")),
    "qwen2_audio": ("audio-language", "ChatLALMTarget", 3e-3, ()),
    "audioldm": ("diffusion", "DiffusersAudioTarget", 1e-2, ("vae/", "vocoder/", "text_encoder/")),
}
LOSS_CONFIG = {"timesteps": (50, 200, 400, 700), "n_noise": 4, "seed": 0}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return transcribed_tones(tmp_path_factory.mktemp("ckpt-shadow"))


def _build_base(layout: str, path: Path) -> Path:
    if layout == "musicgen":
        from tests.test_targets_musicgen import build

        return build(path)
    if layout == "qwen2_audio":
        from tests.test_targets_real_lalm import build as build_chat

        return build_chat("qwen2_audio", path)
    from diffusers import AudioLDMPipeline
    from transformers import ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    from tests.test_targets_diffusers import N_MELS, SR, _clap_text_config, _shared_components

    comps = _shared_components("epsilon")
    comps["text_encoder"] = ClapTextModelWithProjection(_clap_text_config())
    # a hop of 64 samples, so the default 1024-point mel front end fits the 16 frames (a build
    # loads its base with the default loader options)
    comps["vocoder"] = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=N_MELS, sampling_rate=SR, upsample_initial_channel=8, upsample_rates=[8, 8],
        upsample_kernel_sizes=[16, 16], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]], normalize_before=False))
    AudioLDMPipeline(**comps).save_pretrained(str(path), safe_serialization=True)
    return path


def _recipe(layout: str, **extra):
    from core.recipes.shadow import ShadowRecipe

    return ShadowRecipe(epochs=4, lr=LAYOUTS[layout][2], batch_size=2, seed=3, **extra)


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def built(request, ws, tmp_path_factory):
    """(layout, base folder, shadow folder, card) of a full fine-tuning on 4 drawn non-members."""
    from core.pipeline.reference import build_shadow

    layout = request.param
    root = tmp_path_factory.mktemp(layout)
    base = _build_base(layout, root / "base")
    shadow = root / "shadow"
    card = build_shadow(ws, "tiny", str(base), shadow, n_nonmembers=4, recipe=_recipe(layout))
    return layout, base, shadow, card


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {f"{p.relative_to(folder).parent}/{k}".lstrip("./"): v for p in sorted(folder.rglob("*.safetensors"))
            for k, v in load_file(str(p)).items()}


def _losses(target, clips) -> np.ndarray:
    """Per-clip loss the audit reads: mean token NLL (given mode), or mean conditional denoising loss."""
    from core.targets import EvidenceConfig

    ev = target.evidence(clips, EvidenceConfig(mode="given", **LOSS_CONFIG))
    return np.array([-np.mean(e.tokens.logprob) if e.tokens is not None else e.diffusion.loss_cond.mean() for e in ev])


def _trained_clips(ws: Workspace, hashes: list[str]):
    return _inputs(ws, ws.analysis_clips("tiny").set_index("clip_hash").loc[hashes].reset_index())


def test_the_objective_is_picked_by_the_folders_layout(built):
    from core.pipeline.reference import check_supported
    from core.recipes.shadow_objectives import objective_for_folder, objectives_for
    from core.targets import resolve_target

    layout, base, shadow, _ = built
    family = LAYOUTS[layout][0]
    assert len(objectives_for(family)) == 2  # a zoo layout and a released-checkpoint layout share each family
    objective = check_supported(resolve_target(str(base)))
    assert objective.family == family and objective is objective_for_folder(family, shadow)
    assert objective.name == {"musicgen": "musicgen", "qwen2_audio": "chat-lalm", "audioldm": "diffusers"}[layout]


def test_the_shadow_card_names_the_recipe_and_the_drawn_clips_and_loads_back(ws, built):
    from core.recipes.shadow_objectives import objective_of
    from core.targets import load_target, resolve_target

    layout, base, shadow, card = built
    family, adapter, lr, _ = LAYOUTS[layout]
    _, card_on_disk = _card_of_drawn(ws, "tiny", shadow, card)
    assert card_on_disk == card
    base_target = load_target(str(base))
    assert card["kind"] == "shadow-reference" and card["family"] == family
    assert card["objective"] == objective_of(base_target).describe and card["base"]["fingerprint"] == base_target.fingerprint
    assert card["recipe"] == {"epochs": 4, "lr": lr, "batch_size": 2, "seed": 3, "weight_decay": 0.01, "threads": 1,
                              "lora_rank": 0, "lora_alpha": 16}
    assert "full fine-tuning" in card["architecture"] and "lora" not in card and card["n_clips"] == 4
    assert not (shadow / ".partial").exists() and not list(shadow.rglob("*.bin"))
    assert resolve_target(str(shadow)).family == family
    loaded = load_target(str(shadow))
    assert type(loaded).__name__ == adapter and loaded.family == family and loaded.fingerprint != base_target.fingerprint
    other = _inputs(ws, ws.analysis_clips("tiny").iloc[:2])  # it scores clips like any target of its family
    assert np.isfinite(_losses(loaded, other)).all()


def test_the_loss_falls_and_the_shadow_fits_its_clips_better_than_its_base(ws, built):
    from core.targets import load_target

    layout, base, shadow, card = built
    losses = card["loss_per_epoch"]
    assert len(losses) == 4 and card["train_time_s"] > 0
    if LAYOUTS[layout][0] != "diffusion":  # a diffusion epoch's loss is drawn at random timesteps: read the audit's instead
        assert losses[-1] < losses[0], losses
    trained = _trained_clips(ws, card["trained_clip_hashes"])
    before, after = _losses(load_target(str(base)), trained), _losses(load_target(str(shadow)), trained)
    assert after.mean() < 0.95 * before.mean(), (before, after)


def test_the_frozen_parts_are_saved_unchanged_and_the_trained_ones_move(built):
    layout, base, shadow, _ = built
    frozen = LAYOUTS[layout][3]
    a, b = _weights(base), _weights(shadow)
    assert a.keys() == b.keys()
    moved = {k for k in a if not np.array_equal(a[k], b[k])}
    assert moved and all(not any(k.startswith(f) or f".{f}" in f".{k}" for f in frozen) for k in moved), sorted(moved)[:5]
    for f in frozen:
        assert any(k.startswith(f) or f".{f}" in f".{k}" for k in a), f  # the frozen part is there, and unchanged


def test_a_lora_build_changes_the_weights_and_saves_a_merged_loadable_checkpoint(ws, built, tmp_path):
    from core.targets import load_target

    layout, base, _, _ = built
    family, adapter, lr, frozen = LAYOUTS[layout]
    out = tmp_path / "lora"
    js = json.loads(_cli(ws, "reference", "build", "--base", str(base), "--dataset", "tiny", "--nonmembers", "4",
                         "--out", str(out), "--epochs", "3", "--lr", str(10 * lr), "--batch-size", "2", "--seed", "3",
                         "--lora-rank", "4", "--lora-alpha", "8", "--json"))
    card = json.loads((out / "card.json").read_text())
    assert card["recipe"]["lora_rank"] == 4 and card["recipe"]["lora_alpha"] == 8
    lora = card["lora"]
    assert lora["rank"] == 4 and lora["alpha"] == 8 and lora["merged"] is True and lora["layers"] > 0
    assert 0 < card["trained_param_count"] == lora["adapter_params"] < card["param_count"] / 2
    assert "LoRA fine-tuning at rank 4, alpha 8, of the" in card["architecture"] and "peft" in card["versions"]
    assert js["trained_clip_hashes"] == card["trained_clip_hashes"]
    from core.recipes.shadow import card_line

    assert card_line(card).startswith(f"shadow of {base} (fingerprint ") and ", LoRA rank 4;" in card_line(card)
    a, b = _weights(base), _weights(out)
    assert a.keys() == b.keys() and not [k for k in b if "lora" in k.lower()]
    assert all(a[k].shape == b[k].shape for k in a)
    moved = {k for k in a if not np.array_equal(a[k], b[k])}
    assert moved and all(not any(k.startswith(f) or f".{f}" in f".{k}" for f in frozen) for k in moved)
    assert all(k.endswith("weight") for k in moved)  # the adapters change linear weights only (no bias, no norm)
    loaded = load_target(str(out))
    assert type(loaded).__name__ == adapter and loaded.family == family
    assert np.isfinite(_losses(loaded, _trained_clips(ws, card["trained_clip_hashes"]))).all()


def test_a_lora_build_resumes_after_its_last_epoch_with_the_same_weights(ws, tmp_path):
    """From the adapters saved in its state (the base weights are the base's)."""
    from core.pipeline.reference import build_shadow

    base = _build_base("musicgen", tmp_path / "base")
    recipe = _recipe("musicgen", lora_rank=2)
    checks = [0]

    def cancel_in_epoch_two() -> bool:  # 2 batches an epoch: the third check opens epoch 2
        checks[0] += 1
        return checks[0] == 3

    with pytest.raises(InterruptedError):
        build_shadow(ws, "tiny", str(base), tmp_path / "resumed", n_nonmembers=4, recipe=recipe, cancelled=cancel_in_epoch_two)
    state = _weights(tmp_path / "resumed" / ".partial")
    assert state and all("lora_" in k for k in state if k.startswith("model/") or "/model/" in k)
    resumed = build_shadow(ws, "tiny", str(base), tmp_path / "resumed", n_nonmembers=4, recipe=recipe)
    whole = build_shadow(ws, "tiny", str(base), tmp_path / "whole", n_nonmembers=4, recipe=recipe)
    assert resumed["loss_per_epoch"] == whole["loss_per_epoch"] and resumed["request"] == whole["request"]
    a, b = _weights(tmp_path / "resumed"), _weights(tmp_path / "whole")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_full_fine_tuning_digests_are_unchanged_by_the_lora_settings():
    """A full fine-tune's request does not depend on the (unused) LoRA settings, so a build made
    before they existed resumes or is found done; a LoRA build is another request."""
    from core.recipes.shadow import ShadowRecipe, request_digest

    full = request_digest("fp", ShadowRecipe(), ["a", "b"])
    assert full == request_digest("fp", ShadowRecipe(lora_alpha=4), ["a", "b"])
    assert full != request_digest("fp", ShadowRecipe(lora_rank=8), ["a", "b"])
    with pytest.raises(ValueError, match="lora_rank >= 0"):
        ShadowRecipe(lora_rank=-1)
