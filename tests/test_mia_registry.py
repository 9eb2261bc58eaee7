"""The indicator registry: every family and every produced key has a direction."""

from __future__ import annotations

import numpy as np
import pytest

import core.mia  # noqa: F401  (fills the registry)
from core.mia import registry
from core.mia.diffusion import diffusion_features
from core.mia.indicators import token_indicator_keys
from core.mia.registry import aligned, direction, families, family_of, get_family, register_indicator
from core.evidence import DiffusionEvidence

EXPECTED_MEMBER_IS_HIGHER = {
    "ppl": False,
    "entropy": False,
    "prob_gap": True,
    "prob_gap_log": True,
    "zlib": False,
    "min_k": True,
    "max_k": True,
    "min_k_pp": True,
    "max_renyi": False,
    "infill": True,
    "infill_ref": True,
    "loss": False,
    "cond_gap": False,
    "loss_slope": True,
    "step_error": False,
    "pia": False,
    "loss_mean": False,
    "wer": False,
    "cer": False,
    "exact": True,
    "len_ratio": False,
    "stability": True,
    "wer_perturbed": False,
    "mel_dist": False,
    "chroma_sim": True,
    "clap_sim": True,
}

DIFFUSION_KEYS = tuple(
    diffusion_features(
        DiffusionEvidence(
            timesteps=np.array([100, 500, 900]),
            loss_cond=np.ones((3, 2)),
            loss_uncond=np.ones((3, 2)),
            step_error=np.ones(3),
            pia=np.ones(3),
        )
    )
)


def test_registered_families_are_the_expected_ones() -> None:
    assert {f.name for f in families()} == set(EXPECTED_MEMBER_IS_HIGHER)
    assert {f.evidence for f in families("tokens")} == {"tokens"}
    assert {f.name for f in families("diffusion")} == {"loss", "cond_gap", "loss_slope", "step_error", "pia", "loss_mean"}
    assert {f.name for f in families("outputs")} == {"wer", "cer", "exact", "len_ratio", "stability", "wer_perturbed",
                                                     "mel_dist", "chroma_sim", "clap_sim"}


@pytest.mark.parametrize("fam", families(), ids=lambda f: f.name)
def test_every_family_has_a_direction_and_metadata(fam: registry.IndicatorFamily) -> None:
    assert fam.higher_is_member is EXPECTED_MEMBER_IS_HIGHER[fam.name]
    assert direction(fam.name) == (1 if fam.higher_is_member else -1)
    assert fam.description and fam.reference
    d = fam.to_dict()
    assert d["name"] == fam.name and d["higher_is_member"] == fam.higher_is_member


@pytest.mark.parametrize("key", token_indicator_keys() + DIFFUSION_KEYS)
def test_every_produced_key_has_a_direction(key: str) -> None:
    fam = family_of(key)
    assert key == fam or key.startswith(fam + "@") or key.startswith(fam + "[")
    sign = direction(key)
    assert sign == (1 if EXPECTED_MEMBER_IS_HIGHER[fam] else -1)
    assert aligned(key, 2.5) == pytest.approx(2.5 * sign)
    np.testing.assert_array_equal(aligned(key, np.array([1.0, -3.0])), np.array([1.0, -3.0]) * sign)


@pytest.mark.parametrize("key", ["perplexity", "min_q@0.2", "Min_k@0.2", "", "@0.2", "loss @t1"])
def test_unknown_key_raises_listing_valid_ones(key: str) -> None:
    with pytest.raises(KeyError) as err:
        direction(key)
    message = str(err.value)
    for name in EXPECTED_MEMBER_IS_HIGHER:
        assert name in message


def test_duplicate_and_invalid_registration_raise() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_indicator("min_k", higher_is_member=True, evidence="tokens")(lambda s, *, text=None: {})
    with pytest.raises(ValueError):
        register_indicator("Bad-Name", higher_is_member=True, evidence="tokens")
    with pytest.raises(ValueError):
        register_indicator("ok_name", higher_is_member=True, evidence="video")  # type: ignore[arg-type]


def test_register_and_unregister_a_new_family() -> None:
    @register_indicator("test_only_count", higher_is_member=True, evidence="tokens", description="n", reference="-")
    def count(stats, *, text=None):  # type: ignore[no-untyped-def]
        return {"test_only_count": float(len(stats))}

    try:
        assert direction("test_only_count") == 1
        assert get_family("test_only_count").fn is count
    finally:
        registry.unregister_indicator("test_only_count")
    with pytest.raises(KeyError):
        get_family("test_only_count")
