"""The zoo's reference models: their cards show they never trained on a demo clip, each
target names its natural reference, and the shipped models are listed and keep their
fingerprints."""

from __future__ import annotations

import json

import pytest

from core.cli import main
from core.targets import load_target
from core.targets.fingerprint import file_sha256, folder_fingerprint
from core.recipes.zoo.data import HASH_PREFIX, demo_clips, text_key
from core.targets.zoo.registry import ZOO, get_zoo, zoo_dir
from core.recipes.zoo import TRAINERS, trainer
from core.registry import UnknownName

# The demo datasets whose clips each family's reference must never have trained on
# (demo-speech-shifted shares demo-speech's sentences and member files).
DEMO = {"demo-speech": ("demo-speech", "demo-speech-shifted"), "demo-sounds": ("demo-sounds",)}
REFERENCES = ["lalm-ref", "lalm-base", "lalm-shift-base", "ar-ref", "diffusion-ref"]
NEW = REFERENCES + ["lalm-ft", "lalm-shift-ft"]
# folder_fingerprint (weights and configs, no adapter options) of the shipped models: a
# rebuild or an edited file changes it and every cached evidence keyed by it.
FINGERPRINTS = {
    "lalm-ref": "ea6388a10515a4e6",
    "lalm-base": "c104493856392962",
    "lalm-ft": "5a6b342f23576efb",
    "lalm-shift-base": "2c0805cec3bca5a3",
    "lalm-shift-ft": "f7c6fd5ab2c79aaa",
    "ar-ref": "9fdd6a895dfa389e",
    "diffusion-ref": "a01e60ac2f293723",
}


def _card(name: str) -> dict:
    return json.loads((zoo_dir() / name / "card.json").read_text(encoding="utf-8"))


def _members(card: dict) -> list[str]:
    return card["member_hashes"] if "member_hashes" in card else card["members"]


def _demo(dataset: str) -> list:
    return [c for d in DEMO[dataset] for label in ("member", "nonmember") for c in demo_clips(d, label)]


def test_every_catalogued_model_has_one_trainer_and_every_trainer_a_catalogued_model():
    assert list(TRAINERS) == list(ZOO)
    with pytest.raises(UnknownName, match="unknown zoo model 'lalm-tiny'; valid: ar-large"):
        trainer("lalm-tiny")
    assert main(["zoo", "build", "--name", "lalm-tiny"]) == 2  # one line: unknown zoo model, the valid ones


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_card_excludes_every_demo_clip(name):
    card = _card(name)
    demo = _demo(get_zoo(name).dataset)
    assert _members(card) == []
    pool = card["pool_clips"] if "data" in card else card["training_data"]["pool_clips"]  # audio-language / sound families
    n_train = card["data"]["n_train"] if "data" in card else card["training_data"]["n_train_clips"]
    assert pool["n"] == n_train == len(pool["text_sha256_16"]) == len(pool["content_sha256_16"]) > 0
    assert not {text_key(c.text) for c in demo} & set(pool["text_sha256_16"])
    assert not {c.clip_hash[:HASH_PREFIX] for c in demo} & set(pool["content_sha256_16"])


def test_text_keys_normalize_case_and_spacing():
    assert text_key("The  Old mill.") == text_key("the old MILL.") != text_key("the old mill")
    assert len(text_key("x")) == HASH_PREFIX


def test_fine_tuned_model_starts_from_the_base_and_trains_on_the_members_only():
    card, base = _card("lalm-ft"), _card("lalm-base")
    assert card["member_hashes"] == [c.clip_hash for c in demo_clips("demo-speech", "member")]
    assert card["data"]["n_pool"] == 0 and card["data"]["n_train"] == len(card["member_hashes"])
    assert card["init_from"] == {"path": "lalm-base", "weights_sha256": file_sha256(zoo_dir() / "lalm-base" / "model.safetensors")}
    assert card["recipe"]["lr"] < base["recipe"]["lr"] and card["epochs"] < base["epochs"]
    assert {k: card["recipe"][k] for k in ("d_model", "layers", "heads", "ffn_dim", "window_s")} == {
        k: base["recipe"][k] for k in ("d_model", "layers", "heads", "ffn_dim", "window_s")
    }


