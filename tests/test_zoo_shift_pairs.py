"""What every sound domain-shift pair of the zoo (``ar-shift-*``, ``diffusion-shift-*``)
keeps: it is shipped and listed with its fingerprint, and no clip of its pools is an audited
clip or shares an audited caption. What each pair keeps of its own is in
``tests/test_ar_shift.py`` and ``tests/test_diffusion_shift.py``."""

from __future__ import annotations

import json

import pytest

from core.recipes.zoo.data import HASH_PREFIX, demo_clips, text_key
from core.targets.fingerprint import folder_fingerprint
from core.targets.zoo.registry import get_zoo, zoo_dir

SOUNDS = "demo-sounds"
# family and folder_fingerprint of each shipped model (weights and configs): a rebuild or an
# edited file changes it and every cached evidence keyed by it.
PAIRS = {"ar-shift-base": ("autoregressive", "6ce53770ab9838d1"), "ar-shift-ft": ("autoregressive", "51384db0b8dcdfc5"),
         "diffusion-shift-base": ("diffusion", "e484f1357c46429a"), "diffusion-shift-ft": ("diffusion", "8a88644a24fe3af1")}


def zoo_card(name: str) -> dict:
    """The card of the shipped zoo model ``name``."""
    return json.loads((zoo_dir() / name / "card.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_the_pair_is_shipped_listed_and_keeps_its_fingerprint(name):
    family, fingerprint = PAIRS[name]
    entry = get_zoo(name)
    assert entry.family == family and entry.dataset == SOUNDS
    assert zoo_card(name)["reference"] == entry.reference and entry.saw_members == name.endswith("-shift-ft")
    assert folder_fingerprint(zoo_dir() / name) == fingerprint


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_no_pool_clip_of_the_pair_is_an_audited_clip_or_shares_its_caption(name):
    demo = [c for label in ("member", "nonmember") for c in demo_clips(SOUNDS, label)]
    pool = zoo_card(name)["training_data"]["pool_clips"]
    assert pool["n"] == len(pool["text_sha256_16"]) == len(pool["content_sha256_16"]) > 0
    assert not {text_key(c.text) for c in demo} & set(pool["text_sha256_16"])
    assert not {c.clip_hash[:HASH_PREFIX] for c in demo} & set(pool["content_sha256_16"])
