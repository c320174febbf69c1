"""int8 Linear with every fused epilogue (bias, activation, residual add, in-place
accumulate, the gated product) at odd shapes and every row count that picks a different
route (the few-row kernel, oneDNN over tfcore's own panels in one or two column slices),
against a NumPy emulation of the exact integer math.

Without VNNI (the CI passes with ONEDNN_MAX_CPU_ISA=AVX2) the rows reach oneDNN's GEMM as
u8 = q + 128 with a source zero point of 128, so the emulation computes it that way:
y = s_x s_w (Σ_k q_u8 w - 128 Σ_k w), integers exact in float64; with VNNI it is the same
number as s_x s_w Σ_k q w. Each case runs at every tfcore kernel level this CPU executes
(the `path` fixture: quantizer and few-row kernels), the oneDNN level being the process's.

Tolerance: the integer sums are exact, so what remains is float32 rounding of the dequantized
epilogue (a few ulps of each output; 1e-5 of the output scale), except in the gated case
(see there)."""

from __future__ import annotations

import numpy as np
import pytest
from reference import dense

import tfcore

NATIVE = tfcore.supported_dtypes()["int8"].startswith("native")
WEIGHT_MAX = 127 if NATIVE else 63


def quantize_rows(a, qmax):
    """tfcore's symmetric per-row quantization in float32: (q as float64, scale as float64)."""
    a = np.asarray(a, np.float32)
    s = np.abs(a).max(axis=-1, keepdims=True) / np.float32(qmax)
    s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(a * (np.float32(1) / s)), -qmax, qmax)
    return q.astype(np.float64), s.astype(np.float64)


def emulated(x, W, b, act):
    """act(s_x s_w (q_u8 q_wᵀ - 128 Σ_k q_w) + b) with q_u8 = q_x + 128 (the source zero point)."""
    qx, sx = quantize_rows(x, 127)
    qw, sw = quantize_rows(W, WEIGHT_MAX)
    u8 = qx + 128.0
    assert u8.min() >= 1 and u8.max() <= 255
    acc = u8 @ qw.T - 128.0 * qw.sum(axis=1)
    y = acc * sx * sw.T + (0.0 if b is None else b)
    return dense.activation(y, act)


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# row counts: 1-4 (one few-row group), 5 and 16 (groups of the own-panel few-row kernel, or
# oneDNN at the reference level), 17 and 61 (oneDNN's GEMM)
ROWS = (1, 3, 5, 16, 17, 61)


@pytest.mark.parametrize("K, N", [(21, 20), (37, 63), (131, 197)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("act", [None, "relu", "gelu_tanh", "silu"])
def test_each_epilogue_equals_the_zero_point_emulation(rng, path, K, N, bias, act):
    W = rand(rng, N, K, scale=K**-0.5)
    b = rand(rng, N) if bias else None
    lin = tfcore.Linear(W, b, act, dtype="int8")
    for M in ROWS:
        x, r = rand(rng, M, K), rand(rng, M, N)
        ref = emulated(x, W, b, act)
        tol = 1e-5 * max(1.0, np.abs(ref).max(), np.abs(r).max())
        assert np.abs(lin(x) - ref).max() < tol, (M, "plain")
        assert np.abs(lin(x, r) - (ref + r)).max() < tol, (M, "residual add")
        acc = r.copy()
        lin(x, acc, out=acc)  # the in-place accumulate (oneDNN's sum post-op)
        assert np.abs(acc - (ref + r)).max() < tol, (M, "accumulate")


def test_rows_at_the_quantization_extremes(rng, path):
    """Rows whose q_u8 reach 1 and 255 (q = ±127), an all-zero row (u8 all 128), one outlier."""
    K, N = 45, 70
    W = rand(rng, N, K, scale=0.2)
    lin = tfcore.Linear(W, rand(rng, N), "relu", dtype="int8")
    x = rand(rng, 19, K)
    x[0] = np.where(np.arange(K) % 2 == 0, 3.0, -3.0)  # every element at ±qmax
    x[1] = 0.0
    x[2, 7] = 1e5
    ref = emulated(x, W, lin.bias, "relu")
    assert np.abs(lin(x) - ref).max() < 1e-5 * np.abs(ref).max()
    np.testing.assert_array_equal(lin(x)[1], np.maximum(lin.bias, 0))


def test_gated_product(rng, path):
    """FeedForward's gated form runs up(x) * gate(x) as the up projection's multiply post-op.
    The product is quantized again for the down projection; NumPy's float64 and tfcore's
    float32 product can fall on either side of a rounding tie there, which moves one q_h by
    one step: at most s_h max|W_down| per flipped element of the row. Bound: 1e-5 of the
    scale plus two such steps (a wrong post-op operand or index is off by O(scale))."""
    C, F = 29, 53
    up, down, gate = rand(rng, F, C, scale=0.3), rand(rng, C, F, scale=0.2), rand(rng, F, C, scale=0.3)
    ff = tfcore.FeedForward(up, down, gate_weight=gate, activation="silu", dtype="int8")
    for M in ROWS:
        x, r = rand(rng, M, C), rand(rng, M, C)
        h = emulated(x, gate, None, "silu") * emulated(x, up, None, None)
        ref = emulated(h.astype(np.float32), down, None, None)
        _, s_h = quantize_rows(h.astype(np.float32), 127)
        tol = 1e-5 * max(1.0, np.abs(ref).max()) + 2 * s_h * np.abs(down).max()
        assert (np.abs(ff(x) - ref) < tol).all(), M
        assert (np.abs(ff(x, r) - (ref + r)) < tol + 1e-5 * np.abs(r).max()).all(), M


def test_two_column_slices(rng, path):
    """K N > 16 MiB of int8: oneDNN over own panels runs two column slices (the zero point
    and post-op operands offset per slice)."""
    K, N = 1031, 16388  # 16.9 M weights
    W = rand(rng, N, K, scale=K**-0.5)
    b = rand(rng, N)
    lin = tfcore.Linear(W, b, "gelu_tanh", dtype="int8")
    x, r = rand(rng, 23, K), rand(rng, 23, N)
    ref = emulated(x, W, b, "gelu_tanh")
    tol = 1e-5 * max(1.0, np.abs(ref).max(), np.abs(r).max())
    assert np.abs(lin(x, r) - (ref + r)).max() < tol
