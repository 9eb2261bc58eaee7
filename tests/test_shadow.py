"""Shadow references (:mod:`core.recipes.shadow`, :mod:`core.pipeline.reference`).

A random-weight micro Whisper (English-only, character tokenizer, 1 s window) is the
public base; a workspace of 4 members and 8 non-members (tones with short transcripts)
is the audited dataset. The shadow is built once, through the CLI, on 4 non-members:

- its card lists exactly the clips drawn, all known non-members; it loads as a reference
  and fits those clips better than the base does;
- a killed build resumes after its last finished epoch, and ends with the weights of an
  uninterrupted one;
- an MIA run with it as reference leaves those clips out before anything is computed and
  says so in its record (JSON and text), and so do dataset inference and disentanglement;
- the advisor's gap and sign test agree with an independent computation (scipy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.runtime.store import Workspace
from tests.conftest import transcribed_tones

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = ["--n-boot", "20", "--n-perm", "0", "--n-splits", "2", "--mode", "given"]
RECIPE = ["--epochs", "2", "--lr", "0.003", "--batch-size", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(workspace, base folder, shadow folder, the CLI's JSON of the build)."""
    from tests.multilingual_fixture import tiny_multilingual_whisper

    root = tmp_path_factory.mktemp("shadow")
    ws = transcribed_tones(root)
    base = tiny_multilingual_whisper(root / "base", multilingual=False)
    shadow = root / "shadow"
    out = _cli(ws, "reference", "build", "--base", str(base), "--dataset", "tiny", "--nonmembers", "4", "--out", str(shadow),
               *RECIPE, "--json")
    return ws, base, shadow, json.loads(out)


def _cli(ws: Workspace, *argv: str) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*argv, "--workspace", str(ws.root)])
    assert code == 0, buf.getvalue()
    return buf.getvalue()


def _given_losses(folder: Path, clips) -> np.ndarray:
    """Per-clip mean token loss of the checkpoint in ``folder`` on ``clips`` (given mode)."""
    from core.targets import EvidenceConfig, load_target

    target = load_target(str(folder), device="cpu")
    ev = target.evidence(clips, EvidenceConfig(mode="given"))
    return np.array([-np.mean(e.tokens.logprob) for e in ev])


def _inputs(ws: Workspace, rows):
    from core.pipeline.evidence import clip_inputs, stored_clips
    from core.runtime.settings import Settings

    s = Settings.from_env(ws.root)
    return clip_inputs(stored_clips(ws, rows), s.analysis_sr, s.limits)


def _card_of_drawn(ws, dataset: str, shadow, js: dict):
    """(the dataset's clips, the shadow's card), checking that the card lists the 4
    non-members drawn with seed 3, as the CLI said."""
    from core.pipeline.reference import choose_nonmembers

    clips = ws.analysis_clips(dataset)
    drawn = choose_nonmembers(clips, 4, seed=3)
    card = json.loads((shadow / "card.json").read_text())
    assert card["trained_clip_hashes"] == drawn["clip_hash"].tolist() == js["trained_clip_hashes"]
    assert set(card["trained_clip_hashes"]) <= set(clips.loc[clips["y"] == 0, "clip_hash"])
    return clips, card


def test_the_shadow_trains_on_the_drawn_nonmembers_loads_as_a_reference_and_fits_them(setup):
    from core.targets import resolve_target

    ws, base, shadow, js = setup
    clips, card = _card_of_drawn(ws, "tiny", shadow, js)
    assert card["kind"] == "shadow-reference" and card["base"]["spec"] == str(base) and len(card["base"]["fingerprint"]) >= 16
    assert card["recipe"] == {"epochs": 2, "lr": 0.003, "batch_size": 2, "seed": 3, "weight_decay": 0.01, "threads": 1,
                              "lora_rank": 0, "lora_alpha": 16}
    assert card["train_time_s"] > 0 and card["clips_per_s"] > 0 and len(card["loss_per_epoch"]) == 2
    assert (shadow / "model.safetensors").is_file() and not list(shadow.glob("*.bin")) and not (shadow / ".partial").exists()
    # a checkpoint folder like any other: resolved as a speech model, loaded, scoring the clips
    assert resolve_target(str(shadow)).family == "audio-language"
    rows = clips.set_index("clip_hash").loc[card["trained_clip_hashes"]].reset_index()
    trained = _inputs(ws, rows)
    assert _given_losses(shadow, trained).mean() < _given_losses(base, trained).mean()


