"""Diffusion features against direct loops over timesteps and noise draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import linregress

from core.mia.diffusion import diffusion_features
from core.evidence import DiffusionEvidence


def test_features_match_reference() -> None:
    rng = np.random.default_rng(0)
    t = np.array([50, 200, 400, 800])
    cond = rng.uniform(0.1, 1.0, size=(4, 3))
    uncond = rng.uniform(0.1, 1.0, size=(4, 3))
    step = rng.uniform(size=4)
    got = diffusion_features(DiffusionEvidence(t, cond, uncond, step))
    expected_keys = (
        [f"loss@t{x}" for x in t] + [f"cond_gap@t{x}" for x in t] + ["loss_slope"]
        + [f"step_error@t{x}" for x in t] + ["loss_mean"]
    )
    assert list(got) == expected_keys
    means = []
    for a, ts in enumerate(t):
        mc = sum(cond[a, k] for k in range(3)) / 3
        mu = sum(uncond[a, k] for k in range(3)) / 3
        means.append(mc)
        assert got[f"loss@t{ts}"] == pytest.approx(mc)
        assert got[f"cond_gap@t{ts}"] == pytest.approx(mc - mu)
        assert got[f"step_error@t{ts}"] == pytest.approx(step[a])
    assert got["loss_slope"] == pytest.approx(linregress(t, means).slope)
    assert got["loss_mean"] == pytest.approx(cond.sum() / cond.size)


def test_optional_parts_and_single_timestep() -> None:
    ev = DiffusionEvidence(np.array([300]), np.array([[0.5, 0.7]]), np.zeros((0,)))
    got = diffusion_features(ev)
    assert set(got) == {"loss@t300", "loss_slope", "loss_mean"}
    assert math.isnan(got["loss_slope"])
    assert got["loss@t300"] == pytest.approx(0.6)
    with pytest.raises(ValueError):
        diffusion_features(DiffusionEvidence(np.zeros(0, dtype=np.int64), np.zeros((0, 1)), np.zeros((0, 1))))


def test_round_trip_through_evidence_bytes() -> None:
    from core.evidence import ClipEvidence

    rng = np.random.default_rng(1)
    ev = DiffusionEvidence(np.array([10, 20]), rng.uniform(size=(2, 4)), rng.uniform(size=(2, 4)), rng.uniform(size=2))
    back = ClipEvidence.from_bytes(ClipEvidence("h", diffusion=ev).to_bytes()).diffusion
    assert back is not None
    assert diffusion_features(back) == pytest.approx(diffusion_features(ev))


def test_pia_features_only_when_measured() -> None:
    from core.evidence import ClipEvidence
    from core.mia.registry import direction

    rng = np.random.default_rng(2)
    t = np.array([10, 100, 500])
    pia = rng.uniform(size=3)
    ev = DiffusionEvidence(t, rng.uniform(size=(3, 2)), rng.uniform(size=(3, 2)), rng.uniform(size=3), pia)
    got = diffusion_features(ev)
    assert [k for k in got if k.startswith("pia@")] == ["pia@t10", "pia@t100", "pia@t500"]
    for a, ts in enumerate(t):
        assert got[f"pia@t{ts}"] == pytest.approx(pia[a])
    assert direction("pia@t100") == -1  # lower = member
    assert not any(k.startswith("pia@") for k in diffusion_features(DiffusionEvidence(t, ev.loss_cond, ev.loss_uncond)))
    back = ClipEvidence.from_bytes(ClipEvidence("h", diffusion=ev).to_bytes()).diffusion
    np.testing.assert_array_equal(back.pia, pia)
    # evidence written before PIA existed reads back without it
    old = ClipEvidence.from_bytes(ClipEvidence("h", diffusion=DiffusionEvidence(t, ev.loss_cond, ev.loss_uncond)).to_bytes())
    assert old.diffusion.pia.size == 0
