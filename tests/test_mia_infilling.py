"""Batched Infilling Score against naive per-token loops: eq. 10 as printed, and the
normalization of the authors' public code (``infill_ref``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from transformers import GPT2Config, GPT2LMHeadModel

from core.targets.infilling import infilling_score, infilling_scores, infilling_token_scores

torch.set_num_threads(1)
V = 50


def tiny_gpt2(seed: int = 0, dtype: torch.dtype = torch.float64) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    # a wide initializer makes the distributions peaked, so substitutions change the future
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=V, n_positions=64,
        initializer_range=0.3, bos_token_id=0, eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval().to(dtype)


def logp_rows(model: GPT2LMHeadModel, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        t = torch.tensor(ids)[None]
        logits = model(input_ids=t, attention_mask=torch.ones_like(t)).logits[0]
    return log_softmax(logits.double().numpy(), axis=-1)


def moments(lp: np.ndarray) -> tuple[float, float]:
    p = np.exp(lp)
    mu = float(np.sum(p * lp))
    return mu, max(math.sqrt(float(np.sum(p * (lp - mu) ** 2))), 1e-6)


def z(lp: np.ndarray, tok: int) -> float:
    mu, sd = moments(lp)
    return (lp[tok] - mu) / sd


def naive_infilling(model: GPT2LMHeadModel, ids: np.ndarray, m: int) -> np.ndarray:
    """One extra forward pass per token, straight from eq. 10."""
    N = len(ids)
    out = np.full(N, np.nan)
    orig = logp_rows(model, ids)
    for i in range(1, N):
        xstar = int(np.argmax(orig[i - 1]))
        sub_ids = ids.copy()
        sub_ids[i] = xstar
        sub = logp_rows(model, sub_ids)
        future = range(i + 1, min(i + m, N - 1) + 1)
        plus = z(orig[i - 1], ids[i]) + sum(z(orig[j - 1], ids[j]) for j in future)
        minus = z(sub[i - 1], xstar) + sum(z(sub[j - 1], ids[j]) for j in future)
        out[i] = plus - minus
    return out


def naive_infilling_ref(model: GPT2LMHeadModel, ids: np.ndarray, m: int) -> np.ndarray:
    """The authors' normalization, one extra forward pass per token: every term of each
    pass is standardized by the mean and std of that pass's distribution at the replaced
    position, p(. | x_<i) (``mu[i]``/``sigma[i]`` and ``mu_opt[i]``/``sigma_opt[i]`` in
    their code); future tokens run to the end of the sequence as in eq. 9."""
    N = len(ids)
    out = np.full(N, np.nan)
    orig = logp_rows(model, ids)
    for i in range(1, N):
        xstar = int(np.argmax(orig[i - 1]))
        sub_ids = ids.copy()
        sub_ids[i] = xstar
        sub = logp_rows(model, sub_ids)
        mu, sd = moments(orig[i - 1])
        mu_s, sd_s = moments(sub[i - 1])
        future = range(i + 1, min(i + m, N - 1) + 1)
        plus = (orig[i - 1][ids[i]] - mu) / sd + sum((orig[j - 1][ids[j]] - mu) / sd for j in future)
        minus = (sub[i - 1][xstar] - mu_s) / sd_s + sum((sub[j - 1][ids[j]] - mu_s) / sd_s for j in future)
        out[i] = plus - minus
    return out


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize(("N", "m", "chunk"), [(17, 3, 4), (12, 1, 64), (9, 20, 2), (2, 5, 8), (14, 0, 5)])
def test_reference_variant_equals_naive_loop(N: int, m: int, chunk: int, use_cache: bool) -> None:
    model = tiny_gpt2(seed=N)
    ids = np.random.default_rng(N + m).integers(0, V, size=N)
    got = infilling_scores(model, ids, m, chunk_size=chunk, use_cache=use_cache)
    ref = naive_infilling_ref(model, ids, m)
    assert got.ref.shape == (N,) and np.isnan(got.ref[0]) and np.all(np.isfinite(got.ref[1:]))
    np.testing.assert_allclose(got.ref[1:], ref[1:], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.own[1:], naive_infilling(model, ids, m)[1:], rtol=0, atol=1e-5)
    if m > 0 and N > 3:  # the normalizations differ once there are future terms ...
        assert not np.allclose(got.ref[1:], got.own[1:], atol=1e-3)
    if m == 0:  # ... and agree without them
        np.testing.assert_array_equal(got.ref, got.own)


def test_both_variants_come_from_the_same_passes() -> None:
    model = tiny_gpt2(seed=7)
    ids = np.random.default_rng(7).integers(0, V, size=30)
    calls: list[tuple[int, ...]] = []
    handle = model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        got = infilling_scores(model, ids, 4, chunk_size=64)
    finally:
        handle.remove()
    assert len(calls) == 2 and calls[0] == (1, 30)
    np.testing.assert_array_equal(got.own, infilling_token_scores(model, ids, 4, chunk_size=64))


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize(("N", "m", "chunk"), [(17, 3, 4), (12, 1, 64), (9, 20, 2), (2, 5, 8), (14, 0, 5)])
def test_batched_equals_naive_loop(N: int, m: int, chunk: int, use_cache: bool) -> None:
    model = tiny_gpt2(seed=N)
    rng = np.random.default_rng(N + m)
    ids = rng.integers(0, V, size=N)
    got = infilling_token_scores(model, ids, m, chunk_size=chunk, use_cache=use_cache)
    ref = naive_infilling(model, ids, m)
    assert got.shape == (N,)
    assert np.isnan(got[0]) and np.all(np.isfinite(got[1:]))
    np.testing.assert_allclose(got[1:], ref[1:], rtol=0, atol=1e-5)
    # the test is not vacuous: the future terms matter
    if m > 0 and N > 3:
        assert not np.allclose(ref[1:], naive_infilling(model, ids, 0)[1:], atol=1e-3)


def test_float32_model_and_2d_input() -> None:
    model = tiny_gpt2(seed=3, dtype=torch.float32)
    ids = torch.randint(0, V, (1, 21), generator=torch.Generator().manual_seed(0))
    got = infilling_token_scores(model, ids, 5, chunk_size=8)
    ref = naive_infilling(model, ids[0].numpy(), 5)
    np.testing.assert_allclose(got[1:], ref[1:], atol=2e-4)


def test_target_token_equal_to_argmax_scores_zero() -> None:
    model = tiny_gpt2(seed=4)
    ids = np.random.default_rng(4).integers(0, V, size=10)
    greedy = ids.copy()
    orig = logp_rows(model, greedy)
    greedy[5] = int(np.argmax(orig[4]))  # x_5 is the model's causal choice
    got = infilling_token_scores(model, greedy, 3)
    assert got[5] == pytest.approx(0.0, abs=1e-9)


def test_cost_is_a_few_forward_passes() -> None:
    model = tiny_gpt2(seed=5)
    ids = np.arange(40) % V
    orig = logp_rows(model, ids)
    ids[10:20] = orig[9:19].argmax(axis=1)  # greedy tokens: no substitution needed there
    orig = logp_rows(model, ids)
    n_sub = int(np.sum(orig[:38].argmax(axis=1) != ids[1:39]))  # positions 1..38
    assert n_sub < 38
    calls: list[tuple[int, ...]] = []
    handle = model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        got = infilling_token_scores(model, ids, 5, chunk_size=64)
    finally:
        handle.remove()
    # one pass over the sequence, one batched pass of the substitutions x 5 new tokens
    assert calls == [(1, 40), (n_sub, 5)]
    np.testing.assert_allclose(got[1:], naive_infilling(model, ids, 5)[1:], atol=1e-5)


def test_sequence_score_is_mean_of_lowest_k() -> None:
    model = tiny_gpt2(seed=6)
    ids = np.random.default_rng(6).integers(0, V, size=25)
    tok = infilling_token_scores(model, ids, 2)
    scored = np.sort(tok[1:])
    for k in (0.05, 0.2, 0.6):
        n = max(1, int(k * 24 + 1e-9))
        assert infilling_score(model, ids, 2, k=k) == pytest.approx(scored[:n].mean())
    assert math.isnan(infilling_score(model, ids[:1], 2))
    with pytest.raises(ValueError):
        infilling_token_scores(model, ids, -1)
    with pytest.raises(ValueError):
        infilling_token_scores(model, ids.reshape(5, 5), 2)


def test_the_cached_pass_uses_the_forwards_own_cache_keyword(caplog) -> None:
    """``transformers`` renamed ``past_key_values`` to ``cache`` (the old name is deprecated,
    to be removed): the cached infilling pass must name it as the model's forward does, in and
    out, or it breaks on the next release."""
    import inspect
    import logging
    import warnings

    from core.targets.infilling import cache_keyword

    model = tiny_gpt2(3)
    expected = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    assert cache_keyword(model) == expected
    ids = np.random.default_rng(0).integers(0, 30, size=12)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error", FutureWarning)
        cached = infilling_scores(model, ids, 3, use_cache=True)
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]
    full = infilling_scores(model, ids, 3, use_cache=False)
    np.testing.assert_allclose(cached.own, full.own, rtol=1e-6, equal_nan=True)
