"""Cross-fitted shadows (:func:`core.mia.calibration.cross_fit_assignment`,
:func:`core.mia.calibration.cross_fitted_reference`): every clip is calibrated against the
``m - 1`` shadows that never trained on it, so the known non-members a set of shadows
trained on stay in the audit.

- the assignment, checked against a loop written from its rule: a clip shadow ``j``
  trained on loses ``j``; any other clip loses the shadow its content hash picks; shadows
  on the same clips (a set's seeds) form one fold, and a clip loses a whole fold;
- the collapsed reference against a per-clip loop (NaN where a used shadow has none);
- the level: with no membership signal (a target and shadows that differ only by clip
  difficulty, per-shadow offsets and noise), Mann-Whitney's test of the cross-fitted
  scores rejects at its level over 600 simulated audits (shadows with offsets of their own:
  members and non-members are each calibrated against a mix of them), with one shadow a
  fold and with two seeds a fold.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, mannwhitneyu

from core.mia.calibration import cross_fit_assignment, cross_fit_folds, cross_fitted_reference


def _hashes(n: int, prefix: str = "c") -> list[str]:
    return [hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


def test_the_assignment_follows_its_rule():
    h = _hashes(40)
    trained = [set(h[0:5]), set(h[5:10]), set(h[10:15])]
    got = cross_fit_assignment(h, trained)
    for i, c in enumerate(h):
        inside = [j for j, s in enumerate(trained) if c in s]
        drop = inside[0] if inside else int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) % 3
        assert list(got[:, i]) == [j != drop for j in range(3)]
    assert (got.sum(axis=0) == 2).all()
    # the hash decides, not the position: the same clip keeps its shadows in any order of clips
    again = cross_fit_assignment(h[::-1], trained)
    assert np.array_equal(again[:, ::-1], got)


def test_shadows_on_the_same_clips_form_one_fold_and_a_clip_loses_a_whole_fold():
    h = _hashes(60)
    parts = [set(h[0:5]), set(h[5:10]), set(h[10:15])]
    trained = [parts[j % 3] for j in range(6)]  # three folds, two seeds on each (a set built with --vary both)
    assert cross_fit_folds(trained) == [0, 1, 2, 0, 1, 2] and cross_fit_folds(parts) == [0, 1, 2]
    got = cross_fit_assignment(h, trained)
    for i, c in enumerate(h):
        fold = next((g for g, s in enumerate(parts) if c in s), None)
        drop = fold if fold is not None else int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) % 3
        assert list(got[:, i]) == [j % 3 != drop for j in range(6)]
    assert (got.sum(axis=0) == 4).all()
    # with one seed a fold, the two layouts agree clip by clip
    assert np.array_equal(cross_fit_assignment(h, parts), got[:3])


def test_overlapping_training_sets_a_single_fold_and_unequal_folds_are_refused():
    h = _hashes(6)
    with pytest.raises(ValueError, match="disjoint"):
        cross_fit_assignment(h, [set(h[:3]), set(h[2:4])])
    with pytest.raises(ValueError, match="two or more"):
        cross_fit_assignment(h, [set(h[:3])])
    with pytest.raises(ValueError, match=r"two or more shadow references on disjoint clips, got 3 shadow\(s\) on 1 set"):
        cross_fit_assignment(h, [set(h[:3])] * 3)  # seeds on the same clips: nothing to cross-fit with
    with pytest.raises(ValueError, match="as many shadows on each set of clips: 2 sets with 2, 1 shadows"):
        cross_fit_assignment(h, [set(h[:3]), set(h[:3]), set(h[3:])])


def test_the_collapsed_reference_is_the_mean_of_the_shadows_each_clip_may_use():
    rng = np.random.default_rng(0)
    h = _hashes(30)
    tables = [pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30), f"only{j}": 0.0}, index=h) for j in range(3)]
    tables[1].loc[h[4], "a"] = np.nan
    avail = cross_fit_assignment(h, [set(h[:6]), set(h[6:12]), set(h[12:18])])
    got = cross_fitted_reference(tables, avail)
    assert list(got.columns) == ["a", "b"] and list(got.index) == h
    for i, c in enumerate(h):
        for k in ("a", "b"):
            vals = [tables[j].loc[c, k] for j in range(3) if avail[j, i]]
            want = np.nan if any(np.isnan(vals)) else sum(vals) / len(vals)
            assert got.loc[c, k] == pytest.approx(want, nan_ok=True)
    assert np.isnan(got.loc[h[4], "a"]) == bool(avail[1, 4])
    with pytest.raises(ValueError, match="assignment"):
        cross_fitted_reference(tables[:2], avail)


def _null_audit(rng: np.random.Generator, h: list[str], y: np.ndarray, trained: list[set[str]], avail: np.ndarray) -> float:
    """One audit with no membership: the target and each shadow see the clip's difficulty
    (shadow j shifted by its own offset), plus noise; a shadow fits the clips it trained on
    better (masked out by the assignment)."""
    n = len(h)
    difficulty = rng.normal(size=n)
    target = difficulty + 0.3 * rng.normal(size=n)
    offsets = rng.normal(scale=0.5, size=len(trained))
    refs = [pd.DataFrame({"loss": difficulty + offsets[j] + 0.3 * rng.normal(size=n)
                          - np.array([1.0 if c in trained[j] else 0.0 for c in h])}, index=h) for j in range(len(trained))]
    score = target - cross_fitted_reference(refs, avail)["loss"].to_numpy()
    return float(mannwhitneyu(score[y == 1], score[y == 0], alternative="two-sided").pvalue)


@pytest.mark.parametrize("seeds", [1, 2])
def test_with_no_membership_the_cross_fitted_scores_hold_the_level(seeds):
    rng = np.random.default_rng(1)
    h = _hashes(200, "null")
    y = np.array([1] * 100 + [0] * 100)
    nonmembers = [c for c, lab in zip(h, y) if lab == 0]
    trained = [set(nonmembers[:50]), set(nonmembers[50:])] * seeds
    avail = cross_fit_assignment(h, trained)
    sims = 600
    rejected = sum(_null_audit(rng, h, y, trained, avail) < 0.05 for _ in range(sims))
    # two-sided binomial bounds at 0.001 around the nominal 5%
    assert binom.ppf(0.0005, sims, 0.05) <= rejected <= binom.ppf(0.9995, sims, 0.05), rejected

