"""RWKV-4's kernels (tfcore.functional.rwkv4_wkv, rwkv_token_shift, squared_relu,
sigmoid_gate) against float64 NumPy references (tests/reference/rwkv.py: WKV as the softmax-
weighted average it is, not the kernels' running-max recurrence) at odd lengths and widths,
with state in and out, split calls, and logits far outside exp's float32 range; on every
kernel path (AVX-512, AVX2, reference)."""

from __future__ import annotations

import numpy as np
import pytest
from reference import rwkv as ref

import tfcore
from tfcore import functional as F


def inputs(B, T, C, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    k = (scale * rng.standard_normal((B, T, C))).astype(np.float32)
    v = rng.standard_normal((B, T, C)).astype(np.float32)
    # HF's init spreads time_decay over about [-5, 3] and time_first around log(0.3)
    td = rng.uniform(-5.0, 3.0, C).astype(np.float32)
    tf = (np.log(0.3) + 0.5 * rng.standard_normal(C)).astype(np.float32)
    return k, v, td, tf


def empty_state(B, C):
    return tuple(np.zeros((B, C), np.float32) for _ in range(3))


# float32 exp and division per step with the running max keeping every exponent <= 0: the
# output is a convex combination of values, each weight off by a few ulp per step of decay
# carried; measured <= 3e-6 of max|v| at T = 131 on every path. 2e-5 leaves ~6x.
TOL = 2e-5


@pytest.mark.parametrize("B,T,C", [(1, 1, 1), (2, 7, 19), (3, 131, 37), (1, 64, 48)])
def test_wkv_matches_float64(path, B, T, C):
    k, v, td, tf = inputs(B, T, C, seed=T * 7 + C)
    y_ref, s_ref = ref.wkv(k, v, td, tf)
    state = empty_state(B, C)
    y = F.rwkv4_wkv(k, v, td, tf, state=state)
    assert y.shape == (B, T, C) and y.dtype == np.float32
    np.testing.assert_allclose(y, y_ref, atol=TOL * np.abs(v).max(), rtol=0)
    np.testing.assert_allclose(F.rwkv4_wkv(k, v, td, tf), y, rtol=0, atol=0)  # no state == empty
    # the state as what it means: the weighted mean num/den and the log-sum max + log(den)
    num, den, mx = state
    np.testing.assert_allclose(num / den, s_ref[0] / s_ref[1], atol=TOL * np.abs(v).max(), rtol=0)
    np.testing.assert_allclose(mx + np.log(den), s_ref[2] + np.log(s_ref[1]), atol=1e-4, rtol=1e-5)


def test_receptance_gate(path):
    k, v, td, tf = inputs(2, 9, 21, seed=3)
    r = np.random.default_rng(4).standard_normal(k.shape).astype(np.float32) * 4
    y_ref, _ = ref.wkv(k, v, td, tf, receptance=r)
    np.testing.assert_allclose(F.rwkv4_wkv(k, v, td, tf, receptance=r), y_ref, atol=TOL * 4, rtol=0)


@pytest.mark.parametrize("split", [1, 6, 12])
def test_two_calls_equal_one(path, split):
    B, T, C = 2, 13, 35
    k, v, td, tf = inputs(B, T, C, seed=11)
    whole = F.rwkv4_wkv(k, v, td, tf)
    state = empty_state(B, C)
    first = F.rwkv4_wkv(k[:, :split].copy(), v[:, :split].copy(), td, tf, state=state)
    rest = [
        F.rwkv4_wkv(k[:, t : t + 1].copy(), v[:, t : t + 1].copy(), td, tf, state=state)
        for t in range(split, T)
    ]
    # same float32 operations in the same order: the split changes nothing
    np.testing.assert_array_equal(np.concatenate([first, *rest], axis=1), whole)


def test_initial_state_matches_float64(path):
    B, T, C = 2, 17, 23
    k, v, td, tf = inputs(B, T, C, seed=5)
    rng = np.random.default_rng(6)
    state = (
        rng.standard_normal((B, C)).astype(np.float32),
        rng.uniform(0.5, 2.0, (B, C)).astype(np.float32),
        rng.uniform(-3.0, 3.0, (B, C)).astype(np.float32),
    )
    state[1][0, :3] = 0.0  # empty channels: den 0 means nothing is held, whatever max says
    state[0][0, :3] = 0.0
    state[2][0, :3] = 50.0
    y_ref, _ = ref.wkv(k, v, td, tf, state=state)
    y = F.rwkv4_wkv(k, v, td, tf, state=tuple(s.copy() for s in state))
    np.testing.assert_allclose(y, y_ref, atol=TOL * 3, rtol=0)


@pytest.mark.parametrize("scale", [30.0, 300.0])
def test_stable_for_large_logits(path, scale):
    """|k| up to ~1000 and decays e^(e^12) per step: far outside float32 exp's range (88), where
    the direct form overflows; the max-tracking form stays finite and exact."""
    B, T, C = 2, 41, 33
    k, v, td, tf = inputs(B, T, C, seed=int(scale), scale=scale)
    td[:4] = [12.0, -12.0, 40.0, -30.0]  # decay to 0 at once / almost no decay
    tf[4:6] = [80.0, -80.0]
    y_ref, _ = ref.wkv(k, v, td, tf)
    y = F.rwkv4_wkv(k, v, td, tf, state=empty_state(B, C))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, y_ref, atol=TOL * np.abs(v).max(), rtol=0)


