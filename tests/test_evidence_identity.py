"""Evidence identity: a target's evidence is cached under the settings it reads, and only
those. For every target family and access level, changing a setting the family does not read
(the folds' seed of a speech model, the text mode of a sound model, the MIA's folds,
bootstrap and permutations) computes nothing; changing one it reads computes again. Keys
written before evidence identity existed are still read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.evidence import ClipEvidence, TokenStats
from core.pipeline import MIAConfig, audit_mia
from core.runtime.cache import EvidenceCache, cached_evidence
from core.targets.base import OUTPUT_READS, WHITE_BOX_SETTINGS, EvidenceConfig, evidence_reads
from tests.conftest import demo_workspace

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PER_LABEL = 3
FAST = dict(n_boot=20, n_perm=0, n_splits=2, n_generations=1, gen_steps=3, n_perturb=1, n_noise=1, timesteps=(100, 400))

# (target, dataset, access, a setting it does not read, one it reads)
CASES = [
    ("zoo:lalm-small", "demo-speech", "white-box", {"seed": 7, "n_noise": 2, "timesteps": (50,)}, {"mode": "given"}),
    ("zoo:lalm-small", "demo-speech", "outputs", {"infill_m": 1, "n_generations": 2, "gen_steps": 5}, {"n_perturb": 2}),
    ("zoo:ar-small", "demo-sounds", "white-box", {"seed": 7, "mode": "given", "n_noise": 2}, {"infill_m": 1}),
    ("zoo:ar-small", "demo-sounds", "outputs", {"n_perturb": 3, "gen_steps": 5, "n_noise": 2}, {"n_generations": 2}),
    ("zoo:diffusion-small", "demo-sounds", "white-box", {"mode": "given", "infill_m": 1}, {"seed": 7}),
    ("zoo:diffusion-small", "demo-sounds", "outputs", {"n_perturb": 3, "infill_m": 1, "n_noise": 2}, {"gen_steps": 4}),
]


@pytest.mark.parametrize("target, dataset, access, unread, read", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_only_what_a_family_reads_runs_its_model_again(tmp_path, monkeypatch, target, dataset, access, unread, read):
    import core.targets.registry as registry
    from core.runtime.pool import POOL

    ws, name = demo_workspace(tmp_path, PER_LABEL, dataset), "speech"
    base = MIAConfig(access=access, **FAST)
    _, first = audit_mia(ws, name, target, base)
    assert first["computed"] == 2 * PER_LABEL
    loads: list[str] = []
    load = registry.TargetRef.load
    monkeypatch.setattr(registry.TargetRef, "load", lambda self, **kw: loads.append(self.spec) or load(self, **kw))
    POOL.clear()  # as in a new process: no model resident
    # the statistics' settings and the settings this family does not read: all from the
    # cache, and no model is loaded to find them there
    for change in ({"n_splits": 3, "n_boot": 30, "signed": False}, unread):
        _, again = audit_mia(ws, name, target, dataclasses.replace(base, **change))
        assert again["computed"] == 0 and loads == [], change
    _, other = audit_mia(ws, name, target, dataclasses.replace(base, **read))
    assert other["computed"] == 2 * PER_LABEL, read
    run = ws.load_run(ws.latest_run("mia", name, target)["id"])
    assert set(run["provenance"]["evidence_key"]) - {"identity", "outputs_version", "access"} == set(
        OUTPUT_READS[first_family(target)] if access == "outputs" else READS[target])


READS = {"zoo:lalm-small": ("mode", "infill_m"), "zoo:ar-small": ("infill_m",), "zoo:diffusion-small": ("timesteps", "n_noise", "seed")}


def first_family(spec: str) -> str:
    from core.targets.registry import target_family

    return target_family(spec)


def test_dataset_inference_reads_the_evidence_its_mia_run_recorded(tmp_path):
    from core.pipeline.di import DIRunConfig, audit_di

    ws, name = demo_workspace(tmp_path, 8), "speech"
    audit_mia(ws, name, "zoo:lalm-small", MIAConfig(seed=3, **FAST))
    _, di = audit_di(ws, name, "zoo:lalm-small", DIRunConfig(seed=3, n_resamples=10, null_resamples=10))
    assert di["indicator_source"] == "evidence cache"


def test_a_key_an_earlier_version_wrote_is_read_and_copied(tmp_path):
    cache = EvidenceCache(tmp_path)
    cfg = EvidenceConfig(seed=5)
    reads = ("mode", "infill_m")
    stats = {k: np.array([-0.5, -1.0]) for k in ("logprob", "entropy", "top1", "top2", "mean_logp", "std_logp", "renyi_05", "renyi_2", "renyi_inf")}
    ev = ClipEvidence(clip_hash="a" * 64, tokens=TokenStats(token_ids=np.array([1, 2]), **stats), text="x")
    cached_evidence(cache, "fp", ["a" * 64], cfg.cache_key(), 16000, lambda idx: [ev])  # as written before
    got, computed = cached_evidence(cache, "fp", ["a" * 64], cfg.cache_key(reads), 16000, None, legacy=cfg.legacy_keys(reads))
    assert computed == 0 and got[0].text == "x"
    got, computed = cached_evidence(cache, "fp", ["a" * 64], cfg.cache_key(reads), 16000, None)  # copied under the new key
    assert computed == 0 and got[0].text == "x"
    # a run at another seed finds it too: earlier runs used the defaults of what is not read
    default_run = EvidenceConfig()
    cached_evidence(cache, "fp2", ["a" * 64], default_run.cache_key(), 16000, lambda idx: [ev])
    other = EvidenceConfig(seed=9)
    _, computed = cached_evidence(cache, "fp2", ["a" * 64], other.cache_key(reads), 16000, None, legacy=other.legacy_keys(reads))
    assert computed == 0


def test_reads_are_declared_by_the_family_and_default_to_everything():
    class Undeclared:
        family = "audio-language"

    assert evidence_reads(Undeclared(), "white-box") == WHITE_BOX_SETTINGS
    assert evidence_reads(Undeclared(), "outputs") == OUTPUT_READS["audio-language"]
    key = EvidenceConfig(seed=4).cache_key(("mode",))
    assert key == {"access": "white-box", "mode": "generated", "identity": 2}
    assert EvidenceConfig(access="outputs").cache_key(("n_perturb", "seed"))["outputs_version"] >= 1


def test_a_setting_added_later_keys_evidence_only_when_set(tmp_path):
    """``pia`` was added after evidence keys were written: at its default it leaves every key as
    it was (so no cached evidence runs again), and set it keys new evidence that holds PIA."""
    reads = ("timesteps", "n_noise", "pia", "seed")
    assert EvidenceConfig().cache_key(reads) == EvidenceConfig().cache_key(("timesteps", "n_noise", "seed"))
    assert EvidenceConfig().cache_key() == {k: v for k, v in EvidenceConfig().cache_key().items() if k != "pia"}
    assert EvidenceConfig(pia=True).cache_key(reads)["pia"] is True
    ws, name = demo_workspace(tmp_path, PER_LABEL, "demo-sounds"), "speech"
    base = MIAConfig(**FAST)
    plain, _ = audit_mia(ws, name, "zoo:diffusion-small", base)
    run_id, with_pia = audit_mia(ws, name, "zoo:diffusion-small", dataclasses.replace(base, pia=True))
    assert with_pia["computed"] == 2 * PER_LABEL
    run = ws.load_run(run_id)
    assert run["provenance"]["evidence_key"]["pia"] is True
    assert "pia" not in ws.load_run(plain)["provenance"]["evidence_key"]
    assert {k for k in run["result"]["indicators"] if k.startswith("pia@")} == {"pia@t100", "pia@t400"}
    # dataset inference on that run reads its PIA keys, and every surface says how its MIA run read the model
    from core.config import decoding_text, di_mia_config
    from core.pipeline.di import DIRunConfig, audit_di
    from core.viz.report import build_report

    _, di = audit_di(ws, name, "zoo:diffusion-small", DIRunConfig(mia_run=run_id, scorer="mean_loss", n_resamples=10, null_resamples=10))
    assert di["mia_pia"] is True and any(k.startswith("pia@") for k in di["indicators"])
    assert decoding_text(di_mia_config(di), di, "diffusion") == "white-box, generated text, with PIA"
    html = build_report(ws, name, "zoo:diffusion-small")
    assert html.count("with PIA") >= 2  # the MIA run's access row and the dataset inference's


def test_pia_is_refused_for_a_model_without_noise_estimates_before_any_work(tmp_path):
    from core.pipeline import DisentangleConfig, audit_disentangle

    ws, name = demo_workspace(tmp_path, PER_LABEL, "demo-speech"), "speech"
    for run in (lambda: audit_mia(ws, name, "zoo:lalm-small", MIAConfig(pia=True, **FAST)),
                lambda: audit_disentangle(ws, name, "zoo:lalm-small", DisentangleConfig(mia=MIAConfig(pia=True, **FAST)))):
        with pytest.raises(ValueError, match="PIA reads a diffusion model's noise estimates, but zoo:lalm-small is an "
                                             "audio-language model"):
            run()
    assert ws.latest_run("mia", name, "zoo:lalm-small") is None
