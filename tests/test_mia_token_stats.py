"""Token statistics against a direct scipy computation, including nearly one-hot rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from core.targets.token_stats import (
    LOGPROB_FLOOR,
    STD_FLOOR,
    token_stats_batch,
    token_stats_from_logits,
)

torch.set_num_threads(1)

FIELDS = ("logprob", "entropy", "top1", "top2", "mean_logp", "std_logp", "renyi_05", "renyi_2", "renyi_inf")


def direct_stats(logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Row by row from the definitions (float64)."""
    out = {k: np.empty(len(targets)) for k in FIELDS}
    for i, (row, t) in enumerate(zip(np.asarray(logits, dtype=np.float64), targets)):
        lp = np.maximum(log_softmax(row), LOGPROB_FLOOR)
        p = np.exp(log_softmax(row))
        mu = float(np.sum(p * lp))
        out["logprob"][i] = lp[t]
        out["entropy"][i] = -mu
        srt = np.sort(p)[::-1]
        out["top1"][i], out["top2"][i] = srt[0], srt[1]
        out["mean_logp"][i] = mu
        out["std_logp"][i] = max(np.sqrt(np.sum(p * (lp - mu) ** 2)), STD_FLOOR)
        out["renyi_05"][i] = np.log(np.sum(np.sqrt(p))) / (1 - 0.5)
        out["renyi_2"][i] = np.log(np.sum(p**2)) / (1 - 2.0)
        out["renyi_inf"][i] = -np.log(p.max())
    return out


def test_numpy_input_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(40, 97))
    targets = rng.integers(0, 97, size=40)
    st = token_stats_from_logits(logits, targets)
    ref = direct_stats(logits, targets)
    np.testing.assert_array_equal(st.token_ids, targets)
    assert st.token_ids.dtype == np.int64
    for k in FIELDS:
        got = getattr(st, k)
        assert got.dtype == np.float64 and got.shape == (40,)
        np.testing.assert_allclose(got, ref[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert st.infill is None
    # Rényi entropies are ordered: H_0.5 >= H_1 >= H_2 >= H_inf
    assert np.all(st.renyi_05 >= st.entropy - 1e-12)
    assert np.all(st.entropy >= st.renyi_2 - 1e-12)
    assert np.all(st.renyi_2 >= st.renyi_inf - 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_torch_input(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(16, 33))
    targets = rng.integers(0, 33, size=16)
    lt = torch.tensor(logits, dtype=dtype)
    st = token_stats_from_logits(lt, torch.tensor(targets))
    # reference on exactly the rounded values the function received
    ref = direct_stats(lt.double().numpy(), targets)
    for k in FIELDS:
        np.testing.assert_allclose(getattr(st, k), ref[k], rtol=2e-4, atol=2e-5, err_msg=k)


def test_nearly_one_hot_rows_stay_finite() -> None:
    V = 1000
    logits = np.zeros((4, V), dtype=np.float32)
    logits[0, 3] = 500.0  # one-hot to float precision, target is the peak
    logits[1, 3] = 500.0  # one-hot, target elsewhere (probability underflows to 0)
    logits[2, :] = -np.inf
    logits[2, 7] = 0.0  # exactly one-hot through -inf logits
    logits[3, 5] = 40.0  # nearly one-hot, target elsewhere
    targets = np.array([3, 9, 8, 0])
    for lt in (torch.tensor(logits), torch.tensor(logits, dtype=torch.float16), logits):
        st = token_stats_from_logits(lt, targets)
        for k in FIELDS:
            assert np.all(np.isfinite(getattr(st, k))), k
        assert st.logprob[1] == pytest.approx(LOGPROB_FLOOR)
        assert st.logprob[2] == pytest.approx(LOGPROB_FLOOR)
        assert st.logprob[0] == pytest.approx(0.0, abs=1e-6)
        assert np.all(st.std_logp >= STD_FLOOR)
        assert np.all(st.entropy >= 0) and np.all(st.renyi_2 >= 0)
        assert st.top1[0] == pytest.approx(1.0) and st.top2[0] == pytest.approx(0.0, abs=1e-12)
        # Min-K%++ z stays finite even with the std floor
        z = (st.logprob - st.mean_logp) / st.std_logp
        assert np.all(np.isfinite(z))
    ref = direct_stats(logits.astype(np.float64), targets)
    st = token_stats_from_logits(logits.astype(np.float64), targets)
    for k in FIELDS:
        np.testing.assert_allclose(getattr(st, k), ref[k], rtol=1e-9, atol=1e-9, err_msg=k)


def test_batch_matches_per_sequence_with_mask() -> None:
    g = torch.Generator().manual_seed(3)
    B, N, V = 5, 9, 41
    logits = torch.randn(B, N, V, generator=g) * 2
    targets = torch.randint(0, V, (B, N), generator=g)
    lengths = [9, 4, 1, 0, 7]
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, N - n :] = True  # left padding
    targets[~mask] = 10_000  # pad ids outside the vocabulary must be ignored
    out = token_stats_batch(logits, targets, mask, rows_per_chunk=2)
    assert len(out) == B
    for b, n in enumerate(lengths):
        assert len(out[b]) == n
        if n == 0:
            continue
        ref = token_stats_from_logits(logits[b, N - n :], targets[b, N - n :])
        np.testing.assert_array_equal(out[b].token_ids, ref.token_ids)
        for k in FIELDS:
            np.testing.assert_allclose(getattr(out[b], k), getattr(ref, k), rtol=1e-6, atol=1e-7)


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        token_stats_from_logits(np.zeros((3, 5)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        token_stats_batch(torch.zeros(3, 5), torch.zeros(3, 5), torch.ones(3, 5))
