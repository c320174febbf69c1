"""scaled_dot_product_attention against float64 NumPy and torch.nn.functional's SDPA.

Tolerances: the kernel accumulates q·k over D and p·v over S in float32 with an online
softmax; for unit-variance inputs the output error vs float64 stays below ~1e-5 for
S <= 1000 (measured ~1e-6); 5e-5 leaves room without hiding real bugs (a wrong mask or
a skipped block changes outputs by O(0.1))."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from memory import rss_growth
from reference.attention import sdpa as sdpa_ref

import tfcore

F = tfcore.functional
TOL = 5e-5


def qkv(rng, B, H, KVH, L, S, D, Dv=None):
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return r(B, H, L, D), r(B, KVH, S, D), r(B, KVH, S, Dv or D)


def torch_sdpa(q, k, v, **kw):
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    kw = {key: (t(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}
    with torch.no_grad():
        return torch.nn.functional.scaled_dot_product_attention(t(q), t(k), t(v), **kw).numpy()


@pytest.mark.parametrize(
    "L,S", [(1, 1), (1, 131), (7, 7), (97, 97), (131, 7), (7, 131), (1000, 97), (97, 1000)]
)
@pytest.mark.parametrize("causal", [False, True])
def test_shapes_causal_vs_reference_and_torch(rng, path, L, S, causal):
    q, k, v = qkv(rng, 2, 3, 3, L, S, 32)
    got = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    want, _ = sdpa_ref(q, k, v, is_causal=causal)
    assert got.shape == (2, 3, L, 32)
    assert np.abs(got - want).max() < TOL
    if not causal or L <= S:  # torch returns NaN for rows with no visible key (L > S causal)
        assert np.abs(got - torch_sdpa(q, k, v, is_causal=causal)).max() < TOL


@pytest.mark.parametrize("D", [32, 64, 80, 128, 7, 97])
@pytest.mark.parametrize("L", [1, 33])  # the decode and the tile paths
def test_head_dims(rng, path, D, L):
    q, k, v = qkv(rng, 1, 2, 2, L, 65, D, Dv=D + 3)  # value head dim may differ
    got = F.scaled_dot_product_attention(q, k, v)
    want, _ = sdpa_ref(q, k, v)
    assert got.shape == (1, 2, L, D + 3)
    assert np.abs(got - want).max() < TOL


@pytest.mark.parametrize("ratio", [1, 2, 4, 8])
@pytest.mark.parametrize("L", [1, 3, 97])
def test_gqa(rng, path, ratio, L):
    q, k, v = qkv(rng, 2, 8, 8 // ratio, L, 131, 64)
    got = F.scaled_dot_product_attention(q, k, v, enable_gqa=ratio > 1, is_causal=L > 1)
    want, _ = sdpa_ref(q, k, v, is_causal=L > 1)
    assert np.abs(got - want).max() < TOL
    assert np.abs(got - torch_sdpa(q, k, v, enable_gqa=ratio > 1, is_causal=L > 1)).max() < TOL


MASK_SHAPES = [
    (7, 19),
    (1, 19),
    (3, 1, 19),
    (3, 7, 19),
    (2, 3, 7, 19),
    (2, 1, 1, 19),
    (1, 3, 1, 19),
    (2, 1, 7, 1),
    (19,),
]


@pytest.mark.parametrize("shape", MASK_SHAPES)
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_of_every_broadcast_form(rng, path, shape, kind):
    q, k, v = qkv(rng, 2, 3, 3, 7, 19, 16)
    if kind == "bool":
        mask = rng.random(shape) < 0.7
        mask[..., 0] = True  # keep at least one key per row where the mask spans keys
    else:
        mask = np.where(rng.random(shape) < 0.3, -np.inf, rng.standard_normal(shape)).astype(np.float32)
        mask[..., 0] = 0.0
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    want, _ = sdpa_ref(q, k, v, attn_mask=mask)
    assert np.abs(got - want).max() < TOL
    if len(shape) >= 2:  # torch rejects 1-D masks
        assert np.abs(got - torch_sdpa(q, k, v, attn_mask=mask)).max() < TOL


def test_padding_mask_long_keys(rng, path):
    # (B, 1, 1, S) padding with ragged lengths, the encoder case, through several key tiles
    q, k, v = qkv(rng, 3, 4, 4, 97, 300, 64)
    lengths = np.array([300, 129, 1])
    mask = np.arange(300)[None, None, None, :] < lengths[:, None, None, None]
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert np.abs(got - torch_sdpa(q, k, v, attn_mask=mask)).max() < TOL


@pytest.mark.parametrize("window", [(4, 0), (16, None), (None, 5), (3, 3), (64, 0), (0, 0)])
@pytest.mark.parametrize("L", [7, 65, 131])
def test_sliding_windows(rng, path, window, L):
    q, k, v = qkv(rng, 1, 2, 2, L, L, 32)
    got = F.scaled_dot_product_attention(q, k, v, window=window)
    want, _ = sdpa_ref(q, k, v, window=window)
    assert np.abs(got - want).max() < TOL
    # lengths just past the window: causal + window equals an explicit banded bool mask
    left = L if window[0] is None else window[0]
    band = np.tril(np.ones((L, L), bool)) & ~np.tril(np.ones((L, L), bool), -left - 1)
    got_c = F.scaled_dot_product_attention(q, k, v, is_causal=True, window=(window[0], None))
    assert np.abs(got_c - torch_sdpa(q, k, v, attn_mask=band)).max() < TOL


def test_bias_and_scale(rng, path):
    q, k, v = qkv(rng, 2, 4, 2, 33, 47, 24)
    bias = rng.standard_normal((1, 4, 33, 47)).astype(np.float32)
    mask = rng.random((2, 1, 33, 47)) < 0.8
    mask[..., 0] = True
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True, bias=bias)
    want, _ = sdpa_ref(q, k, v, attn_mask=mask, scale=0.3, bias=bias)
    assert np.abs(got - want).max() < TOL


@pytest.mark.parametrize("L,S", [(1, 131), (3, 600), (7, 7), (97, 97), (131, 7)])  # decode and tile
@pytest.mark.parametrize("cap", [0.7, 5.0, 50.0])
def test_softcap(rng, path, L, S, cap):
    """Gemma 2's logit soft-capping: c tanh(s / c) of the scaled scores, before the mask and
    bias; scores scaled up (scale=2) so that small caps saturate most of them."""
    q, k, v = qkv(rng, 2, 4, 2, L, S, 24)
    mask = rng.random((2, 1, L, S)) < 0.8
    mask[..., 0] = True
    bias = rng.standard_normal((1, 4, L, S)).astype(np.float32)
    kw = dict(attn_mask=mask, scale=2.0, bias=bias)
    if L == S:  # causal as a mask (torch refuses attn_mask with is_causal)
        mask &= np.tril(np.ones((L, S), bool))
    got = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, softcap=cap, **kw)
    want, _ = sdpa_ref(q, k, v, softcap=cap, **kw)
    # tanh in float32 (1 - 2 / (e^2y + 1)): absolute error ~ 2 eps32 * cap per score
    assert np.abs(got - want).max() < TOL + 4e-7 * cap
    _, w = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, softcap=cap, return_weights=True, **kw)
    _, w_ref = sdpa_ref(q, k, v, softcap=cap, **kw)
    assert np.abs(w - w_ref).max() < TOL + 4e-7 * cap
    plain = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw)
    assert np.abs(plain - got).max() > 1e-3  # the cap changed the result


@pytest.mark.parametrize("cap", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_softcap_must_be_positive(rng, cap):
    q, k, v = qkv(rng, 1, 2, 2, 3, 3, 8)
    with pytest.raises((tfcore.TfcoreValueError, tfcore.TfcoreTypeError), match="softcap must be"):
        F.scaled_dot_product_attention(q, k, v, softcap=cap)


def test_fully_masked_rows_give_zeros(rng, path):
    q, k, v = qkv(rng, 1, 2, 2, 5, 9, 16)
    mask = np.ones((1, 1, 5, 9), bool)
    mask[..., 2, :] = False  # query 2 sees nothing
    out, w = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    assert np.all(out[:, :, 2] == 0) and np.all(w[:, :, 2] == 0)
    assert np.isfinite(out).all()
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    assert np.all(F.scaled_dot_product_attention(q, k, v, attn_mask=fmask)[:, :, 2] == 0)
    # causal with L > S: the first queries of a top-left mask still see key 0; a window
    # that excludes everything leaves zeros
    out = F.scaled_dot_product_attention(q, k[:, :, :3], v[:, :, :3], window=(None, 0), is_causal=True)
    want, _ = sdpa_ref(q, k[:, :, :3], v[:, :, :3], is_causal=True)
    assert np.abs(out - want).max() < TOL
    # torch gives NaN for such rows; tfcore's other rows still match it
    t = torch_sdpa(q, k, v, attn_mask=mask)
    assert np.isnan(t[:, :, 2]).all() or np.all(t[:, :, 2] == 0)
    keep = [0, 1, 3, 4]
    assert (
        np.abs(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[:, :, keep] - t[:, :, keep]).max()
        < TOL
    )


def test_return_weights(rng, path):
    q, k, v = qkv(rng, 2, 3, 3, 17, 29, 16)
    out, w = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    want_o, want_w = sdpa_ref(q, k, v, is_causal=True)
    assert w.shape == (2, 3, 17, 29)
    assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.abs(w - want_w).max() < 1e-5  # probabilities are O(1)
    assert np.all(w[..., 0, 1:] == 0)  # causal: exactly zero above the diagonal
    assert np.abs(out - want_o).max() < TOL


def test_three_dimensional_inputs(rng, path):
    q, k, v = qkv(rng, 1, 3, 3, 11, 13, 8)
    got = F.scaled_dot_product_attention(q[0], k[0], v[0], is_causal=True)
    assert got.shape == (3, 11, 8)
    assert np.abs(got - sdpa_ref(q, k, v, is_causal=True)[0][0]).max() < TOL


def test_strided_views_are_read_in_place(rng, path):
    # (B, T, H, D) projections seen as (B, H, T, D): no copy needed, same result
    B, T, H, D = 2, 37, 4, 16
    x = rng.standard_normal((B, T, 3, H, D)).astype(np.float32)
    q, k, v = (x[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    got = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    want, _ = sdpa_ref(q, k, v, is_causal=True)
    assert np.abs(got - want).max() < TOL
    out = np.empty((B, T, H, D), np.float32)
    res = F.scaled_dot_product_attention(q, k, v, is_causal=True, out=out.transpose(0, 2, 1, 3))
    assert np.shares_memory(res, out)
    assert np.abs(out.transpose(0, 2, 1, 3) - want).max() < TOL


def test_out_parameter(rng, path):
    q, k, v = qkv(rng, 1, 2, 2, 9, 9, 8)
    out = np.full((1, 2, 9, 8), np.nan, np.float32)
    res = F.scaled_dot_product_attention(q, k, v, out=out)
    assert res is out and np.isfinite(out).all()


def test_decode_splits_long_keys(rng, path):
    # L = 1 over 4096 keys: the decode path splits keys across threads and merges
    q, k, v = qkv(rng, 1, 12, 12, 1, 4096, 64)
    for threads in (1, 2):
        with tfcore.threads(threads):
            got = F.scaled_dot_product_attention(q, k, v)
        assert np.abs(got - torch_sdpa(q, k, v)).max() < TOL


@pytest.mark.parametrize(
    "args,kwargs,exc,msg",
    [
        (
            lambda q, k, v: (q.astype(np.float64), k, v),
            {},
            tfcore.TfcoreTypeError,
            "query must have dtype float32, got float64",
        ),
        (
            lambda q, k, v: (q[0, 0], k, v),
            {},
            tfcore.TfcoreValueError,
            r"query must have 3 to 4 dimensions, got 2 with shape \(9, 8\)",
        ),
        (
            lambda q, k, v: (q, k[:, :, :, :7], v),
            {},
            tfcore.TfcoreValueError,
            "key head_dim 7 differs from query head_dim 8",
        ),
        (lambda q, k, v: (q, k, v[:, :, :3]), {}, tfcore.TfcoreValueError, "value has 2 heads and length 3"),
        (lambda q, k, v: (q, k[:1], v[:1]), {}, tfcore.TfcoreValueError, "batch sizes differ"),
        (lambda q, k, v: (q[:, :, :0], k, v), {}, tfcore.TfcoreValueError, "empty"),
        (lambda q, k, v: (np.full_like(q, np.nan), k, v), {}, tfcore.TfcoreValueError, "NaN"),
        (
            lambda q, k, v: (q, k[..., ::2, :], v),
            {},
            tfcore.TfcoreValueError,
            "value has 2 heads and length 9, expected key's 2 heads and length 5",
        ),
        (lambda q, k, v: (q, k, v[..., ::2]), {}, tfcore.TfcoreValueError, "contiguous last axis"),
        (
            lambda q, k, v: (q, k, v),
            {"attn_mask": np.ones((3, 9, 9), bool)},
            tfcore.TfcoreValueError,
            "does not broadcast",
        ),
        (lambda q, k, v: (q, k, v), {"attn_mask": np.ones((9, 9), np.int64)}, tfcore.TfcoreTypeError, "bool"),
        (
            lambda q, k, v: (q, k, v),
            {"attn_mask": np.ones((9, 9), bool), "is_causal": True},
            tfcore.TfcoreValueError,
            "not both",
        ),
        (
            lambda q, k, v: (q, k, v),
            {"window": (-1, 0)},
            tfcore.TfcoreValueError,
            "window entries must be >= 0",
        ),
        (lambda q, k, v: (q, k, v), {"window": 3}, tfcore.TfcoreTypeError, "window must be a tuple"),
        (
            lambda q, k, v: (q, k, v),
            {"out": np.zeros((2, 4, 9, 7), np.float32)},
            tfcore.TfcoreValueError,
            "out must have the output shape",
        ),
        (lambda q, k, v: (q, k, v), {"scale": float("nan")}, tfcore.TfcoreValueError, "scale must be finite"),
        (lambda q, k, v: ([[1.0]], k, v), {}, tfcore.TfcoreTypeError, "numpy.ndarray"),
    ],
)
def test_bad_input(rng, args, kwargs, exc, msg):
    q, k, v = qkv(rng, 2, 4, 4, 9, 9, 8)
    k, v = k[:, :2], v[:, :2]  # 2 KV heads: needs enable_gqa
    with pytest.raises(exc, match=msg):
        F.scaled_dot_product_attention(*args(q, k, v), enable_gqa=True, **kwargs)


def test_gqa_needs_enable_gqa(rng):
    q, k, v = qkv(rng, 1, 4, 2, 3, 3, 8)
    with pytest.raises(tfcore.TfcoreValueError, match="enable_gqa=True"):
        F.scaled_dot_product_attention(q, k, v)
    q, k, v = qkv(rng, 1, 6, 4, 3, 3, 8)
    with pytest.raises(tfcore.TfcoreValueError, match="multiple"):
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def test_memory_flat_and_no_copies(rng):
    q, k, v = qkv(rng, 1, 4, 4, 200, 200, 32)
    out = np.empty_like(q)
    growth = rss_growth(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, out=out), calls=1000)
    assert growth < 2 * 2**20  # bytes; scratch is per call and freed
    assert (
        rss_growth(lambda: F.scaled_dot_product_attention(q, k, v, return_weights=True), calls=300)
        < 4 * 2**20
    )


def test_long_sequence_memory_is_linear(rng):
    # L = S = 8192: an L x S float32 score matrix would be 256 MiB per head; the kernel
    # needs O(L) memory (tiles), so RSS grows by far less than that.
    from memory import rss_bytes

    q, k, v = qkv(rng, 1, 1, 1, 8192, 8192, 64)
    before = rss_bytes()
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert rss_bytes() - before < 32 * 2**20
    assert (
        np.abs(
            out[0, 0, :64] - sdpa_ref(q[..., :64, :], k[..., :64, :], v[..., :64, :], is_causal=True)[0][0, 0]
        ).max()
        < TOL
    )


def test_threads_give_serial_results(rng, path):
    cases = [qkv(rng, 1, 4, 2, 50 + 7 * i, 80, 32) for i in range(8)]
    want = [F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True) for q, k, v in cases]
    got = [None] * len(cases)

    def work(i):
        for _ in range(20):
            got[i] = F.scaled_dot_product_attention(*cases[i], is_causal=True, enable_gqa=True)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("L", [1, 70])
@pytest.mark.parametrize("where", ["key", "value"])
def test_non_finite_key_or_value_is_named(rng, path, L, where):
    # Found from the output (cheap) on both the decode (L=1) and tile paths, then named.
    q, k, v = qkv(rng, 1, 2, 2, L, 600, 8)
    bad = {"key": k, "value": v}[where]
    bad[0, 1, 300, 3] = np.nan if where == "key" else np.inf
    with pytest.raises(tfcore.TfcoreValueError, match=f"{where} contains (NaN|Inf)"):
        F.scaled_dot_product_attention(q, k, v)
