"""MultiHeadAttention against a float64 NumPy reference: fused/separate QKV, GQA, masks,
rotary embedding, sliding window, bias, cross-attention, attention weights, errors."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from memory import rss_growth

import tfcore

# fp32 GEMMs (K <= 131) + fp32 online softmax vs float64: 1e-4 absolute on O(1) outputs.
TOL = 1e-4


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def rope64(x, positions, inv_freq, rotary_dim):
    """x (B, heads, T, D); half-split rotation of the first rotary_dim dims."""
    x = x.copy()
    ang = positions[:, None, :, None].astype(np.float64) * inv_freq[None, None, None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    half = rotary_dim // 2
    x1, x2 = x[..., :half].copy(), x[..., half:rotary_dim].copy()
    x[..., :half] = x1 * cos - x2 * sin
    x[..., half:rotary_dim] = x2 * cos + x1 * sin
    return x


def mha_reference(
    x,
    p,
    H,
    KVH,
    D,
    *,
    causal=False,
    key_mask=None,
    add_mask=None,
    bias=None,
    enc=None,
    positions=None,
    inv_freq=None,
    rotary_dim=None,
    window=None,
    scale=None,
):
    x = x.astype(np.float64)
    B, T, _ = x.shape
    src = x if enc is None else enc.astype(np.float64)
    S = src.shape[1]
    lin = lambda a, w, b: a @ w.astype(np.float64).T + (0 if b is None else b)  # noqa: E731
    q = lin(x, p["q"], p.get("qb")).reshape(B, T, H, D).transpose(0, 2, 1, 3)
    k = lin(src, p["k"], p.get("kb")).reshape(B, S, KVH, D).transpose(0, 2, 1, 3)
    v = lin(src, p["v"], p.get("vb")).reshape(B, S, KVH, D).transpose(0, 2, 1, 3)
    if inv_freq is not None:
        q, k = rope64(q, positions, inv_freq, rotary_dim), rope64(k, positions, inv_freq, rotary_dim)
    k, v = np.repeat(k, H // KVH, 1), np.repeat(v, H // KVH, 1)
    s = q @ k.transpose(0, 1, 3, 2) * (scale if scale is not None else 1 / math.sqrt(D))
    allowed = np.ones((B, H, T, S), bool)
    i, j = np.arange(T)[:, None], np.arange(S)[None, :]
    if causal:
        allowed &= j <= i
    if window is not None:
        allowed &= i - j < window
    if key_mask is not None:
        allowed &= key_mask.astype(bool)[:, None, None, :]
    if add_mask is not None:
        s = s + add_mask
    if bias is not None:
        s = s + bias
    s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    w = np.exp(s - np.where(np.isfinite(m), m, 0))
    den = w.sum(-1, keepdims=True)
    w = np.where(den > 0, w / np.where(den > 0, den, 1), 0)
    ctx = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, H * D)
    return lin(ctx, p["o"], p.get("ob")), w


def params(rng, C, H, KVH, D, kv_in=None, bias=True):
    kv_in = kv_in or C
    p = {
        "q": rand(rng, H * D, C, scale=C**-0.5),
        "k": rand(rng, KVH * D, kv_in, scale=kv_in**-0.5),
        "v": rand(rng, KVH * D, kv_in, scale=kv_in**-0.5),
        "o": rand(rng, C, H * D, scale=(H * D) ** -0.5),
    }
    if bias:
        p.update(
            qb=rand(rng, H * D, scale=0.1),
            kb=rand(rng, KVH * D, scale=0.1),
            vb=rand(rng, KVH * D, scale=0.1),
            ob=rand(rng, C, scale=0.1),
        )
    return p


def build(p, C, H, KVH, D, **kw):
    return tfcore.MultiHeadAttention(
        C,
        H,
        num_key_value_heads=KVH,
        head_dim=D,
        q_weight=p["q"],
        k_weight=p["k"],
        v_weight=p["v"],
        q_bias=p.get("qb"),
        k_bias=p.get("kb"),
        v_bias=p.get("vb"),
        o_weight=p["o"],
        o_bias=p.get("ob"),
        **kw,
    )


@pytest.mark.parametrize(
    "B,T,C,H,KVH,D",
    [
        (1, 1, 16, 2, 2, 8),
        (2, 7, 96, 3, 3, 32),
        (3, 97, 80, 8, 2, 10),
        (1, 131, 130, 5, 1, 26),
        (2, 33, 64, 8, 8, 8),
    ],
)
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention(rng, path, B, T, C, H, KVH, D, causal):
    p = params(rng, C, H, KVH, D)
    x = rand(rng, B, T, C)
    got = build(p, C, H, KVH, D, is_causal=causal)(x)
    want, _ = mha_reference(x, p, H, KVH, D, causal=causal)
    assert got.shape == (B, T, C)
    assert np.abs(got - want).max() < TOL


def test_fused_qkv_weight_and_conv1d_layout(rng):
    C, H, D, T = 48, 4, 12, 9
    p = params(rng, C, H, H, D)
    x = rand(rng, 2, T, C)
    fused = np.concatenate([p["q"], p["k"], p["v"]], 0)  # (3C, C)
    fused_b = np.concatenate([p["qb"], p["kb"], p["vb"]])
    a = tfcore.MultiHeadAttention(C, H, qkv_weight=fused, qkv_bias=fused_b, o_weight=p["o"], o_bias=p["ob"])
    # GPT-2 stores Conv1D weights as (in, out): the same layer with transposed=True
    g = tfcore.MultiHeadAttention(
        C,
        H,
        qkv_weight=np.ascontiguousarray(fused.T),
        qkv_bias=fused_b,
        o_weight=np.ascontiguousarray(p["o"].T),
        o_bias=p["ob"],
        transposed=True,
    )
    want, _ = mha_reference(x, p, H, H, D)
    assert np.abs(a(x) - want).max() < TOL
    assert np.abs(g(x) - want).max() < TOL


def test_padding_mask_and_residual(rng, path):
    B, T, C, H, D = 3, 17, 40, 5, 8
    p = params(rng, C, H, H, D)
    x, r = rand(rng, B, T, C), rand(rng, B, T, C)
    mask = (np.arange(T)[None] < np.array([[17], [9], [1]])).astype(np.int64)
    layer = build(p, C, H, H, D)
    want, _ = mha_reference(x, p, H, H, D, key_mask=mask)
    assert np.abs(layer(x, mask) - want).max() < TOL
    assert np.abs(layer(x, mask.astype(bool), residual=r) - (want + r)).max() < TOL
    acc = r.copy()
    layer(x, mask.astype(np.float32), residual=acc, out=acc)  # in-place residual
    assert np.abs(acc - (want + r)).max() < TOL


def test_additive_4d_mask_and_bias(rng, path):
    B, T, C, H, D = 2, 11, 24, 3, 8
    p = params(rng, C, H, H, D)
    x = rand(rng, B, T, C)
    add = np.where(rng.random((B, 1, T, T)) < 0.3, -1e9, 0.0).astype(np.float32)
    add[..., 0] = 0  # every query keeps one key
    bias = rand(rng, 1, H, T, T)
    layer = build(p, C, H, H, D)
    want, _ = mha_reference(x, p, H, H, D, add_mask=add, bias=bias)
    assert np.abs(layer(x, add, bias=bias) - want).max() < TOL


def test_rotary_with_positions_and_partial_dim(rng):
    B, T, C, H, KVH, D = 2, 13, 64, 8, 2, 8
    p = params(rng, C, H, KVH, D, bias=False)
    x = rand(rng, B, T, C)
    for rotary_dim in (8, 4):
        inv = 1.0 / 10000.0 ** (np.arange(0, rotary_dim, 2) / rotary_dim)
        layer = build(p, C, H, KVH, D, is_causal=True, rope_theta=10000.0, rotary_dim=rotary_dim)
        pos = np.broadcast_to(np.arange(T), (B, T))
        want, _ = mha_reference(
            x, p, H, KVH, D, causal=True, positions=pos, inv_freq=inv, rotary_dim=rotary_dim
        )
        assert np.abs(layer(x) - want).max() < TOL
        # explicit positions (e.g. left padding shifts them) and an offset
        pos2 = np.stack([np.arange(T) + 5, np.arange(T) + 2])
        want2, _ = mha_reference(
            x, p, H, KVH, D, causal=True, positions=pos2, inv_freq=inv, rotary_dim=rotary_dim
        )
        assert np.abs(layer(x, position_ids=pos2) - want2).max() < TOL
        want3, _ = mha_reference(
            x, p, H, KVH, D, causal=True, positions=pos + 3, inv_freq=inv, rotary_dim=rotary_dim
        )
        assert np.abs(layer(x, position_offset=3) - want3).max() < TOL


def test_rope_inv_freq_given(rng):
    C, H, D, T = 32, 2, 16, 6
    p = params(rng, C, H, H, D, bias=False)
    inv = (1.0 / 500000.0 ** (np.arange(0, D, 2) / D) / 4.0).astype(np.float32)  # e.g. linear scaling x4
    layer = build(p, C, H, H, D, rope_inv_freq=inv)
    x = rand(rng, 1, T, C)
    want, _ = mha_reference(
        x, p, H, H, D, positions=np.arange(T)[None], inv_freq=inv.astype(np.float64), rotary_dim=D
    )
    assert np.abs(layer(x) - want).max() < TOL


@pytest.mark.parametrize("T,window", [(9, 4), (33, 16), (17, 17), (18, 17)])
def test_sliding_window_causal(rng, path, T, window):
    C, H, D = 24, 3, 8
    p = params(rng, C, H, H, D)
    x = rand(rng, 2, T, C)
    layer = build(p, C, H, H, D, is_causal=True, sliding_window=window)
    want, _ = mha_reference(x, p, H, H, D, causal=True, window=window)
    assert np.abs(layer(x) - want).max() < TOL


def test_cross_attention(rng, path):
    B, T, S, C, Ce, H, D = 2, 7, 19, 48, 36, 4, 12
    p = params(rng, C, H, H, D, kv_in=Ce)
    x, enc = rand(rng, B, T, C), rand(rng, B, S, Ce)
    mask = (np.arange(S)[None] < np.array([[19], [5]])).astype(np.int64)
    layer = build(p, C, H, H, D, is_cross_attention=True, kv_input_size=Ce)
    want, w = mha_reference(x, p, H, H, D, enc=enc, key_mask=mask)
    out, weights = layer(x, mask, encoder_hidden_states=enc, output_attentions=True)
    assert np.abs(out - want).max() < TOL
    assert weights.shape == (B, H, T, S)
    assert np.abs(weights - w).max() < 1e-5  # probabilities in [0, 1]
    assert np.all(weights[1, :, :, 5:] == 0)  # padded keys get exactly zero weight


@pytest.mark.parametrize("G,T", [(4, 1), (3, 2), (1, 5)])
def test_cross_attention_shared_encoder_rows(rng, path, G, T):
    """encoder_key_values with one row per G consecutive rows (an input's beams): the same
    output as each row given its own copy (masks per encoder row), and the errors of the
    shapes that cannot share."""
    B, S, C, H, D = 2, 19, 48, 4, 12
    p = params(rng, C, H, H, D)
    x, enc = rand(rng, B * G, T, C), rand(rng, B, S, C)
    mask = (np.arange(S)[None] < np.array([[19], [5]])).astype(np.int64)
    layer = build(p, C, H, H, D, is_cross_attention=True)
    kv = layer.kv_proj(enc)
    want, _ = mha_reference(x, p, H, H, D, enc=np.repeat(enc, G, 0), key_mask=np.repeat(mask, G, 0))
    got = layer(x, mask, encoder_key_values=kv)
    assert np.abs(got - want).max() < TOL
    # the kernel tiles G * T queries differently from T: rounding-level differences only
    copies = layer(x, np.repeat(mask, G, 0), encoder_key_values=np.repeat(kv, G, 0))
    assert np.abs(got - copies).max() < 1e-6 * max(1.0, np.abs(copies).max())
    if G > 1:
        with pytest.raises(tfcore.TfcoreValueError, match="output_attentions"):
            layer(x, mask, encoder_key_values=kv, output_attentions=True)
        with pytest.raises(tfcore.TfcoreValueError, match=r"attention_mask has shape \(6, 19\)|\(8, 19\)"):
            layer(x, np.repeat(mask, G, 0), encoder_key_values=kv)
    with pytest.raises(tfcore.TfcoreValueError, match="encoder_key_values has shape"):
        layer(rand(rng, B * G + 1, T, C), encoder_key_values=kv)


def test_output_attentions_rows_sum_to_one(rng, path):
    C, H, D, T = 32, 4, 8, 10
    p = params(rng, C, H, H, D)
    x = rand(rng, 2, T, C)
    out, w = build(p, C, H, H, D, is_causal=True)(x, output_attentions=True)
    assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(w[0, 0], 1) == 0)  # causal: nothing above the diagonal


def test_errors(rng):
    C, H, D = 32, 4, 8
    p = params(rng, C, H, H, D)
    layer = build(p, C, H, H, D)
    x = rand(rng, 2, 5, C)
    with pytest.raises(
        tfcore.TfcoreValueError, match="hidden_states has last dim 31, expected hidden_size=32"
    ):
        layer(rand(rng, 2, 5, 31))
    with pytest.raises(tfcore.TfcoreValueError, match="hidden_states must have 3 dimensions"):
        layer(rand(rng, 5, C))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        layer(x.astype(np.float64))
    with pytest.raises(tfcore.TfcoreValueError, match=r"attention_mask has shape \(2, 4\), expected"):
        layer(x, np.ones((2, 4), np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="does not broadcast"):
        layer(x, np.zeros((2, 1, 5, 4), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        layer(np.full((2, 5, C), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        layer(np.zeros((2, 0, C), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="position_ids given but this layer has no rotary"):
        layer(x, position_ids=np.zeros((2, 5), np.int64))
    with pytest.raises(
        tfcore.TfcoreValueError, match="encoder_hidden_states given to a layer without cross-attention"
    ):
        layer(x, encoder_hidden_states=x)
    with pytest.raises(
        tfcore.TfcoreValueError, match="num_heads=4 must be a multiple of num_key_value_heads=3"
    ):
        tfcore.MultiHeadAttention(C, 4, num_key_value_heads=3, qkv_weight=p["q"], o_weight=p["o"])
    with pytest.raises(tfcore.TfcoreValueError, match="maps 32 -> 32 features, expected 32 -> 96"):
        tfcore.MultiHeadAttention(C, H, qkv_weight=p["q"], o_weight=p["o"])
    with pytest.raises(tfcore.TfcoreValueError, match="rotary_dim must be even"):
        build(p, C, H, H, D, rope_theta=10000.0, rotary_dim=3)
    with pytest.raises(tfcore.TfcoreValueError, match="o_weight"):
        tfcore.MultiHeadAttention(C, H, q_weight=p["q"], k_weight=p["k"], v_weight=p["v"])
    assert layer(x).shape == x.shape  # still usable


def test_threads_and_memory(rng):
    C, H, KVH, D = 64, 8, 2, 8
    p = params(rng, C, H, KVH, D)
    layer = build(p, C, H, KVH, D, is_causal=True, rope_theta=10000.0)
    xs = [rand(rng, 2, 20 + i, C) for i in range(6)]
    expected = [layer(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(20):
            got[i] = layer(xs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert rss_growth(lambda: layer(xs[0], output_attentions=True), calls=1000) < 2 * 2**20


@pytest.mark.parametrize("lengths", [(1,), (7, 97, 1, 33), (130, 2, 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_free_equals_per_sequence(rng, path, lengths, causal):
    C, H, KVH, D = 48, 6, 2, 8
    p = params(rng, C, H, KVH, D)
    layer = build(p, C, H, KVH, D, is_causal=causal)
    seqs = [rand(rng, 1, n, C) for n in lengths]
    packed = np.concatenate(seqs, axis=1)
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    got = layer(packed, cu_seqlens=cu)
    for i, s in enumerate(seqs):
        want = layer(s)  # each sequence on its own
        assert np.abs(got[:, cu[i] : cu[i + 1]] - want).max() < 1e-5  # same kernels, same order: ~exact


def test_padding_free_rotary_and_errors(rng):
    C, H, D = 32, 4, 8
    p = params(rng, C, H, H, D, bias=False)
    layer = build(p, C, H, H, D, is_causal=True, rope_theta=10000.0)
    a, b = rand(rng, 1, 5, C), rand(rng, 1, 9, C)
    cu = np.array([0, 5, 14], np.int64)
    pos = np.concatenate([np.arange(5), np.arange(9)])[None]
    got = layer(np.concatenate([a, b], 1), position_ids=pos, cu_seqlens=cu)
    assert np.abs(got[:, :5] - layer(a)).max() < 1e-5 and np.abs(got[:, 5:] - layer(b)).max() < 1e-5
    x = np.concatenate([a, b], 1)
    with pytest.raises(tfcore.TfcoreValueError, match="needs position_ids"):
        layer(x, cu_seqlens=cu)
    with pytest.raises(tfcore.TfcoreValueError, match="must start at 0 and end at the 14 tokens"):
        layer(x, position_ids=pos, cu_seqlens=np.array([0, 5, 13], np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="increase strictly"):
        layer(x, position_ids=pos, cu_seqlens=np.array([0, 5, 5, 14], np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="cannot be combined"):
        layer(x, np.ones((1, 14), np.int64), position_ids=pos, cu_seqlens=cu)
    with pytest.raises(tfcore.TfcoreValueError, match=r"\(1, total_tokens, hidden_size\)"):
        layer(np.concatenate([x, x]), cu_seqlens=cu)
