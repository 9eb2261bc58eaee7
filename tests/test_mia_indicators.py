"""Every token indicator against a slow loop written from the formulas.

The reference works from the full logits (scipy log_softmax), token by token, and selects
tokens with integer arithmetic ``max(1, (i * N) // 20)`` for k = i / 20.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pytest
from scipy.special import log_softmax

from core.mia.indicators import compute_indicators, token_indicator_keys
from core.targets.token_stats import LOGPROB_FLOOR, STD_FLOOR, token_stats_from_logits

GRID = [(i, round(i * 0.05, 2)) for i in range(1, 13)]


def reference_indicators(
    logits: np.ndarray,
    targets: np.ndarray,
    text: str | None,
    infill: np.ndarray | None = None,
    infill_ref: np.ndarray | None = None,
) -> dict[str, float]:
    N = len(targets)
    lp_t, ent, gap, loggap, zpp = [], [], [], [], []
    renyi: dict[str, list[float]] = {"0.5": [], "1": [], "2": [], "inf": []}
    for row, t in zip(logits, targets):
        lp = np.maximum(log_softmax(row.astype(np.float64)), LOGPROB_FLOOR)
        p = np.exp(log_softmax(row.astype(np.float64)))
        lp_t.append(lp[t])
        h = -sum(p[v] * lp[v] for v in range(len(p)))
        ent.append(h)
        s = sorted(p, reverse=True)
        gap.append(s[0] - s[1])
        loggap.append(math.log(max(s[0], 1e-12)) - math.log(max(s[1], 1e-12)))  # VL-MIA's log-probability gap
        mu = -h
        sd = max(math.sqrt(sum(p[v] * (lp[v] - mu) ** 2 for v in range(len(p)))), STD_FLOOR)
        zpp.append((lp[t] - mu) / sd)
        renyi["0.5"].append(2.0 * math.log(sum(math.sqrt(q) for q in p)))
        renyi["1"].append(h)
        renyi["2"].append(-math.log(sum(q * q for q in p)))
        renyi["inf"].append(-math.log(max(p)))
    nll = [-v for v in lp_t]
    raw = text.encode("utf-8") if text is not None else np.asarray(targets).astype("<i8").tobytes()
    out = {
        "ppl": math.exp(sum(nll) / N),
        "entropy": sum(ent) / N,
        "prob_gap": sum(gap) / N,
        "prob_gap_log": sum(loggap) / N,
        "zlib": (sum(nll) / N) / len(zlib.compress(raw)),
    }

    def low(vals: list[float], i: int) -> float:
        n = max(1, (i * len(vals)) // 20)
        return sum(sorted(vals)[:n]) / n

    def high(vals: list[float], i: int) -> float:
        n = max(1, (i * len(vals)) // 20)
        return sum(sorted(vals, reverse=True)[:n]) / n

    for i, k in GRID:
        out[f"min_k@{k}"] = low(lp_t, i)
        out[f"max_k@{k}"] = high(lp_t, i)
        out[f"min_k_pp@{k}"] = low(zpp, i)
        for a, vals in renyi.items():
            out[f"max_renyi[{a}]@{k}"] = high(vals, i)
        for name, scores in (("infill", infill), ("infill_ref", infill_ref)):
            if scores is not None:
                out[f"{name}@{k}"] = low([v for v in scores if np.isfinite(v)], i)
    return out


@pytest.mark.parametrize("N", [1, 7, 20, 33])
@pytest.mark.parametrize("text", [None, "the quick brown fox, the quick brown fox"])
def test_indicators_match_reference(N: int, text: str | None) -> None:
    rng = np.random.default_rng(N)
    V = 23
    logits = rng.normal(scale=2.5, size=(N, V))
    targets = rng.integers(0, V, size=N)
    got = compute_indicators(token_stats_from_logits(logits, targets), text)
    ref = reference_indicators(logits, targets, text)
    assert set(got) == set(ref) == set(token_indicator_keys(with_infill=False))
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_infill_family_uses_finite_scores_only() -> None:
    rng = np.random.default_rng(5)
    N, V = 26, 17
    logits = rng.normal(size=(N, V))
    targets = rng.integers(0, V, size=N)
    infill = rng.normal(size=N)
    infill[0] = np.nan
    infill[7] = np.nan
    infill_ref = rng.normal(size=N)
    infill_ref[[0, 3]] = np.nan
    st = dataclasses.replace(token_stats_from_logits(logits, targets), infill=infill, infill_ref=infill_ref)
    got = compute_indicators(st, "x")
    ref = reference_indicators(logits, targets, "x", infill, infill_ref)
    assert set(got) == set(ref) == set(token_indicator_keys())
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    all_nan = dataclasses.replace(st, infill=np.full(N, np.nan))
    assert not any(k.startswith("infill@") for k in compute_indicators(all_nan, "x"))
    # evidence written before infill_ref existed carries only infill
    old = dataclasses.replace(st, infill_ref=None)
    assert not any(k.startswith("infill_ref@") for k in compute_indicators(old, "x"))


def test_key_format_and_grid() -> None:
    keys = token_indicator_keys()
    assert len(keys) == len(set(keys)) == 5 + 12 * 3 + 12 * 4 + 12 * 2
    for key in ("min_k@0.05", "min_k@0.2", "min_k_pp@0.6", "max_k@0.15", "max_renyi[0.5]@0.2",
                "max_renyi[1]@0.2", "max_renyi[2]@0.2", "max_renyi[inf]@0.2", "infill@0.2", "infill_ref@0.2",
                "max_renyi[inf]@0.55", "min_k@0.35"):
        assert key in keys


def test_zlib_uses_token_bytes_without_text() -> None:
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(12, 11))
    targets = rng.integers(0, 11, size=12)
    st = token_stats_from_logits(logits, targets)
    nll = -st.logprob.mean()
    no_text = compute_indicators(st)["zlib"]
    assert no_text == pytest.approx(nll / len(zlib.compress(targets.astype("<i8").tobytes())))
    with_text = compute_indicators(st, "héllo wörld " * 20)["zlib"]
    assert with_text == pytest.approx(nll / len(zlib.compress(("héllo wörld " * 20).encode("utf-8"))))
    assert with_text != no_text


def test_empty_sequence_gives_nan() -> None:
    st = token_stats_from_logits(np.zeros((0, 5)), np.zeros(0, dtype=int))
    got = compute_indicators(st, None)
    assert set(got) == set(token_indicator_keys(with_infill=False))
    assert all(math.isnan(v) for v in got.values())


def test_one_hot_sequence_is_finite() -> None:
    V = 300
    logits = np.full((10, V), -60.0)
    logits[np.arange(10), np.arange(10)] = 60.0
    targets = np.arange(10)
    targets[4] = 200  # one token the model gives ~zero probability
    got = compute_indicators(token_stats_from_logits(logits.astype(np.float32), targets), "t")
    assert all(np.isfinite(v) for v in got.values())
    assert got["min_k@0.05"] == pytest.approx(LOGPROB_FLOOR, rel=1e-6)
