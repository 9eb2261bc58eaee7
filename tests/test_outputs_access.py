"""The outputs access level for audio-language targets: label-only indicators checked against
slow computations written from their definitions, seeded perturbations, the evidence format,
and MIA / DI through the real pipeline on a demo subset with a zoo model read from its
transcriptions alone."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.evidence import ClipEvidence, OutputEvidence
from core.mia.aggregate import indicator_table
from core.mia.registry import direction, families
from core.pipeline import MIAConfig, audit_mia
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.targets.base import ClipInput, EvidenceConfig, access_levels
from core.targets.outputs import PERTURBATIONS, derived_seed, output_evidence, perturb
from tests.conftest import demo_workspace


# -- slow references, written from the definitions -------------------------------------------
def _words(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text.lower():
        if ch.isascii() and (ch.isalnum() or ch == "'"):
            cur += ch
        elif cur:
            out.append(cur)
            cur = ""
    return out + ([cur] if cur else [])


def _lev(a: tuple, b: tuple) -> int:
    @functools.lru_cache(maxsize=None)
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def _rate(ref: tuple, hyp: tuple) -> float:
    return (0.0 if not hyp else 1.0) if not ref else _lev(ref, hyp) / len(ref)


def slow_wer(ref: str, hyp: str) -> float:
    return _rate(tuple(_words(ref)), tuple(_words(hyp)))


def slow_cer(ref: str, hyp: str) -> float:
    return _rate(tuple(" ".join(_words(ref))), tuple(" ".join(_words(hyp))))


CASES = [
    OutputEvidence(texts=("the cat sat on the mat", "the cat sat on a mat", "the cat sat", "the cat sat on the mat"),
                   reference="The cat sat on the mat."),
    OutputEvidence(texts=("a dog barked", "a dog parked loudly", "dog barked"), reference="A dog barked twice"),
    OutputEvidence(texts=("", "hello"), reference="hello there"),
    OutputEvidence(texts=("hello world",), reference=""),
]


@pytest.mark.parametrize("ev", CASES)
def test_label_only_indicators_match_their_definitions(ev: OutputEvidence) -> None:
    row = indicator_table([ClipEvidence("h", text=ev.texts[0], outputs=ev)]).iloc[0]
    out, ref = ev.texts[0], ev.reference
    if ref:
        assert row["wer"] == pytest.approx(slow_wer(ref, out))
        assert row["cer"] == pytest.approx(slow_cer(ref, out))
        assert row["exact"] == float(_words(ref) == _words(out))
        n_out, n_ref = len(" ".join(_words(out))), len(" ".join(_words(ref)))
        assert row["len_ratio"] == pytest.approx(abs(math.log((n_out + 1) / (n_ref + 1))))
    else:  # no transcript: only what needs none
        assert np.isnan(row[["wer", "cer", "exact", "len_ratio"]].to_numpy(float)).all()
    if len(ev.texts) > 1:
        assert row["stability"] == pytest.approx(1 - np.mean([slow_cer(out, t) for t in ev.texts[1:]]))
        if ref:
            assert row["wer_perturbed"] == pytest.approx(np.mean([slow_wer(ref, t) for t in ev.texts[1:]]))
    else:
        assert np.isnan(row["stability"])


def test_a_transcribed_member_reads_as_more_member_like_on_every_aligned_indicator() -> None:
    member = OutputEvidence(texts=("she sells sea shells",) * 4, reference="She sells sea shells")
    other = OutputEvidence(texts=("see sells seeshells", "she sell", "sea", "she sells see"), reference="She sells sea shells")
    table = indicator_table([ClipEvidence("m", outputs=member), ClipEvidence("o", outputs=other)])
    for key in ("wer", "cer", "exact", "len_ratio", "stability", "wer_perturbed"):
        aligned = direction(key) * table[key].to_numpy()
        assert aligned[0] > aligned[1], key


def test_output_evidence_round_trips_through_the_cache_format() -> None:
    sim = {"mel_dist": np.array([0.5, 0.25, 0.75]), "chroma_sim": np.array([0.9, 0.8, 0.7])}
    for ev in (ClipEvidence("a", text="x", outputs=CASES[0]),
               ClipEvidence("b", text="", outputs=OutputEvidence(reference="a dog", similarity=sim))):
        back = ClipEvidence.from_bytes(ev.to_bytes())
        assert back.outputs is not None and ev.outputs is not None
        assert back.outputs.texts == ev.outputs.texts and back.outputs.reference == ev.outputs.reference
        assert set(back.outputs.similarity) == set(ev.outputs.similarity)
        for k, v in ev.outputs.similarity.items():
            np.testing.assert_array_equal(back.outputs.similarity[k], v)
    assert ClipEvidence.from_bytes(ClipEvidence("c", text="t").to_bytes()).outputs is None


def test_similarity_families_read_the_best_and_the_mean_generation() -> None:
    sim = {"mel_dist": np.array([0.5, 0.25, np.nan]), "chroma_sim": np.array([0.9, 0.7])}
    row = indicator_table([ClipEvidence("b", outputs=OutputEvidence(reference="a dog", similarity=sim))]).iloc[0]
    assert row["mel_dist@min"] == 0.25 and row["mel_dist@mean"] == pytest.approx(0.375)
    assert row["chroma_sim@max"] == 0.9 and row["chroma_sim@mean"] == pytest.approx(0.8)
    assert "clap_sim@max" not in row.index  # no CLAP evidence: no column
    assert {f.evidence for f in families("outputs")} == {"outputs"}


# -- perturbations -----------------------------------------------------------------------------
def test_perturbations_are_seeded_and_small() -> None:
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) + 0.01 * rng.standard_normal(16000)).astype(np.float32)
    for kind in PERTURBATIONS:
        np.testing.assert_array_equal(perturb(x, kind, 7), perturb(x, kind, 7))
    noisy = perturb(x, "noise", 7).astype(np.float64)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((noisy - x) ** 2))
    assert snr == pytest.approx(30.0, abs=0.5)
    assert not np.array_equal(perturb(x, "noise", 7), perturb(x, "noise", 8))
    ratio = {seed: np.sqrt(np.mean(perturb(x, "gain", seed) ** 2) / np.mean(x**2)) for seed in (1, 2)}
    assert sorted(20 * np.log10(r) for r in ratio.values()) == pytest.approx([-6.0, 6.0], abs=0.01)
    assert sorted(len(perturb(x, "speed", s)) for s in (1, 2)) == [round(16000 / 1.05), round(16000 / 0.95)]
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(x, "reverb", 0)
    assert derived_seed("abc", 0, 1, "perturb") != derived_seed("abc", 0, 2, "perturb") != derived_seed("abc", 1, 1, "perturb")


class EchoTranscriber:
    """A transcriber whose answer names the input it saw (and its length), so the order and
    the perturbations that reached it can be read back."""

    spec, family, fingerprint = "echo", "audio-language", "echo-fp"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def transcribe(self, clips, *, batch_size=None) -> list[str]:
        self.calls.append([c.clip_hash for c in clips])
        return [f"{c.clip_hash} {len(c.audio)}" for c in clips]


def test_output_evidence_transcribes_each_clip_and_its_perturbations_in_one_call() -> None:
    clips = [ClipInput(f"h{i}", np.full(1600 * (i + 1), 0.1, np.float32), f"text {i}") for i in range(2)]
    target = EchoTranscriber()
    assert access_levels(target) == ("outputs",)
    evs = output_evidence(target, clips, EvidenceConfig(access="outputs", n_perturb=4))
    assert len(target.calls) == 1 and len(target.calls[0]) == 10
    for clip, ev in zip(clips, evs):
        assert ev.clip_hash == clip.clip_hash and ev.outputs is not None and ev.outputs.reference == clip.text
        assert ev.text == ev.outputs.texts[0] == f"{clip.clip_hash} {len(clip.audio)}"
        kinds = [t.split()[0].split("~")[1] for t in ev.outputs.texts[1:]]
        assert kinds == ["noise0", "gain1", "speed2", "noise3"]
    again = output_evidence(EchoTranscriber(), clips[1:], EvidenceConfig(access="outputs", n_perturb=4))
    assert again[0].outputs == evs[1].outputs  # a clip's evidence does not depend on its batch
    with pytest.raises(ValueError, match="cannot generate audio"):
        output_evidence(type("T", (), {"spec": "t", "family": "diffusion"})(), clips, EvidenceConfig(access="outputs"))


def test_outputs_access_refuses_given_mode_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="mode 'given'"):
        MIAConfig(access="outputs", mode="given")
    with pytest.raises(ValueError, match="access must be one of"):
        MIAConfig(access="grey-box")
    with pytest.raises(ValueError, match="n_generations"):
        MIAConfig(access="outputs", n_generations=0)


# -- through the pipeline ----------------------------------------------------------------------
TARGET = "zoo:lalm-small"
SMALL = dict(n_boot=50, n_perm=10, n_splits=4)


@pytest.fixture(scope="module")
def speech(tmp_path_factory, torch_one_thread) -> Workspace:
    return demo_workspace(tmp_path_factory.mktemp("outputs"), 10)


def test_mia_from_transcriptions_alone_finds_the_memorized_members(speech: Workspace) -> None:
    run_id, out = audit_mia(speech, "speech", TARGET, MIAConfig(access="outputs", **SMALL))
    run = speech.load_run(run_id)
    assert out["access"] == "outputs" and run["config"]["access"] == "outputs"
    table = speech.run_table(run, "indicators")
    assert {"wer", "cer", "exact", "len_ratio", "stability", "wer_perturbed"} <= set(table.columns)
    assert not any(k.startswith(("min_k", "ppl")) for k in table.columns)  # nothing white-box was read
    y = speech.run_table(run, "clips")["label"].to_numpy()
    assert out["indicators"]["wer"] == pytest.approx(roc_auc_score(y, -table["wer"].to_numpy()), abs=1e-9)
    assert out["auc"] > 0.8  # lalm-small trained 100 epochs on the members: it transcribes them exactly
    decoded = speech.run_table(run, "clips")["decoded"]
    assert decoded.str.len().gt(0).any()  # the model's answers are kept per clip
    # the same clips read white-box are a separate run, cached separately
    wb_id, wb = audit_mia(speech, "speech", TARGET, MIAConfig(**SMALL))
    assert wb["access"] == "white-box" and wb["computed"] > 0
    _, again = audit_mia(speech, "speech", TARGET, MIAConfig(access="outputs", **SMALL))
    assert again["computed"] == 0 and again["auc"] == out["auc"]


def test_dataset_inference_reads_the_outputs_level_run(speech: Workspace) -> None:
    mia_id, _ = audit_mia(speech, "speech", TARGET, MIAConfig(access="outputs", **SMALL))
    _, di = audit_di(speech, "speech", TARGET, DIRunConfig(mia_access="outputs", n_resamples=20, null_resamples=40))
    assert di["mia_run"] == mia_id and di["access"] == "outputs"
    assert di["scorer"] == "normalized_sum"  # output indicators have known directions
    assert 0.0 <= di["p_value"] <= 1.0 and di["verdict"]
    _, wb = audit_di(speech, "speech", TARGET, DIRunConfig(n_resamples=20, null_resamples=40))
    assert wb["mia_run"] != mia_id and wb["access"] == "white-box"


def test_references_at_the_outputs_level_return_their_own_answers(speech: Workspace) -> None:
    _, out = audit_mia(speech, "speech", TARGET, MIAConfig(access="outputs", references=("zoo:lalm-ref",), **SMALL))
    run = speech.latest_run("mia", "speech", TARGET, where=lambda c: c.get("access") == "outputs" and c.get("references"))
    table = speech.run_table(run, "indicators")
    assert {"resid:wer", "resid:stability"} <= set(table.columns)
    assert out["calibration"]["references"] == ["zoo:lalm-ref"] and out["uncalibrated"]["auc"] > 0.8


def test_disentanglement_at_the_outputs_level_loses_the_signal_with_the_audio(speech: Workspace) -> None:
    from core.pipeline.disentangle import audit_disentangle
    from core.stages import DisentangleConfig

    cfg = DisentangleConfig(conditions=("original", "silence"), mia=MIAConfig(access="outputs", **SMALL))
    run_id, out = audit_disentangle(speech, "speech", TARGET, cfg)
    original, silence = out["details"]["original"], out["details"]["silence"]
    assert original["auc"] > 0.8 and silence["auc"] < 0.75  # silence transcribes to nothing, for members and non-members alike
    assert speech.load_run(run_id)["config"]["mia"]["access"] == "outputs"