def test_vector_paths_equal_reference_path(vector_path):
    k, v, td, tf = inputs(3, 29, 77, seed=9)
    y = F.rwkv4_wkv(k, v, td, tf)
    prev = tfcore._C._set_isa("reference")
    try:
        y_ref_path = F.rwkv4_wkv(k, v, td, tf)
    finally:
        tfcore._C._set_isa(prev)
    # polynomial exp (~2 ulp) vs libm expf, per step
    np.testing.assert_allclose(y, y_ref_path, atol=1e-5 * np.abs(v).max(), rtol=0)


@pytest.mark.parametrize("B,T,C", [(1, 1, 5), (2, 9, 37), (1, 130, 16)])
def test_token_shift(path, B, T, C):
    rng = np.random.default_rng(T)
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    mix = rng.uniform(0, 1, (3, C)).astype(np.float32)
    want, last = ref.token_shift(x, mix)
    # one rounding of x*m plus one fused multiply-add: a few ulp of |x|
    np.testing.assert_allclose(F.rwkv_token_shift(x, mix), want, atol=2e-6 * np.abs(x).max(), rtol=0)
    state = rng.standard_normal((B, C)).astype(np.float32)
    want, last = ref.token_shift(x, mix, state)
    got = F.rwkv_token_shift(x, mix, state=state)
    np.testing.assert_allclose(got, want, atol=2e-6 * np.abs(x).max(), rtol=0)
    np.testing.assert_array_equal(state, last)  # the state now holds the last token


def test_channel_mix_elementwise(path):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 7, 41)) * 5).astype(np.float32)
    np.testing.assert_allclose(F.squared_relu(x), np.maximum(x.astype(np.float64), 0) ** 2, rtol=1e-6, atol=0)
    y = x.copy()
    assert F.squared_relu(y, out=y) is y
    np.testing.assert_array_equal(y, F.squared_relu(x))
    r = (rng.standard_normal(x.shape) * 30).astype(np.float32)
    want = x.astype(np.float64) / (1.0 + np.exp(-r.astype(np.float64)))
    # polynomial exp: a few ulp relative
    np.testing.assert_allclose(F.sigmoid_gate(r, x), want, rtol=1e-6, atol=1e-30)
    big = np.random.default_rng(2).standard_normal(70000).astype(np.float32)  # the threaded path
    np.testing.assert_allclose(
        F.sigmoid_gate(big, big), big / (1 + np.exp(-big.astype(np.float64))), rtol=1e-6, atol=1e-30
    )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda k, v, td, tf: F.rwkv4_wkv(k[0], v, td, tf), "key"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k, v[:, :2].copy(), td, tf), "value has shape"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k, v, td[:3], tf), "time_decay has shape"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k, v, td, tf.astype(np.float64)), "float64"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k * np.nan, v, td, tf), "NaN|finite"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k, v, td, tf, state=np.zeros((2, 5))), "tuple"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k, v, td, tf, state=empty_state(2, 4)), r"state\[0\]"),
        (
            lambda k, v, td, tf: F.rwkv4_wkv(
                k, v, td, tf, state=(*empty_state(2, 5)[:2], -np.ones((2, 5), np.float32))
            ),
            None,
        ),
        (
            lambda k, v, td, tf: F.rwkv4_wkv(
                k,
                v,
                td,
                tf,
                state=(
                    np.zeros((2, 5), np.float32),
                    -np.ones((2, 5), np.float32),
                    np.zeros((2, 5), np.float32),
                ),
            ),
            "den",
        ),
        (lambda k, v, td, tf: F.rwkv4_wkv(k[:, :0].copy(), v[:, :0].copy(), td, tf), "empty|zero"),
        (lambda k, v, td, tf: F.rwkv4_wkv(k, v, td, tf, receptance=k[:, :1].copy()), "receptance"),
        (lambda k, v, td, tf: F.rwkv_token_shift(k, td), "mix"),
        (lambda k, v, td, tf: F.rwkv_token_shift(k, np.zeros((17, 5), np.float32)), "at most 16"),
        (
            lambda k, v, td, tf: F.rwkv_token_shift(k, td[None], state=np.zeros((2, 5), np.float32)[:, ::-1]),
            "state",
        ),
        (lambda k, v, td, tf: F.sigmoid_gate(k, v[:, :1].copy()), "same|equal"),
        (lambda k, v, td, tf: F.squared_relu(k, out=k[:1]), "out"),
    ],
)
def test_bad_inputs_raise(call, match):
    k, v, td, tf = inputs(2, 3, 5, seed=0)
    if match is None:  # valid: a negative max is fine
        call(k, v, td, tf)
        return
    with pytest.raises((tfcore.TfcoreValueError, tfcore.TfcoreTypeError), match=match):
        call(k, v, td, tf)


def test_read_only_state_raises():
    k, v, td, tf = inputs(1, 2, 4, seed=0)
    s = empty_state(1, 4)
    s[0].flags.writeable = False
    with pytest.raises(tfcore.TfcoreValueError, match="read-only"):
        F.rwkv4_wkv(k, v, td, tf, state=s)
