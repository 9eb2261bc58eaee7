"""MIA Audit and Disentanglement pages on a real run of the built-in lalm-small target."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.ingest import ingest_path
from core.pipeline import DisentangleConfig, MIAConfig, audit_disentangle, audit_mia
from tests.conftest import demo_subset

ROOT = Path(__file__).resolve().parents[1]


PER_LABEL = 40


@pytest.fixture(scope="module")
def mia_ws(tmp_path_factory):
    from core.runtime.store import Workspace

    ws = Workspace(tmp_path_factory.mktemp("mia") / "ws")
    ingest_path(ws, demo_subset(tmp_path_factory.mktemp("demo"), PER_LABEL), "demo-speech")  # a subset: the suite's time budget
    cfg = MIAConfig(n_boot=200, n_perm=50, batch_size=16)
    _, mia = audit_mia(ws, "demo-speech", "zoo:lalm-small", cfg)
    _, dis = audit_disentangle(ws, "demo-speech", "zoo:lalm-small", DisentangleConfig(conditions=("original", "silence"), mia=cfg))
    return ws, mia, dis


@pytest.fixture
def env(mia_ws, monkeypatch):
    ws, _, _ = mia_ws
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    return mia_ws


def test_lalm_small_separates_members_and_silence_does_not(mia_ws):
    _, mia, dis = mia_ws
    assert mia["auc"] > 0.95 and mia["n_members"] == PER_LABEL and mia["n_nonmembers"] == PER_LABEL
    assert dis["conditions"]["original"] == pytest.approx(mia["auc"])
    assert dis["decoded_is_output"] is True  # lalm-small transcribes: its text is its output
    assert dis["conditions"]["silence"] == pytest.approx(0.5, abs=0.05)
    # each condition gets the MIA run's inference: same folds, interval and permutation p-value
    orig = dis["details"]["original"]
    assert orig["auc_p_value"] == mia["auc_p_value"] and orig["auc_ci"] == mia["auc_ci"]
    assert orig["inference"] == mia["inference"] and orig["inference"]["n_perm"] == cfg_perm(mia)
    assert dis["details"]["silence"]["auc_p_value"] > 0.05


def cfg_perm(run: dict) -> int:
    return MIAConfig().n_perm if run.get("config", {}).get("n_perm") is None else run["config"]["n_perm"]


def test_mia_page_shows_the_stored_run(env):
    _, mia, _ = env
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="target").value == "zoo:lalm-small"  # the target trained on this dataset comes first
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Aggregate AUC"] == f"{mia['auc']:.3f}"
    assert metrics["Clips"] == f"{PER_LABEL} P / {PER_LABEL} U"
    held = mia["held_out_best"]["auc"]
    assert any(f"on these clips, descriptive); held out (chosen on training folds): {held:.3f}" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 2


def test_mia_page_shows_the_run_of_the_chosen_text_mode_or_says_it_has_none(env):
    _, mia, _ = env
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.run()
    assert not [i for i in at.info if "mode yet" in i.value]  # the stored run is in the chosen (generated) mode
    at.selectbox(key="mia-mode").set_value("given").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(i.value.startswith("No run in given mode yet: showing the newest at the white-box level (generated mode)")
               for i in at.info)
    assert {m.label: m.value for m in at.metric}["Aggregate AUC"] == f"{mia['auc']:.3f}"


def test_disentanglement_page_plays_variants(env):
    _, _, dis = env
    at = AppTest.from_file(str(ROOT / "pages" / "5_Disentanglement.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.get("audio")) == len(dis["details"])  # one player per condition
    table = at.dataframe[0].value
    assert list(table["condition"]) == ["original", "silence"]
    assert table["p (AUC > 0.5)"].tolist() == [d["auc_p_value"] for d in dis["details"].values()]
    assert not [i for i in at.info if i.value.startswith("No run against")]
    at.multiselect(key="references").set_value(["zoo:lalm-ref"]).run()  # no disentanglement run against it: said so
    assert not at.exception, [e.message for e in at.exception]
    assert [i.value for i in at.info if i.value.startswith("No run against")] == [
        "No run against zoo:lalm-ref yet: showing the newest at the white-box level, no reference model (uncalibrated). "
        "Press **Run disentanglement** for the references chosen above."]
    assert len(at.get("audio")) == len(dis["details"])


def test_tts_consistency_filter_flags_and_drops(mia_ws):
    from core.disentangle.consistency import word_error_rate

    ws, _, _ = mia_ws
    cfg = MIAConfig(n_boot=100, batch_size=16)
    _, kept = audit_disentangle(ws, "demo-speech", "zoo:lalm-small", DisentangleConfig(conditions=("tts",), mia=cfg, max_realizations=1))
    clips = ws.analysis_clips("demo-speech").set_index("clip_hash")
    wers = [word_error_rate(clips.loc[h, "text"], text) for h, text in kept["decoded"]["tts"].items()]
    c = kept["details"]["tts"]["consistency"]
    assert c["flagged"] == sum(w > 0.5 for w in wers) and c["dropped"] == 0
    assert c["mean_wer"] == pytest.approx(sum(wers) / len(wers))
    _, dropped = audit_disentangle(ws, "demo-speech", "zoo:lalm-small",
                                   DisentangleConfig(conditions=("tts",), mia=cfg, max_realizations=1, drop_inconsistent=True, max_wer=0.99))
    d = dropped["details"]["tts"]
    assert d["consistency"]["dropped"] == sum(w > 0.99 for w in wers)


def test_a_plugin_variant_gets_the_transcript_check_by_its_registration(mia_ws):
    """The consistency check follows the variant's registered ``check``, not its name: a
    plugin that plays the clip back unchanged is checked like the built-in speech
    resynthesis and scores like the original."""
    from core.disentangle.registry import _VARIANTS, register_variant

    @register_variant("echo_test", description="the clip, unchanged (test plugin)", check="transcript")
    def _echo(audio, text, *, sr, realization, **_):
        return audio

    try:
        ws, mia, _ = mia_ws
        cfg = MIAConfig(n_boot=50, n_perm=20, batch_size=16)
        _, out = audit_disentangle(ws, "demo-speech", "zoo:lalm-small", DisentangleConfig(conditions=("echo_test",), mia=cfg))
        d = out["details"]["echo_test"]
        assert d["consistency"]["metric"] == "wer" and d["auc"] == pytest.approx(mia["auc"], abs=1e-9)
    finally:
        _VARIANTS.remove("echo_test")
    with pytest.raises(ValueError, match="check must be"):
        register_variant("bad_test", check="vibes")(_echo)


def test_mia_page_quotes_the_blind_verdict_its_run_was_compared_with(env):
    from core.pipeline import audit_blind
    from core.pipeline.blind import BlindRunConfig

    ws, _, _ = env
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.run()
    assert any(c.value.startswith("No blind baseline had been run on this dataset") and "(/Blind_Baseline?dataset=demo-speech)" in c.value
               for c in at.caption)
    blind_id, _ = audit_blind(ws, "demo-speech", BlindRunConfig(groups=("metadata",), n_boot=20, n_perm=0, n_splits=3))
    run_id, _ = audit_mia(ws, "demo-speech", "zoo:lalm-small", MIAConfig(n_boot=20, n_perm=0, n_splits=3, batch_size=16))
    at.run()
    verdict = ws.load_run(blind_id)["result"]["verdict"]["all"]
    line = next(c.value for c in at.caption if c.value.startswith("Blind baseline checked"))
    assert f"run `{blind_id}`" in line and verdict["sentence"] in line and "[Blind Baseline](/Blind_Baseline?dataset=demo-speech)" in line


def test_loader_options_reach_the_mia_run_and_unreadable_ones_run_nothing(env, monkeypatch):
    from core.runtime import jobs

    sent: list = []
    monkeypatch.setattr(jobs, "submit", lambda ws, kind, params, **kw: sent.append((kind, params)) or "job-x")
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.run()
    at.text_area(key="mia-loader-options").input('prompt="Describe the audio."\nbatch_size=4\n').run()
    assert not at.exception and not at.error
    at.button(key="start-mia").click().run()
    kind, params = sent[-1]
    assert kind == "mia" and params["target"] == "zoo:lalm-small"
    assert params["config"]["target_options"] == {"batch_size": 4, "prompt": "Describe the audio."}
    for text, why in (("no equals sign", "expects KEY=VALUE"), ("trust_remote_code=true", "never runs Python code")):
        at.text_area(key="mia-loader-options").input(text).run()
        assert any(why in e.value for e in at.error), [e.value for e in at.error]
        assert not any(b.key == "start-mia" for b in at.button)  # nothing runs on options it cannot take


def test_pia_is_offered_for_a_diffusion_target_at_white_box_and_reaches_its_run(env, monkeypatch):
    from core.runtime import jobs

    sent: list = []
    monkeypatch.setattr(jobs, "submit", lambda ws, kind, params, **kw: sent.append((kind, params)) or "job-x")
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.run()
    assert not [c for c in at.checkbox if c.key == "pia"]  # a speech model has no noise estimates
    at.selectbox(key="target").set_value("zoo:diffusion-small").run()
    assert not at.exception, [e.message for e in at.exception]
    at.checkbox(key="pia").check().run()
    at.button(key="start-mia").click().run()
    kind, params = sent[-1]
    assert kind == "mia" and params["target"] == "zoo:diffusion-small" and params["config"]["pia"] is True
    # a run that measured PIA says so where the page names how it read the model
    ws, _, _ = env
    cfg = MIAConfig(n_boot=20, n_perm=0, n_splits=2, n_noise=1, timesteps=(100,), pia=True)
    run_id, _ = audit_mia(ws, "demo-speech", "zoo:diffusion-small", cfg)
    at.run()
    assert any(c.value.startswith(f"Run `{run_id}`") and "white-box, generated text, with PIA" in c.value for c in at.caption)
    at.selectbox(key="mia-access").set_value("outputs").run()
    assert not [c for c in at.checkbox if c.key == "pia"]  # generations only: nothing to measure PIA on


def test_the_page_shows_the_run_against_the_chosen_references_or_says_which_it_shows(env, tmp_path, monkeypatch):
    """A headline is the audit the form above it describes: the run against the chosen
    references; without one, the newest in the mode, with a note naming what it was
    calibrated against."""
    import shutil

    from core.runtime.store import Workspace

    ws0, _, _ = env
    shutil.copytree(ws0.root, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    _, cal = audit_mia(ws, "demo-speech", "zoo:lalm-small", MIAConfig(references=("zoo:lalm-ref",), n_boot=50, n_perm=20, batch_size=16))
    plain = ws.latest_run("mia", "demo-speech", "zoo:lalm-small", where=lambda c: not c.get("references"))["result"]
    assert cal["auc"] != plain["auc"]

    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Aggregate AUC"] == f"{plain['auc']:.3f}"  # no reference chosen: the plain run
    assert not [i for i in at.info if i.value.startswith("No run against")]
    at.multiselect(key="references").set_value(["zoo:lalm-ref"]).run()
    assert {m.label: m.value for m in at.metric}["Aggregate AUC"] == f"{cal['auc']:.3f}"
    assert not [i for i in at.info if i.value.startswith("No run against")]
    at.multiselect(key="references").set_value(["zoo:lalm-base"]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert [i.value for i in at.info if i.value.startswith("No run against")] == [
        "No run against zoo:lalm-base yet: showing the newest in this mode, zoo:lalm-ref. Press **Run MIA** for the references chosen above."]
