"""Shadow references of the text-to-audio families (:mod:`core.recipes.shadow_objectives`).

The public bases are micro builds of the zoo's references (``ar-ref`` and
``diffusion-ref`` with ``micro=True``: the zoo's layouts and recipes at seconds-long
scale, trained on generated sound-pool clips, never a demo clip); the audited dataset is
8 members and 8 non-members of ``demo-sounds``. For each family the shadow is built once,
through the CLI, on 4 non-members:

- it is a checkpoint folder that loads as a target of the base's family, and its card
  names the family, the base, the objective and exactly the clips drawn;
- it fits those clips better than its base (the audit's own loss: mean token NLL of the
  audio codes for the autoregressive model, the conditional denoising loss at fixed
  timesteps and noise draws for the diffusion model);
- a build interrupted through ``cancelled`` resumes after its last finished epoch and
  ends with the weights of an uninterrupted one;
- an MIA run with it as reference leaves its clips out.

And the shipped ``zoo:ar-ref`` is a base as it is, through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.runtime.store import Workspace
from tests.conftest import demo_workspace
from tests.test_shadow import _card_of_drawn, _cli, _inputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = ["--n-boot", "20", "--n-perm", "0", "--n-splits", "2"]
RECIPE = ["--epochs", "4", "--lr", "0.003", "--batch-size", "2", "--seed", "3"]
FAMILIES = {"autoregressive": "ar-ref", "diffusion": "diffusion-ref"}
LOSS_CONFIG = {"timesteps": (10, 50, 100, 200, 500), "n_noise": 4, "seed": 0}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return demo_workspace(tmp_path_factory.mktemp("t2a-shadow"), 8, "demo-sounds", "sounds")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request, ws, tmp_path_factory):
    """(family, base folder, shadow folder, the CLI's JSON of the build)."""
    from core.recipes.zoo import get_trainer

    family = request.param
    root = tmp_path_factory.mktemp(family)
    base = root / "base"
    get_trainer(FAMILIES[family])(base, micro=True)
    shadow = root / "shadow"
    out = _cli(ws, "reference", "build", "--base", str(base), "--dataset", "sounds", "--nonmembers", "4", "--out", str(shadow),
               *RECIPE, "--json")
    return family, base, shadow, json.loads(out)


def _trained(ws: Workspace, hashes: list[str]):
    """The clips of ``hashes`` as the adapters read them."""
    return _inputs(ws, ws.analysis_clips("sounds").set_index("clip_hash").loc[hashes].reset_index())


def _losses(folder: Path, clips, config: dict | None = None) -> np.ndarray:
    """Per-clip loss the audit reads: mean audio-token NLL, or mean conditional denoising loss
    (at ``LOSS_CONFIG``'s timesteps and draws unless ``config`` says others)."""
    from core.targets import EvidenceConfig, load_target

    ev = load_target(str(folder)).evidence(clips, EvidenceConfig(mode="given", **(LOSS_CONFIG if config is None else config)))
    return np.array([-np.mean(e.tokens.logprob) if e.tokens is not None else e.diffusion.loss_cond.mean() for e in ev])


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {f"{p.relative_to(folder)}/{k}": v for p in sorted(folder.rglob("*.safetensors")) for k, v in load_file(str(p)).items()}


def test_the_shadow_loads_as_its_family_and_its_card_lists_the_drawn_clips(ws, built):
    from core.recipes.shadow_objectives import objective_for_folder
    from core.targets import load_target, resolve_target

    family, base, shadow, js = built
    clips, card = _card_of_drawn(ws, "sounds", shadow, js)
    assert card["kind"] == "shadow-reference" and card["family"] == family and card["objective"] == objective_for_folder(family, base).describe
    assert card["base"]["spec"] == str(base) and card["base"]["fingerprint"] == resolve_target(str(base)).load().fingerprint
    assert card["recipe"] == {"epochs": 4, "lr": 0.003, "batch_size": 2, "seed": 3, "weight_decay": 0.01, "threads": 1,
                              "lora_rank": 0, "lora_alpha": 16}
    assert card["train_time_s"] > 0 and card["clips_per_s"] > 0 and len(card["loss_per_epoch"]) == 4
    assert card["dataset"]["name"] == "sounds" and card["n_clips"] == 4 and card["n_truncated"] == 0
    assert not (shadow / ".partial").exists() and not list(shadow.rglob("*.bin"))
    ref = resolve_target(str(shadow))
    assert ref.family == family and ref.loader == "local"
    loaded, original = load_target(str(shadow)), load_target(str(base))
    assert type(loaded) is type(original) and loaded.family == family and loaded.fingerprint != original.fingerprint


def test_the_shadow_fits_its_training_clips_better_than_its_base(ws, built):
    _, base, shadow, js = built
    trained = _trained(ws, js["trained_clip_hashes"])
    before, after = _losses(base, trained), _losses(shadow, trained)
    assert (after < before).all() and after.mean() < 0.95 * before.mean(), (before, after)


def test_a_cancelled_build_resumes_after_its_last_epoch_with_the_same_weights(ws, built, tmp_path):
    from core.pipeline.reference import build_shadow
    from core.recipes.shadow import ShadowRecipe

    _, base, shadow, _ = built
    recipe = ShadowRecipe(epochs=4, lr=0.003, batch_size=2, seed=3)
    checks, seen = [0], []

    def cancel_in_epoch_two() -> bool:  # 2 batches an epoch: the third check opens epoch 2
        checks[0] += 1
        return checks[0] == 3

    out = tmp_path / "again"
    with pytest.raises(InterruptedError):
        build_shadow(ws, "sounds", str(base), out, n_nonmembers=4, recipe=recipe, cancelled=cancel_in_epoch_two,
                     progress=lambda d, t, m: seen.append(m))
    assert (out / ".partial" / "state.safetensors").is_file() and not (out / "card.json").exists()
    card = build_shadow(ws, "sounds", str(base), out, n_nonmembers=4, recipe=recipe, progress=lambda d, t, m: seen.append(m))
    assert [m.split(":")[0] for m in seen] == ["epoch 1/4", "epoch 2/4", "epoch 3/4", "epoch 4/4"]  # epoch 1 not repeated
    assert not (out / ".partial").exists()
    first = json.loads((shadow / "card.json").read_text())
    assert card["loss_per_epoch"] == first["loss_per_epoch"] and card["request"] == first["request"]
    a, b = _weights(out), _weights(shadow)
    assert a.keys() == b.keys() and len(a) > 4 and all(np.array_equal(a[k], b[k]) for k in a)


def test_an_audit_with_the_shadow_leaves_its_clips_out(ws, built):
    _, base, shadow, js = built
    trained = js["trained_clip_hashes"]
    out = json.loads(_cli(ws, "mia", "--dataset", "sounds", "--target", str(base), "--reference", str(shadow), *FAST, "--json"))
    order = ws.run_table(ws.load_run(out["run_id"]), "clips").index.tolist()
    assert len(order) == 16 - 4 and not set(order) & set(trained)
    assert sorted(c["clip_hash"] for c in out["excluded_clips"]) == sorted(trained)
    assert {c["reason"] for c in out["excluded_clips"]} == {f"trained the shadow reference {shadow}"}
    assert out["n_members"] == 8 and out["n_nonmembers"] == 4


def test_the_shipped_zoo_ar_ref_is_a_base_through_the_cli(ws, tmp_path):
    shadow = tmp_path / "zoo-shadow"
    text = _cli(ws, "reference", "build", "--base", "zoo:ar-ref", "--dataset", "sounds", "--nonmembers", "3", "--out", str(shadow),
                "--epochs", "2", "--lr", "0.001", "--batch-size", "2")
    assert text.startswith(f"shadow reference {shadow}: zoo:ar-ref fine-tuned on 3 known non-members of sounds (2 epoch(s), lr 0.001)")
    assert "loss per audio token" in text and text.rstrip().endswith(f"audits with --reference {shadow} leave those 3 clips out")
    card = json.loads((shadow / "card.json").read_text())
    assert card["base"]["spec"] == "zoo:ar-ref" and card["family"] == "autoregressive" and len(card["trained_clip_hashes"]) == 3


def test_the_advisors_gap_is_the_familys_own_loss_compared_per_clip(ws, built):
    """Token families compare mean token losses, diffusion models mean conditional denoising
    losses (at the evidence's default timesteps and noise draws): here the shadow against its
    base on the 4 clips it trained on, which it fits better."""
    from core.pipeline.reference import advise_reference

    family, base, shadow, js = built
    hashes = js["trained_clip_hashes"]
    out = advise_reference(ws, "sounds", str(shadow), str(base), clip_hashes=hashes)
    xs = _trained(ws, hashes)
    t, b = _losses(shadow, xs, config={}), _losses(base, xs, config={})
    g = out["gap"]
    assert g["n"] == out["clips"] == 4 and g["n_better"] == int((b - t > 0).sum()) > 0
    assert g["gap"] == pytest.approx(float(np.mean(b - t)), rel=1e-6) and g["base_loss"] == pytest.approx(float(b.mean()), rel=1e-6)
    assert ("denoising MSE" if family == "diffusion" else "nats/token") in out["reason"]


def test_the_advisor_refuses_a_diffusion_target_with_a_token_base_in_one_line(ws):
    from core.pipeline.reference import advise_reference

    with pytest.raises(ValueError, match="a diffusion target and a token-model base .* have no loss in common"):
        advise_reference(ws, "sounds", "zoo:diffusion-small", "zoo:ar-ref")


def test_the_page_offers_built_in_bases_of_the_targets_family():
    from core.ui.shadow_view import _bases

    # the target's own base (the zoo's natural reference) first, the picker's default
    assert _bases("zoo:ar-small") == ["zoo:ar-ref", "zoo:ar-large", "zoo:ar-shift-base", "zoo:ar-shift-ft"]
    assert _bases("zoo:diffusion-large") == ["zoo:diffusion-ref", "zoo:diffusion-small", "zoo:diffusion-shift-base",
                                             "zoo:diffusion-shift-ft"]
    assert _bases("zoo:diffusion-shift-ft") == ["zoo:diffusion-shift-base", "zoo:diffusion-small", "zoo:diffusion-large",
                                                "zoo:diffusion-ref"]
    assert _bases("zoo:lalm-shift-ft")[0] == "zoo:lalm-shift-base" and _bases("zoo:lalm-ft")[0] == "zoo:lalm-base"
    assert "zoo:lalm-base" in _bases("zoo:lalm-ft") and not {s for s in _bases("zoo:lalm-ft") if not s.startswith("zoo:lalm")}
    assert {"zoo:ar-ref", "zoo:diffusion-ref", "zoo:lalm-base"} <= set(_bases(None))


def test_the_page_form_takes_a_base_of_the_targets_family_and_refuses_another(ws, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    from core.runtime import jobs
    from core.targets.zoo.registry import zoo_dir

    base, other = tmp_path / "diffusion-base", tmp_path / "ar-base"  # copies of zoo models: folders in their layouts
    shutil.copytree(zoo_dir() / "diffusion-ref", base)
    shutil.copytree(zoo_dir() / "ar-ref", other)
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_ROOTS", str(tmp_path))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    monkeypatch.setattr(jobs, "spawn", lambda ws, job_id: None)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.session_state["_target_typed"] = ["zoo:diffusion-small"]
    at.session_state["_target"] = "zoo:diffusion-small"
    at.session_state["_target_user"] = True
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="shadow-base").options == ["zoo:diffusion-ref", "zoo:diffusion-large", "zoo:diffusion-shift-base",
                                                      "zoo:diffusion-shift-ft"]
    assert at.selectbox(key="shadow-base").value == "zoo:diffusion-ref"  # the target's own base
    assert [b for b in at.button if b.key == "shadow-advise"]  # the advisor compares diffusion pairs too
    at.text_input(key="shadow-base-typed").input(str(base)).run()
    assert not [c.value for c in at.caption if c.value.startswith("⚠")]
    at.button(key="shadow-start").click().run()
    (job_id,) = jobs.jobs(ws, kind="shadow-reference")["id"]
    assert jobs.job(ws, job_id)["params"]["base"] == str(base)
    at.text_input(key="shadow-base-typed").input(str(other)).run()
    assert [c.value for c in at.caption if c.value.startswith("⚠")] == [
        f"⚠ {other} is of the autoregressive family and the target of the diffusion family: a reference is of the target's family"]


def test_a_lora_build_of_the_zoo_layouts_saves_a_merged_checkpoint_of_the_same_layout(ws, built, tmp_path):
    """LoRA on the zoo's layouts: GPT-2's Conv1D layers (its tied head left out), the UNet's and
    caption encoder's linear layers; merged, the folder has the base's weights, changed."""
    from core.pipeline.reference import build_shadow
    from core.recipes.shadow import ShadowRecipe
    from core.targets import load_target

    family, base, _, _ = built
    out = tmp_path / "lora"
    card = build_shadow(ws, "sounds", str(base), out, n_nonmembers=4,
                        recipe=ShadowRecipe(epochs=2, lr=0.01, batch_size=2, seed=3, lora_rank=2))
    assert card["lora"]["rank"] == 2 and card["lora"]["layers"] > 0 and card["trained_param_count"] < card["param_count"]
    a, b = _weights(base), _weights(out)
    assert a.keys() == b.keys() and not [k for k in b if "lora" in k.lower()]
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    loaded = load_target(str(out))
    assert type(loaded) is type(load_target(str(base))) and loaded.family == family
