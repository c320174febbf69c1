"""tfcore.functional.causal_conv1d and selective_scan (Mamba's short convolution and S6 scan)
against the float64 NumPy recurrences of tests/reference/state_space.py at odd lengths
(1, 7, 97, 131) and odd channel counts, with and without state, on every kernel path; a call
over L tokens equals calls over its pieces (prefill + one-token decode) with the state carried."""

from __future__ import annotations

import numpy as np
import pytest
from reference.state_space import causal_conv1d as conv_ref
from reference.state_space import gated_rms_norm as gnorm_ref
from reference.state_space import selective_scan as scan_ref
from reference.state_space import ssd_scan as ssd_ref

import tfcore
from tfcore import TfcoreValueError
from tfcore import functional as F

LENGTHS = (1, 7, 97, 131)


def conv_case(rng, B, T, C, K):
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    w = (rng.standard_normal((C, K)) / np.sqrt(K)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    s = rng.standard_normal((B, C, K - 1)).astype(np.float32)
    return x, w, b, s


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("C,K", [(37, 4), (100, 3), (19, 1)])
def test_conv_matches_reference(path, rng, T, C, K):
    x, w, b, s = conv_case(rng, 2, T, C, K)
    for act in (None, "silu"):
        state = s.copy() if K > 1 else None
        y = F.causal_conv1d(x, w, b, state=state, activation=act)
        want, want_state = conv_ref(x, w, b, s, act)
        # K float32 products summed (K <= 4) plus SiLU's exp (~2 ulp): a few float32 ulps of
        # values ~|w| |x| K ~ 4
        np.testing.assert_allclose(y, want, rtol=0, atol=2e-5 * np.abs(want).max())
        if K > 1:
            np.testing.assert_array_equal(state, want_state.astype(np.float32))  # copies
    # no state: zeros before the first token, HF's Conv1d with padding K-1 cut to T
    y0 = F.causal_conv1d(x, w[:, None, :], b, activation="silu")
    np.testing.assert_allclose(y0, conv_ref(x, w, b, None, "silu")[0], rtol=0, atol=2e-5 * 4)


@pytest.mark.parametrize("T", (7, 131))
def test_conv_pieces_equal_one_call(path, rng, T):
    x, w, b, s = conv_case(rng, 3, T, 45, 4)
    whole_state = s.copy()
    whole = F.causal_conv1d(x, w, b, state=whole_state, activation="silu")
    state, parts = s.copy(), []
    for lo, hi in ((0, 1), (1, 3), *((i, i + 1) for i in range(3, T))):
        if lo < T:
            parts.append(
                F.causal_conv1d(np.ascontiguousarray(x[:, lo:hi]), w, b, state=state, activation="silu")
            )
    # the same float32 operations per output element, in the same order: exact
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    np.testing.assert_array_equal(state, whole_state)


def scan_case(rng, B, T, Dc, N, gate=True):
    x = rng.standard_normal((B, T, Dc)).astype(np.float32)
    dt = (rng.standard_normal((B, T, Dc)) - 1.0).astype(np.float32)
    A = -np.exp(rng.uniform(-1, 2.5, (Dc, N))).astype(np.float32)
    Bm = rng.standard_normal((B, T, N)).astype(np.float32)
    Cm = rng.standard_normal((B, T, N)).astype(np.float32)
    D = rng.standard_normal(Dc).astype(np.float32)
    z = rng.standard_normal((B, T, Dc)).astype(np.float32) if gate else None
    bias = rng.uniform(-3, 0, Dc).astype(np.float32)
    s0 = rng.standard_normal((B, Dc, N)).astype(np.float32)
    return x, dt, A, Bm, Cm, D, z, bias, s0


def scan_tol(want):
    # each output is a dot over N of a state built by T float32 multiply-adds with decays
    # exp(delta A) < 1 (errors damp out): a few hundred float32 ulps of the largest output
    return 2e-5 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("Dc,N", [(37, 16), (24, 5), (9, 33)])
def test_scan_matches_reference(path, rng, T, Dc, N):
    x, dt, A, Bm, Cm, D, z, bias, s0 = scan_case(rng, 2, T, Dc, N)
    state = s0.copy()
    y = F.selective_scan(x, dt, A, Bm, Cm, D=D, z=z, dt_bias=bias, state=state)
    want, want_state = scan_ref(x, dt, A, Bm, Cm, D, z, bias, s0)
    np.testing.assert_allclose(y, want, rtol=0, atol=scan_tol(want))
    np.testing.assert_allclose(state, want_state, rtol=0, atol=scan_tol(want_state))
    # no state, no D, no gate, no bias: the bare recurrence from zeros
    y = F.selective_scan(x, dt, A, Bm, Cm)
    want = scan_ref(x, dt, A, Bm, Cm)[0]
    np.testing.assert_allclose(y, want, rtol=0, atol=scan_tol(want))


@pytest.mark.parametrize("T", (7, 97))
def test_scan_pieces_equal_one_call(path, rng, T):
    x, dt, A, Bm, Cm, D, z, bias, s0 = scan_case(rng, 2, T, 21, 16)
    whole_state = s0.copy()
    whole = F.selective_scan(x, dt, A, Bm, Cm, D=D, z=z, dt_bias=bias, state=whole_state)
    state, parts = s0.copy(), []
    cut = lambda a, lo, hi: np.ascontiguousarray(a[:, lo:hi])  # noqa: E731
    for lo, hi in ((0, T // 2), *((i, i + 1) for i in range(T // 2, T))):
        parts.append(
            F.selective_scan(
                cut(x, lo, hi),
                cut(dt, lo, hi),
                A,
                cut(Bm, lo, hi),
                cut(Cm, lo, hi),
                D=D,
                z=cut(z, lo, hi),
                dt_bias=bias,
                state=state,
            )
        )
    # per channel the same float32 operations in the same order: exact
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    np.testing.assert_array_equal(state, whole_state)


def test_scan_softplus_and_gate_over_their_range(path, rng):
    """delta = softplus(dt + dt_bias) and the gate silu(z), computed along the channels apart
    from the scan: with A = 0, B = C = x = 1 and a zero state, one token's output is exactly
    softplus(dt + bias) * silu(z). dt spans -120..60 (exp underflow, the series' whole range
    u = exp(-|v|) in (0, 1], torch's threshold at 20 and just either side of it)."""
    v = np.concatenate([np.linspace(-120, 60, 997), [-1e-6, 0.0, 1e-6, 19.999, 20.0, 20.001]]).astype(
        np.float32
    )
    Dc = v.size
    z = rng.uniform(-30, 30, Dc).astype(np.float32)
    bias = rng.uniform(-1, 1, Dc).astype(np.float32)
    dt = (v - bias).astype(np.float32)[None, None, :]
    arg = (dt[0, 0] + bias).astype(np.float64)  # the kernel's float32 sum (rounded)
    ones = lambda *shape: np.ones(shape, np.float32)  # noqa: E731
    A = np.zeros((Dc, 1), np.float32)
    for gate in (None, z[None, None, :]):
        y = F.selective_scan(ones(1, 1, Dc), dt, A, ones(1, 1, 1), ones(1, 1, 1), z=gate, dt_bias=bias)
        want = np.where(arg > 20, arg, np.logaddexp(0.0, arg))
        if gate is not None:
            zz = z.astype(np.float64)
            want = want * zz / (1 + np.exp(-zz))
        # a few float32 ulps: exp (~2 ulp), the series (< 1.4e-8 relative), the division and
        # the final add; atol for the subnormal results of dt < -87 (flushed to 0 or not)
        np.testing.assert_allclose(y[0, 0], want, rtol=2e-6, atol=1e-37)


def test_vector_paths_match_reference_path(vector_path, rng):
    from tfcore import _C

    x, dt, A, Bm, Cm, D, z, bias, s0 = scan_case(rng, 2, 131, 40, 16)
    y = F.selective_scan(x, dt, A, Bm, Cm, D=D, z=z, dt_bias=bias, state=s0.copy())
    xc, w, b, s = conv_case(rng, 2, 131, 40, 4)
    yc = F.causal_conv1d(xc, w, b, state=s.copy(), activation="silu")
    _C._set_reference_kernels(True)
    try:
        y_ref = F.selective_scan(x, dt, A, Bm, Cm, D=D, z=z, dt_bias=bias, state=s0.copy())
        yc_ref = F.causal_conv1d(xc, w, b, state=s.copy(), activation="silu")
    finally:
        _C._set_reference_kernels(False)
    # vector exp (~2 ulp) vs libm expf and a different summation order over N: float32 ulps
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5 * np.abs(y_ref).max())
    np.testing.assert_allclose(yc, yc_ref, rtol=0, atol=1e-5 * np.abs(yc_ref).max())


def test_errors(rng):
    x, w, b, s = conv_case(rng, 2, 5, 8, 4)
    with pytest.raises(TfcoreValueError, match="state has shape"):
        F.causal_conv1d(x, w, b, state=np.zeros((2, 8, 4), np.float32))
    with pytest.raises(TfcoreValueError, match="read-only"):
        ro = s.copy()
        ro.flags.writeable = False
        F.causal_conv1d(x, w, b, state=ro)
    with pytest.raises(TfcoreValueError, match="activation"):
        F.causal_conv1d(x, w, activation="gelu")
    x, dt, A, Bm, Cm, D, z, bias, s0 = scan_case(rng, 1, 3, 4, 5)
    with pytest.raises(TfcoreValueError, match="A holds"):
        F.selective_scan(x, dt, -A, Bm, Cm)
    with pytest.raises(TfcoreValueError, match="B has shape"):
        F.selective_scan(x, dt, A, Bm[:, :, :3].copy(), Cm)


# ------------------------------------------------------------------ Mamba-2 SSD


def ssd_case(rng, B, T, H, P, G, N):
    x = rng.standard_normal((B, T, H, P)).astype(np.float32)
    dt = (rng.standard_normal((B, T, H)) - 1.0).astype(np.float32)
    A = -np.exp(rng.uniform(-1, 1.5, H)).astype(np.float32)
    Bm = rng.standard_normal((B, T, G, N)).astype(np.float32)
    Cm = rng.standard_normal((B, T, G, N)).astype(np.float32)
    D = rng.standard_normal(H).astype(np.float32)
    bias = rng.uniform(-3, 0, H).astype(np.float32)
    s0 = rng.standard_normal((B, H, P, N)).astype(np.float32)
    return x, dt, A, Bm, Cm, D, bias, s0


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize(
    "mode,chunk", [("recurrent", 64), ("chunkwise", 16), ("chunkwise", 64), ("chunkwise", 7)]
)
@pytest.mark.parametrize("H,P,G,N", [(4, 9, 2, 16), (3, 16, 1, 5)])
def test_ssd_matches_reference(path, rng, T, mode, chunk, H, P, G, N):
    x, dt, A, Bm, Cm, D, bias, s0 = ssd_case(rng, 2, T, H, P, G, N)
    state = s0.copy()
    y = F.ssd_scan(x, dt, A, Bm, Cm, D=D, dt_bias=bias, state=state, mode=mode, chunk_size=chunk)
    want, want_state = ssd_ref(x, dt, A, Bm, Cm, D, bias, state=s0)
    # sums of up to chunk + N float32 products against float64; the chunkwise form's
    # exp(cs_i - cs_j) factors are exact to float32 rounding (arguments <= 0): ~1e-6 measured
    np.testing.assert_allclose(y, want, rtol=0, atol=scan_tol(want))
    np.testing.assert_allclose(state, want_state, rtol=0, atol=scan_tol(want_state))
    y = F.ssd_scan(x, dt, A, Bm, Cm, mode=mode, chunk_size=chunk, dt_limit=(0.01, 0.5))
    want = ssd_ref(x, dt, A, Bm, Cm, dt_limit=(0.01, 0.5))[0]
    np.testing.assert_allclose(y, want, rtol=0, atol=scan_tol(want))


@pytest.mark.parametrize("T", (7, 97))
def test_ssd_prefill_then_decode_equals_one_call(path, rng, T):
    x, dt, A, Bm, Cm, D, bias, s0 = ssd_case(rng, 2, T, 4, 8, 2, 16)
    whole_state = s0.copy()
    whole = F.ssd_scan(x, dt, A, Bm, Cm, D=D, dt_bias=bias, state=whole_state, chunk_size=16)
    state, parts = s0.copy(), []
    cut = lambda a, lo, hi: np.ascontiguousarray(a[:, lo:hi])  # noqa: E731
    half = T // 2 + 1
    parts.append(
        F.ssd_scan(
            *(cut(a, 0, half) for a in (x, dt)),
            A,
            cut(Bm, 0, half),
            cut(Cm, 0, half),
            D=D,
            dt_bias=bias,
            state=state,
            chunk_size=16,
        )
    )
    for t in range(half, T):
        parts.append(
            F.ssd_scan(
                *(cut(a, t, t + 1) for a in (x, dt)),
                A,
                cut(Bm, t, t + 1),
                cut(Cm, t, t + 1),
                D=D,
                dt_bias=bias,
                state=state,
                mode="recurrent",
            )
        )
    # chunk boundaries and the recurrent form order sums differently: float32 rounding
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=0, atol=scan_tol(whole))
    np.testing.assert_allclose(state, whole_state, rtol=0, atol=scan_tol(whole_state))


def test_ssd_errors(rng):
    x, dt, A, Bm, Cm, D, bias, s0 = ssd_case(rng, 1, 5, 4, 8, 2, 16)
    with pytest.raises(TfcoreValueError, match="groups"):
        F.ssd_scan(x, dt, A, Bm[:, :, :1].repeat(3, 2), Cm[:, :, :1].repeat(3, 2))
    with pytest.raises(TfcoreValueError, match="mode"):
        F.ssd_scan(x, dt, A, Bm, Cm, mode="parallel")
    with pytest.raises(TfcoreValueError, match="chunk_size"):
        F.ssd_scan(x, dt, A, Bm, Cm, chunk_size=0)
    with pytest.raises(TfcoreValueError, match="A holds"):
        F.ssd_scan(x, dt, -A, Bm, Cm)
    with pytest.raises(TfcoreValueError, match="state has shape"):
        F.ssd_scan(x, dt, A, Bm, Cm, state=s0[:, :, :4].copy())
    with pytest.raises(TfcoreValueError, match="dt_limit"):
        F.ssd_scan(x, dt, A, Bm, Cm, dt_limit=(1.0, 0.5))


# ------------------------------------------------------------------ Mamba-2 gated RMSNorm


@pytest.mark.parametrize(
    "shape,G", [((1, 1, 7), 1), ((2, 13, 97), 1), ((3, 5, 131 * 2), 2), ((4, 64), 8), ((9,), 3)]
)
def test_gated_rms_norm_matches_reference(path, rng, shape, G):
    x = rng.standard_normal(shape).astype(np.float32) * 3
    z = rng.standard_normal(shape).astype(np.float32) * 4
    w = rng.standard_normal(shape[-1]).astype(np.float32)
    got = F.gated_rms_norm(x, z, w, n_groups=G, eps=1e-5)
    want = gnorm_ref(x, z, w, G, 1e-5)
    assert got.shape == shape and got.dtype == np.float32
    # float32 silu (vector exp ~2 ulp), product, sum of squares over a group (<= 131 terms)
    # and one rsqrt: a few float32 ulps of the largest output
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_gated_rms_norm_vector_paths_match_reference_path(vector_path, rng):
    from tfcore import _C

    x = rng.standard_normal((3, 33, 256)).astype(np.float32)
    z = rng.standard_normal((3, 33, 256)).astype(np.float32) * 5
    w = rng.standard_normal(256).astype(np.float32)
    got = F.gated_rms_norm(x, z, w, n_groups=4)
    _C._set_reference_kernels(True)
    try:
        want = F.gated_rms_norm(x, z, w, n_groups=4)
    finally:
        _C._set_reference_kernels(False)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_gated_rms_norm_errors(rng):
    x = rng.standard_normal((2, 3, 12)).astype(np.float32)
    w = np.ones(12, np.float32)
    with pytest.raises(TfcoreValueError, match="gate has shape"):
        F.gated_rms_norm(x, x[:, :2].copy(), w)
    with pytest.raises(TfcoreValueError, match="weight has shape"):
        F.gated_rms_norm(x, x, w[:5].copy())
    with pytest.raises(TfcoreValueError, match="n_groups=5"):
        F.gated_rms_norm(x, x, w, n_groups=5)
    with pytest.raises(TfcoreValueError, match="eps"):
        F.gated_rms_norm(x, x, w, eps=-1.0)
    with pytest.raises(tfcore.TfcoreError, match="float64"):
        F.gated_rms_norm(x.astype(np.float64), x, w)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(TfcoreValueError, match="x"):
        F.gated_rms_norm(bad, x, w)
