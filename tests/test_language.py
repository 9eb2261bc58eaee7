"""A multilingual speech model decodes in one language per run, chosen by the target option,
else the dataset's metadata, else Whisper's language identification pooled over the
dataset's clips; the choice is recorded in the run and is part of the evidence identity.

The model here is a tiny random-weight multilingual Whisper (``tests/multilingual_fixture``);
the real Whisper base is in ``tests/test_targets_whisper_base_real.py``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.data.ingest import ingest_path
from core.runtime.store import Workspace
from core.targets import load_target
from core.targets.base import ClipInput, EvidenceConfig
from core.targets.language import LanguageChoice, dataset_language, normalize_language, pooled_vote, spread
from tests.multilingual_fixture import tiny_multilingual_whisper

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = dict(n_boot=20, n_perm=5, n_splits=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_multilingual_whisper(tmp_path_factory.mktemp("mlw") / "model")


@pytest.fixture()
def target(folder):
    return load_target(str(folder), device="cpu")


def _clips(n: int, seed: int = 0) -> list[ClipInput]:
    rng = np.random.default_rng(seed)
    return [ClipInput(f"c{i}", (rng.standard_normal(8000) * 0.1).astype(np.float32), "hello there", 16000) for i in range(n)]


# ---------------------------------------------------------------------------- names and votes
@pytest.mark.parametrize("written", ["fr", "FR", "fr-FR", "fr_ca", "French", "<|fr|>", " french "])
def test_a_language_is_read_as_users_and_datasets_write_it(written):
    assert normalize_language(written) == "fr"


def test_an_unknown_language_is_refused_naming_known_ones():
    with pytest.raises(ValueError, match="unknown language 'klingon'.*it knows: de, en"):
        normalize_language("klingon", ["en", "de"])
    with pytest.raises(ValueError):
        normalize_language("fr", ["en"])  # a language the model does not know


def test_pooled_vote_is_the_majority_of_per_clip_picks():
    rng = np.random.default_rng(3)
    codes = ["de", "en", "fr"]
    for _ in range(50):
        lp = rng.standard_normal((int(rng.integers(1, 12)), 3))
        code, votes = pooled_vote(lp, codes)
        counts = Counter(codes[int(i)] for i in lp.argmax(axis=1))  # an independent tally
        top = max(counts.values())
        tied = [c for c, n in counts.items() if n == top]
        want = max(tied, key=lambda c: lp[:, codes.index(c)].mean())
        assert votes == dict(counts) and code == want


def test_the_dataset_language_is_its_most_common_known_one():
    got = dataset_language({"en-US": 3, "en-GB": 2, "fr": 4, "tlh": 9}, ["en", "fr"])
    assert got == LanguageChoice("en", "dataset", {"en": 5, "fr": 4})
    assert "English (en), from the dataset's metadata (also fr 4 clip(s))" == got.text()
    assert dataset_language({}, ["en"]) is None and dataset_language({"tlh": 3}, ["en"]) is None
    assert LanguageChoice.from_dict(got.to_dict()) == got


def test_spread_covers_the_dataset_evenly():
    assert spread(5, 32) == [0, 1, 2, 3, 4]
    picked = spread(1000, 32)
    assert len(picked) == 32 and picked[0] == 0 and picked[-1] == 999 and np.all(np.diff(picked) >= 31)


# ---------------------------------------------------------------------------- the adapter
def test_a_multilingual_whisper_knows_its_languages_and_identifies_them_as_whisper_does(target):
    assert target.multilingual and target.needs_language and target.language_options() == ["de", "en", "fr"]
    clips = _clips(6)
    lp = target.language_logprobs(clips)
    assert lp.shape == (6, 3) and np.allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-5)
    # the per-clip pick equals transformers' own language detection
    feats = target._encode(clips, [[] for _ in clips])
    hf = target.model.detect_language(input_features=feats).reshape(-1).tolist()
    ids = [target.lang_to_id[c] for c in target.language_options()]
    assert [ids[i] for i in lp.argmax(axis=1)] == hf
    choice = target.detect_language(clips)
    assert choice.source == "detected" and sum(choice.votes.values()) == 6


def test_the_language_is_part_of_the_fingerprint_and_of_the_decoding(target):
    before = target.fingerprint
    target.set_language(LanguageChoice("fr", "dataset"))
    fr = target.fingerprint
    target.set_language(LanguageChoice("de", "dataset"))
    assert len({before, fr, target.fingerprint}) == 3
    target.set_language(LanguageChoice("fr", "dataset"))
    assert target.fingerprint == fr and target.model_fingerprint == before
    clips = _clips(3)
    notes = [[] for _ in clips]
    labels = target._generate(target._encode(clips, notes), notes)
    prefix = [target.lang_to_id["fr"], target.task_to_id["transcribe"], target.tokenizer.convert_tokens_to_ids("<|notimestamps|>")]
    assert all(lab[:3] == prefix for lab in labels)  # re-scored after the prompt it was decoded after
    given = target.evidence(clips, EvidenceConfig(mode="given"))
    text_ids = target.tokenizer("hello there", add_special_tokens=False).input_ids
    assert given[0].tokens.token_ids.tolist() == [*text_ids, target.eos_id]  # the prefix is context, never scored
    assert target._text_labels("hello there", [])[:3] == prefix
    # plain transformers generate with the same language and task gives the same tokens
    feats = target._encode(clips, [[] for _ in clips])
    plain = target.model.generate(feats, language="fr", task="transcribe", max_new_tokens=target.max_new_tokens).tolist()
    ev = target.evidence(clips, EvidenceConfig(mode="generated"))
    for row, e in zip(plain, ev):
        row = [t for t in row if t not in (target.decoder_start_id, *prefix)]
        want = row[: row.index(target.eos_id) + 1] if target.eos_id in row else row
        assert e.tokens.token_ids.tolist() == want


def test_an_option_language_is_kept_and_a_called_library_detects_one(folder):
    fixed = load_target(str(folder), device="cpu", language="German")
    assert fixed.language == LanguageChoice("de", "target option") and fixed.language_fixed
    fixed.set_language(LanguageChoice("fr", "dataset"))
    assert fixed.language.language == "de"
    fixed.set_language(LanguageChoice("fr", "request"), force=True)
    assert fixed.language.language == "fr"
    free = load_target(str(folder), device="cpu")
    free.evidence(_clips(2), EvidenceConfig(mode="generated"))  # no run chose one: the first call's clips decide
    assert free.language is not None and free.language.source == "detected"
    with pytest.raises(ValueError, match="unknown task"):
        load_target(str(folder), device="cpu", task="summarize")
    with pytest.raises(ValueError, match="unknown language"):
        load_target(str(folder), device="cpu", language="ja")


def test_an_english_only_model_takes_english_and_refuses_another_language(tmp_path):
    folder = tiny_multilingual_whisper(tmp_path / "en", multilingual=False)
    assert not load_target(str(folder), device="cpu", language="en").multilingual
    with pytest.raises(ValueError, match="not a multilingual model"):
        load_target(str(folder), device="cpu", language="fr")


# ---------------------------------------------------------------------------- through a run
def _dataset(root: Path, language: str | None, n: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("member", "nonmember"):
        for i in range(n):
            path = f"{label}/{label}_{i}.wav"
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / path, (rng.standard_normal(12000) * 0.1).astype(np.float32), 16000)
            rows.append({"path": path, "label": label, "text": "hello there", "speaker": f"s{i}"} | ({"language": language} if language else {}))
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_a_run_takes_the_datasets_language_else_detects_it_once_and_records_it(folder, tmp_path, monkeypatch):
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.evidence import get_target

    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, _dataset(tmp_path / "fr", "fr-FR"), "fr")
    ingest_path(ws, _dataset(tmp_path / "plain", None, seed=1), "plain")
    assert ws.dataset_meta("fr")["languages"] == {"fr-FR": 6} and "languages" not in ws.dataset_meta("plain")
    fr_id, fr = audit_mia(ws, "fr", str(folder), MIAConfig(**SMALL))
    assert fr["language"]["language"] == "fr" and fr["language"]["source"] == "dataset"
    plain_id, plain = audit_mia(ws, "plain", str(folder), MIAConfig(**SMALL))
    assert plain["language"]["source"] == "detected" and sum(plain["language"]["votes"].values()) == 6
    assert len(list((ws.cache_dir / "language").glob("*.json"))) == 1
    # a rerun reads the detection from the workspace: the model identifies nothing again
    target = get_target(str(folder), None, {})
    monkeypatch.setattr(type(target), "detect_language", lambda *a, **k: pytest.fail("detected again"))
    again_id, again = audit_mia(ws, "plain", str(folder), MIAConfig(**SMALL))
    assert again["language"] == plain["language"] and again["computed"] == 0
    # the language is part of the evidence identity
    de_id, de = audit_mia(ws, "fr", str(folder), MIAConfig(**SMALL, target_options=(("language", "de"),)))
    assert de["language"]["source"] == "target option" and de["computed"] == 6
    fp = {i: ws.load_run(i)["provenance"]["model_fingerprint"] for i in (fr_id, plain_id, again_id, de_id)}
    assert fp[fr_id] != fp[de_id] and fp[plain_id] == fp[again_id]
    # and every surface shows it
    from core.viz.report import _access_row

    stored = ws.load_run(de_id)
    assert _access_row(stored)[1].endswith("decoded in German (de), from the target option")
    # random weights transcribe "hello there" as garbage on both labels: the run says so first
    assert de["transcript_check"]["looks_wrong"] and de["warnings"][0].startswith("the model's transcriptions look wrong")
    _page_shows_the_warning_first(ws, "fr", str(folder), monkeypatch, tmp_path)


def _page_shows_the_warning_first(ws, dataset: str, target: str, monkeypatch, root) -> None:
    from streamlit.testing.v1 import AppTest

    from core.ui.common import _settings

    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_ROOTS", str(Path(target).parent))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    _settings.clear()
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "2_MIA_Audit.py"), default_timeout=120)
        at.query_params["dataset"] = dataset
        at.query_params["target"] = target
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        assert at.warning[0].value.startswith("The model's transcriptions look wrong (decoded in German (de)")
        assert sum("transcriptions look wrong" in w.value for w in at.warning) == 1  # once, above the numbers
        assert any("decoded in German (de), from the target option" in c.value for c in at.caption)
    finally:
        _settings.clear()


def test_an_audit_that_cannot_be_computed_is_refused_before_any_model_loads(folder, tmp_path, capsys, monkeypatch):
    import core.pipeline.evidence as evidence
    from core.cli import main
    from core.pipeline import MIAConfig, audit_mia
    from core.pipeline.di import DIRunConfig, audit_di
    from core.pipeline.disentangle import DisentangleConfig, audit_disentangle

    ws = Workspace(tmp_path / "ws")
    root = _dataset(tmp_path / "d", None, n=3)
    for p in (root / "member").glob("member_[12].wav"):
        p.unlink()
    ingest_path(ws, root, "one")
    monkeypatch.setattr(evidence, "get_target", lambda *a, **k: pytest.fail("a model was loaded"))
    spec = str(folder)
    for run in (lambda: audit_mia(ws, "one", spec, MIAConfig()), lambda: audit_di(ws, "one", spec, DIRunConfig()),
                lambda: audit_disentangle(ws, "one", spec, DisentangleConfig(conditions=("original",)))):
        with pytest.raises(ValueError, match="1 member and 3 non-member clip.*at least 2 of each"):
            run()
    assert main(["mia", "--dataset", "one", "--target", spec, "--workspace", str(ws.root)]) != 0
    assert "at least 2 of each" in capsys.readouterr().err


def test_a_served_multilingual_model_answers_in_the_requested_language(folder):
    import requests

    from core.targets.http_api import HttpTranscriber
    from core.targets.http_serve import TranscriptionServer, serve_in_thread

    server = TranscriptionServer(load_target(str(folder), device="cpu"))
    serve_in_thread(server)
    try:
        clip = _clips(1, seed=4)[0]
        direct = {}
        for lang in ("fr", "de"):
            t = load_target(str(folder), device="cpu", language=lang)
            direct[lang] = t.transcribe([clip])[0]
        for lang in ("fr", "de"):
            remote = HttpTranscriber(server.base_url, language=lang)
            assert remote.transcribe([clip]) == [direct[lang]]
            assert server.target.language == LanguageChoice(lang, "request")
        detected = load_target(str(folder), device="cpu").detect_language([clip]).language
        assert HttpTranscriber(server.base_url).transcribe([clip]) == [direct.get(detected) or load_target(
            str(folder), device="cpu", language=detected).transcribe([clip])[0]]
        assert HttpTranscriber(server.base_url, language="fr").fingerprint != HttpTranscriber(server.base_url).fingerprint
        bad = requests.post(f"{server.base_url}/audio/transcriptions", files={"file": ("c.wav", b"RIFF", "audio/wav")},
                            data={"language": "klingon"}, timeout=10)
        assert bad.status_code == 400
    finally:
        server.shutdown()
        server.server_close()
    torch.set_num_threads(1)


def test_common_voice_and_lhotse_carry_their_language_into_the_dataset(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rng = np.random.default_rng(0)
    cv = tmp_path / "cv-corpus-17.0" / "de"
    (cv / "clips").mkdir(parents=True)
    rows = []
    for i in range(4):
        sf.write(cv / "clips" / f"c{i}.wav", (rng.standard_normal(8000) * 0.1).astype(np.float32), 16000)
        rows.append({"client_id": f"s{i}", "path": f"c{i}.wav", "sentence": "hallo", "label": "member" if i < 2 else "nonmember"})
    with open(cv / "train.tsv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "locale"], delimiter="\t")
        w.writeheader()
        w.writerows([r | {"locale": "de-AT"} for r in rows])
    ingest_path(ws, tmp_path / "cv-corpus-17.0", "cv2")
    assert ws.dataset_meta("cv2")["languages"] == {"de-AT": 4}
    lh = tmp_path / "lh"
    lh.mkdir()
    recs, sups = [], []
    for i in range(4):
        wav = f"{'members' if i % 2 else 'nonmembers'}/r{i}.wav"
        (lh / wav).parent.mkdir(exist_ok=True)
        sf.write(lh / wav, (rng.standard_normal(8000) * 0.1).astype(np.float32), 16000)
        recs.append({"id": f"r{i}", "sources": [{"type": "file", "channels": [0], "source": wav}], "sampling_rate": 16000,
                     "num_samples": 8000, "duration": 0.5, "channel_ids": [0]})
        sups.append({"id": f"s{i}", "recording_id": f"r{i}", "start": 0, "duration": 0.5, "channel": 0, "text": "bonjour",
                     "language": "French", "speaker": f"p{i}"})
    (lh / "recordings.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    (lh / "supervisions.jsonl").write_text("\n".join(json.dumps(s) for s in sups))
    ingest_path(ws, lh, "lh")
    assert ws.dataset_meta("lh")["languages"] == {"French": 4}
    assert dataset_language(ws.dataset_meta("lh")["languages"]).language == "fr"


def test_the_languages_a_target_declares_are_read_from_its_files(folder, tmp_path):
    from core.targets.language import declared_languages

    assert declared_languages(str(folder)) == ["de", "en", "fr"]
    assert declared_languages(str(tiny_multilingual_whisper(tmp_path / "en", multilingual=False))) == []
    assert declared_languages("zoo:lalm-small") == [] and len(declared_languages("http://127.0.0.1:9/v1")) >= 99