def test_domain_shift_pair_base_never_heard_the_domain_and_the_fine_tune_adds_in_domain_clips():
    base, card = _card("lalm-shift-base"), _card("lalm-shift-ft")
    assert "voices='other', chain='hot'" in base["data"]["pool"] and base["recipe"] == _card("lalm-base")["recipe"] | {"pool_seed": 1401}
    assert card["init_from"] == {"path": "lalm-shift-base",
                                 "weights_sha256": file_sha256(zoo_dir() / "lalm-shift-base" / "model.safetensors")}
    assert card["member_hashes"] == [c.clip_hash for c in demo_clips("demo-speech", "member")]
    # in-domain pool clips beside the members, none of them a demo clip or a demo text
    pool, demo = card["pool_clips"], _demo("demo-speech")
    assert card["data"]["n_pool"] == pool["n"] == 50 and card["data"]["n_train"] == 150
    assert "voices='demo', chain='clean'" in card["data"]["pool"]
    assert not {text_key(c.text) for c in demo} & set(pool["text_sha256_16"])
    assert not {c.clip_hash[:HASH_PREFIX] for c in demo} & set(pool["content_sha256_16"])
    assert card["recipe"]["lr"] < base["recipe"]["lr"] and card["epochs"] < base["epochs"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_card_names_the_reference_and_the_reference_never_saw_the_audited_clips(name):
    entry = get_zoo(name)
    assert _card(name).get("reference") == entry.reference
    if entry.reference is None:
        return
    ref = get_zoo(entry.reference)
    assert (ref.family, ref.dataset) == (entry.family, entry.dataset)
    audited = {c.clip_hash for c in demo_clips(entry.dataset, "member")} | {c.clip_hash for c in demo_clips(entry.dataset, "nonmember")}
    assert not set(_members(_card(ref.name))) & audited


def test_references_are_listed_by_the_cli(capsys):
    assert main(["targets", "--json"]) == 0
    rows = {r["spec"]: r for r in json.loads(capsys.readouterr().out)["targets"]}
    for name in NEW:
        row = rows[f"zoo:{name}"]
        assert row["available"] and row["family"] == get_zoo(name).family and row["reference"] == get_zoo(name).reference


@pytest.mark.parametrize("name", NEW)
def test_shipped_fingerprint_is_stable(name):
    folder = zoo_dir() / name
    assert folder_fingerprint(folder) == FINGERPRINTS[name]
    a = load_target(f"zoo:{name}", device="cpu")
    fp = a.fingerprint
    a.unload()
    b = load_target(f"zoo:{name}", device="cpu")
    assert b.fingerprint == fp and b.spec == f"zoo:{name}"
    b.unload()


def test_zoo_build_micro_from_the_cli(tmp_path, capsys):
    rc = main(["zoo", "build", "--name", "ar-ref", "--micro", "--out", str(tmp_path), "--json"])
    built = json.loads(capsys.readouterr().out)["built"]["ar-ref"]
    assert rc == 0 and built["micro"] and built["reference"] is None and built["n_members"] == 0
    card = json.loads((tmp_path / "ar-ref" / "card.json").read_text())
    assert card["training_data"]["pool_clips"]["n"] == card["training_data"]["n_train_clips"] > 0


def test_content_hash_of_a_regenerated_corpus_clip_is_its_file_hash():
    # The content half of a card's training record would catch a pool clip equal to a
    # corpus clip: regenerating the corpus's first sound event gives its file's hash.
    from core.recipes.corpus.corpus import CORPUS_HALF, _rng, _sound_events, file_sha256

    members = demo_clips("demo-sounds", "member")
    audio, caption = _sound_events(_rng(0, "corpus-sounds"), 2 * len(members), half=CORPUS_HALF, sr=16000)[0]
    assert caption == members[0].text
    assert file_sha256(audio, 16000) == members[0].clip_hash


def test_saw_members_agrees_with_each_card():
    """The picker says "never saw" only for entries whose card lists no member."""
    import json

    from core.targets.zoo.registry import ZOO, assets_dir

    for name, entry in ZOO.items():
        card = json.loads((assets_dir() / "zoo" / name / "card.json").read_text())
        n = card.get("n_members", len(card.get("member_hashes", card.get("members", []))))
        assert (n > 0) == entry.saw_members, name