def test_a_killed_build_resumes_after_its_last_epoch_with_the_same_weights(setup, tmp_path):
    from safetensors.numpy import load_file

    from core.pipeline.reference import build_shadow
    from core.recipes.shadow import ShadowRecipe

    ws, base, shadow, _ = setup
    recipe = ShadowRecipe(epochs=2, lr=0.003, batch_size=2, seed=3)
    seen: list[str] = []

    class Killed(Exception):
        pass

    def kill_after_first(done: int, total: int, msg: str) -> None:
        seen.append(msg)
        raise Killed

    out = tmp_path / "again"
    with pytest.raises(Killed):
        build_shadow(ws, "tiny", str(base), out, n_nonmembers=4, recipe=recipe, progress=kill_after_first)
    assert (out / ".partial" / "state.safetensors").is_file() and not (out / "card.json").exists()
    card = build_shadow(ws, "tiny", str(base), out, n_nonmembers=4, recipe=recipe, progress=lambda d, t, m: seen.append(m))
    assert [m.split(":")[0] for m in seen] == ["epoch 1/2", "epoch 2/2"]  # epoch 1 not repeated
    assert len(card["loss_per_epoch"]) == 2 and not (out / ".partial").exists()
    a, b = load_file(str(out / "model.safetensors")), load_file(str(shadow / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # a finished build is not redone; another request in the same folder is refused
    assert build_shadow(ws, "tiny", str(base), out, n_nonmembers=4, recipe=recipe)["request"] == card["request"]
    with pytest.raises(ValueError, match="another base, recipe or clip list"):
        build_shadow(ws, "tiny", str(base), out, n_nonmembers=3, recipe=recipe)


def test_unsupported_bases_and_too_many_nonmembers_are_refused_in_one_line(setup, tmp_path):
    from core.pipeline.reference import build_shadow

    ws, base, _, _ = setup
    # a Stable Audio pipeline and a remote transcription API: families a shadow is built for, not these layouts
    # (refused from their metadata, before any weights are read)
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableAudioPipeline"}))
    for spec, what in ((pipeline, "not a mel-patch diffusion .* or diffusers AudioLDM / MusicLDM / AudioLDM 2 pipeline"),
                       ("http://127.0.0.1:9/v1", "not a speech seq2seq or chat audio-language .*")):
        with pytest.raises(ValueError, match=f"{what} checkpoint folder: shadow references can be built from speech seq2seq") as err:
            build_shadow(ws, "tiny", str(spec), tmp_path / "x", n_nonmembers=2)
        assert "\n" not in str(err.value) and all(x in str(err.value) for x in ("zoo:ar-*", "zoo:diffusion-*", "MusicGen", "Qwen2-Audio"))
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="choose 1 to 6"):
        build_shadow(ws, "tiny", str(base), tmp_path / "y", n_nonmembers=7)


def test_the_bases_loader_options_reach_its_loader_and_the_card(setup, tmp_path):
    """``reference build --target-option``: the base loads with the options an audit will pass
    (recorded on the card), an option the loader does not know fails the build, and remote
    code is refused."""
    from core.pipeline.reference import build_shadow

    ws, base, _, _ = setup
    out = tmp_path / "with-options"
    js = json.loads(_cli(ws, "reference", "build", "--base", str(base), "--dataset", "tiny", "--nonmembers", "2", "--out",
                         str(out), "--epochs", "1", "--lr", "0.003", "--batch-size", "2", "--target-option", "max_new_tokens=7",
                         "--json"))
    assert js["out"] == str(out)
    assert json.loads((out / "card.json").read_text())["loader_options"] == {"max_new_tokens": "7"}
    advice = json.loads(_cli(ws, "reference", "advise", "--target", str(out), "--base", str(base), "--dataset", "tiny",
                             "--target-option", "max_new_tokens=7", "--json"))
    assert advice["recommendation"] in ("shadow", "base or none") and advice["clips"] == 8
    with pytest.raises(TypeError, match="no_such_option"):
        build_shadow(ws, "tiny", str(base), tmp_path / "bad", n_nonmembers=2, options={"no_such_option": 1})
    with pytest.raises(ValueError, match="trust_remote_code"):
        build_shadow(ws, "tiny", str(base), tmp_path / "code", n_nonmembers=2, options={"trust_remote_code": True})


def test_an_audit_with_the_shadow_leaves_its_clips_out_and_says_so(setup):
    ws, base, shadow, _ = setup
    trained = json.loads((shadow / "card.json").read_text())["trained_clip_hashes"]
    js = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(shadow), *FAST, "--json"))
    run = ws.load_run(js["run_id"])
    order = ws.run_table(run, "clips").index.tolist()
    assert len(order) == 12 - 4 and not set(order) & set(trained)
    assert sorted(c["clip_hash"] for c in js["excluded_clips"]) == sorted(trained)
    assert {c["reason"] for c in js["excluded_clips"]} == {f"trained the shadow reference {shadow}"}
    assert js["n_nonmembers"] == 4 and js["n_members"] == 4
    text = _cli(ws, "mia", "--dataset", "tiny", "--target", str(base), "--reference", str(shadow), *FAST)
    assert f"  clips kept out of the audit: 4 (4 non-members): trained the shadow reference {shadow}" in text
    # dataset inference reads that run: the same clips stay out, and it says so too
    di = json.loads(_cli(ws, "di", "--dataset", "tiny", "--target", str(base), "--reference", str(shadow), "--mode", "given",
                         "--n-resamples", "10", "--null-resamples", "10", "--json"))
    tested = ws.run_table(ws.load_run(di["run_id"]), "clips").index
    assert len(di["excluded_clips"]) == 4 and len(tested) and not set(tested) & set(trained)
    # so does disentanglement
    dis = json.loads(_cli(ws, "disentangle", "--dataset", "tiny", "--target", str(base), "--reference", str(shadow),
                          "--conditions", "original", "--realizations", "1", *FAST, "--json"))
    assert dis["n"] == 8 and sorted(c["clip_hash"] for c in dis["excluded_clips"]) == sorted(trained)
    # without the shadow nothing is left out
    plain = json.loads(_cli(ws, "mia", "--dataset", "tiny", "--target", str(base), *FAST, "--json"))
    assert "excluded_clips" not in plain and plain["n_nonmembers"] == 8


