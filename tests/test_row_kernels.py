"""The row kernels at every kernel level (the `path` fixture): float32 <-> bfloat16 conversion
and per-row int8 quantization give the same bits at AVX-512, AVX2 and the plain reference
(and equal torch / a NumPy float32 emulation), and the NaN/Inf scans find every bad value,
at odd sizes and in tails shorter than a vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_mha import rand

import tfcore

F = tfcore.functional
SIZES = [1, 7, 97, 131, 4099, 100003, (1 << 18) + 7]  # tails, several blocks, the threaded path


def at_level(level, fn, *args):
    prev = tfcore._C._set_isa(level)
    try:
        return fn(*args)
    finally:
        tfcore._C._set_isa(prev)


def f32_bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def special_values():
    """Ties, carries into the exponent, the largest finite, subnormals, Inf and NaN with payloads
    that plain rounding would carry into Inf."""
    bits = np.array(
        [0x3F808000, 0x3F818000, 0x3F80_7FFF, 0x7F7F_FFFF, 0x0000_0001, 0x807F_FFFF, 0x7F80_0000]
        + [0xFF80_0000, 0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0xFF80_8001, 0x7FFF_FFFF, 0x0001_8000],
        np.uint32,
    )
    return bits.view(np.float32)


@pytest.mark.parametrize("n", SIZES)
def test_float32_to_bfloat16_bits_at_every_level(rng, path, n):
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 38, n)).astype(np.float32)
    sp = special_values()
    x[-min(n, len(sp)) :] = sp[: min(n, len(sp))]  # specials in the tail
    got = tfcore._C.float32_to_bfloat16(x)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    # NaN -> a quiet NaN of the same sign (its top bits with the quiet bit set)
    np.testing.assert_array_equal(got[nan], ((f32_bits(x[nan]) >> 16) | 0x40).astype(np.uint16))
    back = tfcore._C.bfloat16_to_float32(got)
    np.testing.assert_array_equal(f32_bits(back), got.astype(np.uint32) << 16)
    if path != "reference":
        ref = at_level("reference", tfcore._C.float32_to_bfloat16, x)
        np.testing.assert_array_equal(got, ref)


def quantized_cache_rows(x, dtype):
    """x (B, T, D) stored through a one-layer cache whose key/value projections are the
    identity (so the cache stores exactly x); the keys read back as float32 (B, T, D)."""
    B, T, D = x.shape
    eye = np.eye(D, dtype=np.float32)
    layer = tfcore.MultiHeadAttention(
        D, 1, head_dim=D, q_weight=eye, k_weight=eye, v_weight=eye, o_weight=eye, is_causal=True
    )
    cache = tfcore.KVCache(1, B, 1, D, capacity=T, dtype=dtype)
    layer(x, past_key_values=cache, layer_idx=0)
    return cache.keys(0)[:, 0], cache.values(0)[:, 0]


def int8_emulated(a):
    """Per-row symmetric int8 quantize-dequantize in float32: s = max(max|a| / 127, FLT_MIN)
    (1 for an all-zero row), q = clip(rint(a * (1 / s)), -127, 127)."""
    s = np.abs(a).max(-1, keepdims=True) / np.float32(127)
    s = np.where(s > 0, np.maximum(s, np.finfo(np.float32).tiny), np.float32(1)).astype(np.float32)
    return (np.clip(np.rint(a * (np.float32(1) / s)), -127, 127) * s).astype(np.float32)


def crafted_rows(rng, D):
    """(1, 8, D) rows: random, ties at scale 1 (max 127: every x.5 is a tie to even), zeros, a
    single value in the last lane, huge and tiny magnitudes, and values near FLT_MIN."""
    rows = rand(rng, 8, D) * 3
    rows[1] = (np.arange(D) % 41 - 20) + 0.5
    rows[1, 0] = 127.0
    rows[2] = 0.0
    rows[3] = 0.0
    rows[3, -1] = -3.7
    rows[4] = rand(rng, D) * 1e30
    rows[5] = rand(rng, D) * 1e-30
    rows[6] = rand(rng, D) * 1e-37  # max / 127 below FLT_MIN: the scale's floor
    rows[6, ::3] = 0.0
    rows[7] = -rows[7] * 1e3
    return rows[None]


@pytest.mark.parametrize("D", [7, 97, 131])
def test_int8_rows_at_every_level(rng, path, D):
    x = crafted_rows(rng, D)
    k, v = quantized_cache_rows(x, "int8")
    want = int8_emulated(x)
    assert np.isfinite(k).all()
    np.testing.assert_array_equal(k, want)
    np.testing.assert_array_equal(v, want)
    if path != "reference":
        ref = at_level("reference", quantized_cache_rows, x, "int8")
        np.testing.assert_array_equal(f32_bits(k), f32_bits(ref[0]))


@pytest.mark.parametrize("D", [7, 97, 131])
def test_bfloat16_rows_at_every_level(rng, path, D):
    x = crafted_rows(rng, D)
    k, v = quantized_cache_rows(x, "bfloat16")
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(f32_bits(k), f32_bits(want))
    np.testing.assert_array_equal(f32_bits(v), f32_bits(want))


@pytest.mark.parametrize("n", SIZES + [(1 << 20) + 3])
def test_flat_scan_reports_the_first_bad_index(rng, path, n):
    x = rand(rng, n)
    assert F.relu(x).shape == (n,)  # all finite: no error
    marks = sorted({0, n - 1, n // 2, max(0, n - 5), min(n - 1, 4096 + 3)})
    for i in marks:
        for bad, name in ((np.nan, "NaN"), (-np.inf, "Inf")):
            y = x.copy()
            y[i] = bad
            if i + 1 < n:
                y[-1] = np.inf  # a later bad value does not hide the first
            with pytest.raises(tfcore.TfcoreValueError, match=rf"x contains {name} at flat index {i} "):
                F.relu(y)


@pytest.mark.parametrize("D", [7, 97, 131])
def test_strided_scan_finds_a_bad_value_in_any_lane(rng, path, D):
    B, H, L = 2, 3, 9
    q, k, v = (rand(rng, B, H, L, D + 9)[..., :D] for _ in range(3))  # strided views
    assert F.sliding_window_attention(q, k, v, 2).shape == (B, H, L, D)
    assert F.scaled_dot_product_attention(q, k, v).shape == (B, H, L, D)
    for idx in [(0, 0, 0, 0), (1, 2, L - 1, D - 1), (1, 1, 2, D // 2), (0, 2, 3, max(0, D - 3))]:
        for bad in (np.nan, np.inf, -np.inf):
            kk = rand(rng, B, H, L, D + 9)[..., :D]
            kk[idx] = bad
            with pytest.raises(tfcore.TfcoreValueError, match="key contains NaN or Inf"):
                F.sliding_window_attention(q, kk, v, 2)
        # SDPA scans its output (the strided scan) and names the input only if that fails
        kk[idx] = np.nan
        with pytest.raises(tfcore.TfcoreValueError, match="key contains NaN or Inf"):
            F.scaled_dot_product_attention(q, kk, v)
