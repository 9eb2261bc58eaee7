"""The diffusion domain-shift pair ``zoo:diffusion-shift-base`` / ``zoo:diffusion-shift-ft``.

The base never heard the audited domain: its pool was recorded through another chain
(``sound_pool(chain="phone-room")``), its patch normalization fitted on it, and its card
records every training clip. The fine-tune starts from its weights and keeps its scheduler
and patch normalization (as a latent diffusion fine-tune keeps its autoencoder), and trains
on clean in-domain pool clips, none sharing a caption with ``demo-sounds``, and on the 100
members.

The slow test is issue #30's comparison on this pair (``bench.measure_shadow
diffusion-shift`` without dataset inference): the shadow, ``diffusion-shift-base``
fine-tuned with the fine-tune's recipe on ``sound_0100``-``0149``, beats both the
uncalibrated audit and the one calibrated against the base on the members and
``sound_0150``-``0199`` (by less than the issue asks: the fine-tune memorizes its members
weakly, see docs/references.md), and the advisor, comparing the two models' denoising
losses on those 50 clips, asks for it first.
"""

from __future__ import annotations

import pytest

from core.recipes.zoo.data import demo_clips
from core.targets.fingerprint import file_sha256
from core.targets.zoo.registry import zoo_dir
from tests.test_zoo_shift_pairs import SOUNDS
from tests.test_zoo_shift_pairs import zoo_card as _card

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def test_the_base_never_heard_the_clean_chain():
    card = _card("diffusion-shift-base")
    data = card["training_data"]
    assert card["members"] == [] and data["members"] == "none"
    assert "chain='phone-room'" in data["pool"] and data["n_train_clips"] == data["pool_clips"]["n"]


def test_the_fine_tune_starts_from_the_base_keeps_its_scheduler_and_patch_and_trains_on_the_members():
    card, base = _card("diffusion-shift-ft"), _card("diffusion-shift-base")
    assert card["members"] == [c.clip_hash for c in demo_clips(SOUNDS, "member")]
    assert card["init_from"] == {"path": "diffusion-shift-base",
                                 "weights_sha256": file_sha256(zoo_dir() / "diffusion-shift-base" / UNET_WEIGHTS)}
    for f in ("patch.json", "scheduler/scheduler_config.json", "unet/config.json", "text_encoder/config.json"):
        assert (zoo_dir() / "diffusion-shift-ft" / f).read_bytes() == (zoo_dir() / "diffusion-shift-base" / f).read_bytes()
    data = card["training_data"]
    assert "chain" not in data["pool"] and data["n_train_clips"] == card["n_members"] + data["pool_clips"]["n"]
    assert card["recipe"]["lr"] <= base["recipe"]["lr"] and card["steps"] < base["steps"] and card["epochs"] < base["epochs"]


def test_micro_builds_of_the_pair(tmp_path):
    from core.recipes.zoo import get_trainer

    base = get_trainer("diffusion-shift-base")(tmp_path / "diffusion-shift-base", micro=True)
    ft = get_trainer("diffusion-shift-ft")(tmp_path / "diffusion-shift-ft", micro=True)
    assert base["micro"] and ft["micro"] and base["n_members"] == 0 and ft["n_members"] > 0
    assert ft["init_from"]["path"] == "diffusion-shift-base"
    assert (tmp_path / "diffusion-shift-ft" / "patch.json").read_text() == (tmp_path / "diffusion-shift-base" / "patch.json").read_text()


def test_a_fine_tune_of_another_architecture_is_refused(tmp_path):
    from dataclasses import replace

    from core.recipes.zoo import diffusion

    base = tmp_path / "diffusion-shift-base"
    diffusion.train_shift_base(base, micro=True)
    with pytest.raises(ValueError, match="does not have the recipe's architecture"):
        diffusion.build("x", tmp_path / "x", recipe=replace(diffusion.SHIFT_FT, prediction_type="v_prediction"), micro=True,
                        init=base)


@pytest.mark.measurement  # builds a shadow and scores 200 clips with three diffusion models: about 10 min on 2 cores
@pytest.mark.timeout(2400)
def test_a_shadow_of_the_base_beats_the_base_and_no_reference_and_the_advisor_says_so(tmp_path, torch_one_thread):
    from bench.measure_shadow import _paths, hashes_of, shift_recipe, split_dataset
    from core.pipeline import MIAConfig, audit_mia, load_demo
    from core.pipeline.reference import advise_reference, build_shadow
    from core.runtime.store import Workspace

    ws = Workspace(tmp_path / "ws")
    load_demo(ws, names=(SOUNDS,))
    split = split_dataset(ws, "demo-sounds-split", SOUNDS)
    clips = hashes_of(ws, SOUNDS, _paths(100, 150, SOUNDS))
    target, base, shadow = "zoo:diffusion-shift-ft", "zoo:diffusion-shift-base", tmp_path / "shadow"
    advice = advise_reference(ws, SOUNDS, target, base, clip_hashes=clips)
    assert advice["recommendation"] == "shadow" and "denoising MSE" in advice["reason"], advice["reason"]
    card = build_shadow(ws, SOUNDS, base, shadow, recipe=shift_recipe("diffusion"), clip_hashes=clips)
    assert card["n_clips"] == 50 and card["base"]["spec"] == base
    auc = {label: audit_mia(ws, split, target, MIAConfig(references=refs, n_perm=0, n_boot=20))[1]["auc"]
           for label, refs in (("none", ()), ("base", (base,)), ("shadow", (str(shadow),)))}
    # measured 0.608 / 0.618 / 0.656 (bench.measure_shadow diffusion-shift)
    assert auc["shadow"] >= auc["none"] + 0.03 and auc["shadow"] >= auc["base"] + 0.02, auc
