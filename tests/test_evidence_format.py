"""The evidence file format: lossless round trip, legacy ``.npz`` entries still read,
damaged entries are cache misses."""

from __future__ import annotations

import io

import numpy as np
import pytest

from core.runtime.cache import EvidenceCache, cached_evidence, evidence_key
from core.evidence import MAGIC, ClipEvidence, DiffusionEvidence, TokenStats

STATS = ["logprob", "entropy", "top1", "top2", "mean_logp", "std_logp", "renyi_05", "renyi_2", "renyi_inf"]


def _tokens(n: int, seed: int = 0, infill: bool = False, infill_ref: bool = False) -> TokenStats:
    rng = np.random.default_rng(seed)
    extra = {"infill": rng.standard_normal(n)} if infill else {}
    if infill_ref:
        extra["infill_ref"] = rng.standard_normal(n)
    return TokenStats(token_ids=rng.integers(0, 500, n), **{k: rng.standard_normal(n) for k in STATS}, **extra)


def _same(a: ClipEvidence, b: ClipEvidence) -> None:
    assert (a.clip_hash, a.text, a.notes) == (b.clip_hash, b.text, b.notes)
    for part in ("tokens", "diffusion"):
        x, y = getattr(a, part), getattr(b, part)
        assert (x is None) == (y is None)
        if x is not None:
            xa, ya = x.to_arrays(), y.to_arrays()
            assert xa.keys() == ya.keys()
            for k in xa:
                assert xa[k].dtype == ya[k].dtype and xa[k].shape == ya[k].shape
                np.testing.assert_array_equal(xa[k], ya[k])


@pytest.mark.parametrize("ev", [
    ClipEvidence("a" * 64, tokens=_tokens(37), text="Who kept one heavy candle? “quoted” ünïcode", notes=("truncated", "x")),
    ClipEvidence("b" * 64, tokens=_tokens(0), text=""),
    ClipEvidence("c" * 64, tokens=_tokens(12, infill=True)),
    ClipEvidence("f" * 64, tokens=_tokens(12, infill=True, infill_ref=True)),
    ClipEvidence("d" * 64, diffusion=DiffusionEvidence(np.array([10, 50, 700]), np.random.default_rng(1).random((3, 4)),
                                                       np.random.default_rng(2).random((3, 4)), np.random.default_rng(3).random(3))),
])
def test_round_trip_is_lossless(ev):
    data = ev.to_bytes()
    assert data.startswith(MAGIC)
    back = ClipEvidence.from_bytes(data)
    _same(ev, back)
    part = back.tokens if back.tokens is not None else back.diffusion
    for a in part.to_arrays().values():  # writable copies, not views of the file's bytes
        assert a.flags.writeable


def test_legacy_npz_entries_are_read(tmp_path):
    ev = ClipEvidence("e" * 64, tokens=_tokens(9), text="old", notes=("n",))
    arrays = {f"tokens.{k}": v for k, v in ev.tokens.to_arrays().items()}
    arrays.update({"meta.text": np.array("old"), "meta.notes": np.array(["n"]), "meta.clip_hash": np.array("e" * 64),
                   "meta.version": np.array(1)})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _same(ev, ClipEvidence.from_bytes(buf.getvalue()))
    # an old cache entry (``.npz`` name) is a hit
    cache = EvidenceCache(tmp_path)
    key = evidence_key("fp", "e" * 64, {}, 16000)
    path = cache.root / "fp" / key[:2] / f"{key}.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(buf.getvalue())
    got, computed = cached_evidence(cache, "fp", ["e" * 64], {}, 16000, None)
    assert computed == 0 and got[0].text == "old" and cache.count() == 1


def test_damaged_entry_is_recomputed(tmp_path):
    cache = EvidenceCache(tmp_path)
    ev = ClipEvidence("f" * 64, tokens=_tokens(5))
    cached_evidence(cache, "fp", ["f" * 64], {}, 16000, lambda idx: [ev])
    (path,) = list(cache.root.rglob("*.ev"))
    path.write_bytes(path.read_bytes()[:30])
    calls = []
    got, computed = cached_evidence(cache, "fp", ["f" * 64], {}, 16000, lambda idx: calls.append(idx) or [ev])
    assert computed == 1 and calls == [[0]]
    _same(got[0], ev)


def test_missing_compute_is_an_error_only_when_something_is_missing(tmp_path):
    cache = EvidenceCache(tmp_path)
    with pytest.raises(ValueError, match="compute or run"):
        cached_evidence(cache, "fp", ["g" * 64], {}, 16000, None)


def test_evidence_without_infill_ref_reads_and_gives_nan_indicators():
    """Evidence cached before ``infill_ref`` existed (same format version) still reads; its
    ``infill_ref@*`` columns are NaN beside clips that have them."""
    from core.mia.aggregate import indicator_table

    old = ClipEvidence.from_bytes(ClipEvidence("g" * 64, tokens=_tokens(20, infill=True)).to_bytes())
    new = ClipEvidence.from_bytes(ClipEvidence("h" * 64, tokens=_tokens(20, seed=1, infill=True, infill_ref=True)).to_bytes())
    assert old.tokens.infill_ref is None and new.tokens.infill_ref is not None
    table = indicator_table([old, new])
    assert np.isnan(table.loc["g" * 64, "infill_ref@0.2"]) and np.isfinite(table.loc["h" * 64, "infill_ref@0.2"])
    assert np.isfinite(table["infill@0.2"]).all()
