"""Position biases computed inside the attention kernel: T5's bucketed relative bias and
ALiBi, against HF's own functions and against the same layer given the bias as a
materialised (B, H, T, S) array; incremental decoding with a cache; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_mha import TOL, build, mha_reference, params, rand

import tfcore


def t5_bias(table, T, S, past, bidirectional, num_buckets, max_distance):
    """(1, H, T, S) float64 bias as HF's T5Attention.compute_bias builds it."""
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(S)[None, :] - (torch.arange(T)[:, None] + past)
    buckets = T5Attention._relative_position_bucket(
        rel, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    ).numpy()
    return np.ascontiguousarray(table.astype(np.float64)[buckets].transpose(2, 0, 1)[None])


def alibi_bias(H, T, S, past):
    """(1, H, T, S) float64: slope_h * (key - query), slopes from HF BLOOM."""
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    slopes = _get_alibi_slopes(H, "cpu").numpy().astype(np.float64)
    rel = np.arange(S)[None, :] - (np.arange(T)[:, None] + past)
    return (slopes[:, None, None] * rel)[None]


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (32, 20), (8, 7), (33, 100), (128, 1000)])
def test_buckets_equal_hf(bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = np.arange(-50_000, 50_001, dtype=np.int64)
    want = T5Attention._relative_position_bucket(
        torch.from_numpy(rel), bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    ).numpy()
    got = tfcore._C.t5_relative_position_bucket(
        rel, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    np.testing.assert_array_equal(got, want)  # integers: exact, bucket edges included
    got32 = tfcore._C.t5_relative_position_bucket(
        rel[:35].astype(np.int32).reshape(7, 5),
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
    )
    assert got32.dtype == np.int64
    np.testing.assert_array_equal(got32, want[:35].reshape(7, 5))


@pytest.mark.parametrize("H", [1, 2, 5, 6, 8, 12, 16, 24, 31, 64])
def test_alibi_slopes_equal_hf(H):
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    # torch's float32 pow can be 1 ulp off the correctly rounded power tfcore computes
    np.testing.assert_allclose(
        tfcore._C.alibi_slopes(H), _get_alibi_slopes(H, "cpu").numpy(), rtol=2e-7, atol=0
    )


CASES = [(1, 1, 16, 2, 8), (2, 7, 30, 3, 10), (2, 97, 40, 5, 8), (1, 131, 64, 4, 16), (3, 70, 36, 6, 6)]


@pytest.mark.parametrize("B,T,C,H,D", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_t5_bias_in_kernel_equals_materialised(rng, path, B, T, C, H, D, causal):
    nb, md = (32, 20) if T > 50 else (8, 7)  # lengths past max_distance reach the far buckets
    p = params(rng, C, H, H, D, bias=False)
    table = rand(rng, nb, H)
    x = rand(rng, B, T, C)
    layer = build(
        p,
        C,
        H,
        H,
        D,
        is_causal=causal,
        scale=1.0,
        relative_attention_bias=table,
        relative_attention_num_buckets=nb,
        relative_attention_max_distance=md,
    )
    bias = t5_bias(table, T, T, 0, not causal, nb, md)
    want, _ = mha_reference(x, p, H, H, D, causal=causal, bias=bias, scale=1.0)
    got = layer(x)
    assert np.abs(got - want).max() < TOL
    # the same bias given as an array through bias= takes the general path
    plain = build(p, C, H, H, D, is_causal=causal, scale=1.0)
    assert np.abs(plain(x, bias=bias.astype(np.float32)) - got).max() < TOL


@pytest.mark.parametrize("B,T,C,H,D", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_alibi_in_kernel_equals_materialised(rng, path, B, T, C, H, D, causal):
    p = params(rng, C, H, H, D)
    x = rand(rng, B, T, C)
    got = build(p, C, H, H, D, is_causal=causal, alibi=True)(x)
    want, _ = mha_reference(x, p, H, H, D, causal=causal, bias=alibi_bias(H, T, T, 0))
    assert np.abs(got - want).max() < TOL


def test_alibi_left_padding_matches_hf_key_positions(rng, path):
    """HF BLOOM adds slope * (position of the key among real tokens); with left padding
    that differs from slope * (key - query) by a per-row constant, which softmax ignores."""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    B, T, C, H, D = 2, 23, 40, 5, 8
    p = params(rng, C, H, H, D)
    x = rand(rng, B, T, C)
    mask = np.ones((B, T), np.int64)
    mask[1, :6] = 0
    hf = build_alibi_tensor(torch.from_numpy(mask), H, torch.float32).numpy().reshape(B, H, 1, T)
    want, _ = mha_reference(x, p, H, H, D, causal=True, key_mask=mask, bias=hf.astype(np.float64))
    got = build(p, C, H, H, D, is_causal=True, alibi=True)(x, mask)
    assert np.abs(got[1, 6:] - want[1, 6:]).max() < TOL and np.abs(got[0] - want[0]).max() < TOL


@pytest.mark.parametrize("kind", ["t5", "alibi"])
@pytest.mark.parametrize("prompt,steps", [(7, 9), (1, 40), (97, 3)])
def test_incremental_decoding_equals_full(rng, path, kind, prompt, steps):
    B, C, H, D = 2, 36, 6, 6
    p = params(rng, C, H, H, D, bias=False)
    extra = (
        dict(relative_attention_bias=rand(rng, 32, H), relative_attention_max_distance=20, scale=1.0)
        if kind == "t5"
        else dict(alibi=True)
    )
    layer = build(p, C, H, H, D, is_causal=True, **extra)
    x = rand(rng, B, prompt + steps, C)
    full = layer(x)
    cache = tfcore.KVCache(1, B, H, D, capacity=8)
    outs = [layer(np.ascontiguousarray(x[:, :prompt]), past_key_values=cache, layer_idx=0)]
    for t in range(prompt, prompt + steps):
        outs.append(layer(np.ascontiguousarray(x[:, t : t + 1]), past_key_values=cache, layer_idx=0))
    assert np.abs(np.concatenate(outs, axis=1) - full).max() < TOL


def test_padding_free_with_position_bias(rng, path):
    """Packed sequences: each sequence's positions start at 0, as if run alone."""
    C, H, D, lengths = 24, 3, 8, [5, 70, 1, 33]
    p = params(rng, C, H, H, D, bias=False)
    layer = build(
        p,
        C,
        H,
        H,
        D,
        relative_attention_bias=rand(rng, 16, H),
        relative_attention_num_buckets=16,
        relative_attention_max_distance=30,
        scale=1.0,
    )
    seqs = [rand(rng, 1, n, C) for n in lengths]
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    got = layer(np.concatenate(seqs, axis=1), cu_seqlens=cu)
    want = np.concatenate([layer(s) for s in seqs], axis=1)
    assert np.abs(got - want).max() < TOL


def test_position_bias_errors(rng):
    C, H, D = 16, 2, 8
    p = params(rng, C, H, H, D)
    with pytest.raises(
        tfcore.TfcoreValueError, match=r"relative_attention_bias has shape \(31, 2\), expected"
    ):
        build(p, C, H, H, D, relative_attention_bias=rand(rng, 31, H))
    with pytest.raises(tfcore.TfcoreValueError, match="not both"):
        build(p, C, H, H, D, relative_attention_bias=rand(rng, 32, H), alibi=True)
    with pytest.raises(tfcore.TfcoreValueError, match="self-attention only"):
        build(p, C, H, H, D, is_cross_attention=True, alibi=True)
    with pytest.raises(tfcore.TfcoreValueError, match="num_buckets must be >= 4"):
        build(p, C, H, H, D, relative_attention_bias=rand(rng, 2, H), relative_attention_num_buckets=2)
    with pytest.raises(tfcore.TfcoreValueError, match="max_distance must exceed 8"):
        build(p, C, H, H, D, relative_attention_bias=rand(rng, 32, H), relative_attention_max_distance=8)
    bad = rand(rng, 32, H)
    bad[3, 1] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="relative_attention_bias"):
        build(p, C, H, H, D, relative_attention_bias=bad)
    with pytest.raises(tfcore.TfcoreTypeError, match="relative_attention_bias"):
        build(p, C, H, H, D, relative_attention_bias=rand(rng, 32, H).astype(np.float64))
    with pytest.raises(tfcore.TfcoreTypeError, match="relative_position"):
        tfcore._C.t5_relative_position_bucket(np.zeros(3, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="num_buckets"):
        tfcore._C.t5_relative_position_bucket(np.zeros(3, np.int64), num_buckets=1)
    with pytest.raises(tfcore.TfcoreValueError, match="num_heads"):
        tfcore._C.alibi_slopes(0)
    with pytest.raises(tfcore.TfcoreTypeError, match="num_heads"):
        tfcore._C.alibi_slopes("4")