def test_the_advisors_gap_and_sign_test_match_an_independent_computation(setup):
    from scipy.stats import binomtest

    from core.mia.advisor import fit_gap

    ws, base, shadow, _ = setup
    out = json.loads(_cli(ws, "reference", "advise", "--target", str(shadow), "--base", str(base), "--dataset", "tiny", "--json"))
    clips = ws.analysis_clips("tiny")
    non = clips[clips["y"] == 0].reset_index(drop=True)
    xs = _inputs(ws, non)
    t, b = _given_losses(shadow, xs), _given_losses(base, xs)
    g = out["gap"]
    assert g["n"] == 8 and out["clips"] == 8
    assert g["gap"] == pytest.approx(float(np.mean(b - t)), rel=1e-6)
    assert g["target_loss"] == pytest.approx(float(t.mean()), rel=1e-6)
    k = int((b - t > 0).sum())
    assert g["n_better"] == k
    assert g["sign_p"] == pytest.approx(binomtest(k, 8, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert g["gap_ci"][0] <= g["gap"] <= g["gap_ci"][1]
    assert out["recommendation"] in ("shadow", "base or none") and "nats/token" in out["reason"]
    # the statistic alone, on numbers whose answer is known
    rng = np.random.default_rng(0)
    base_l = rng.uniform(1.0, 2.0, 40)
    clear = fit_gap(base_l * 0.7, base_l, seed=1)
    assert clear.n_better == 40 and clear.sign_p == pytest.approx(binomtest(40, 40, 0.5, alternative="greater").pvalue)
    assert clear.relative_gap == pytest.approx(0.3) and clear.gap_ci[0] > 0
    noise = fit_gap(base_l + rng.normal(0, 0.05, 40), base_l, seed=1)
    assert noise.gap_ci[0] < 0 < noise.gap_ci[1]


def test_the_build_runs_as_a_background_job(setup, tmp_path):
    from core.runtime import jobs

    import core.pipeline  # noqa: F401  (registers the job kinds)

    ws, base, _, _ = setup
    out = tmp_path / "job"
    job_id = jobs.submit(ws, "shadow-reference", {"dataset": "tiny", "base": str(base), "out": str(out), "n_nonmembers": 2,
                                                  "recipe": {"epochs": 1, "lr": 0.003, "batch_size": 2}}, start=False)
    assert jobs.run_job(ws, job_id) == str(out)
    row = jobs.job(ws, job_id)
    assert row["status"] == "done" and json.loads((out / "card.json").read_text())["n_clips"] == 2
