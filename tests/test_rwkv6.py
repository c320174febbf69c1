"""tfcore.functional.rwkv6_wkv (RWKV-6's matrix-state WKV with data-dependent decays, on the
linear-attention kernel) against flash-linear-attention's naive_recurrent_rwkv6 (fla-core,
loaded by path, run in float64) at odd lengths, K != V, strong decays, initial and final
state, split calls, on every kernel path; bad inputs raise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_linear_attention import fla_naive

import tfcore
from tfcore import functional as F


def case(B, H, T, K, V, seed, decay_spread=1.0):
    rng = np.random.default_rng(seed)
    r, k = (rng.standard_normal((B, H, T, K)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((B, H, T, V)).astype(np.float32)
    # RWKV-6: log decay -exp(w), w data-dependent; spread 3 reaches |w| ~ e^9 (decay to 0 at once)
    w = (-np.exp(decay_spread * rng.standard_normal((B, H, T, K)))).astype(np.float32)
    u = rng.standard_normal((H, K)).astype(np.float32)
    s0 = rng.standard_normal((B, H, K, V)).astype(np.float32)
    return r, k, v, w, u, s0


def reference(r, k, v, w, u, s0=None, scale=1.0):
    naive = fla_naive("rwkv6/recurrent_naive.py").naive_recurrent_rwkv6
    d = lambda a: torch.from_numpy(a).double()  # noqa: E731
    o, s = naive(
        d(r),
        d(k),
        d(v),
        d(w),
        d(u),
        scale=scale,
        initial_state=None if s0 is None else d(s0),
        output_final_state=True,
    )
    return o.numpy(), s.numpy()


# float32 state updates against float64: one rounding per step of a decayed sum of K terms;
# measured <= 2e-7 of max|ref| at T = 97 on every path. 1e-5 leaves a wide margin for the
# AVX2 / reference summation orders.
TOL = 1e-5


@pytest.mark.parametrize("T,K,V,spread", [(1, 4, 4, 1.0), (7, 5, 9, 3.0), (97, 16, 12, 1.0), (64, 8, 8, 3.0)])
def test_matches_fla_naive(path, T, K, V, spread):
    r, k, v, w, u, s0 = case(2, 3, T, K, V, seed=T + K, decay_spread=spread)
    o_ref, s_ref = reference(r, k, v, w, u, s0)
    o, s = F.rwkv6_wkv(r, k, v, w, u, initial_state=s0, return_state=True)
    assert o.shape == (2, 3, T, V) and s.shape == (2, 3, K, V)
    np.testing.assert_allclose(o, o_ref, atol=TOL * np.abs(o_ref).max(), rtol=0)
    np.testing.assert_allclose(s, s_ref, atol=TOL * np.abs(s_ref).max(), rtol=0)
    o_ref0, _ = reference(r, k, v, w, u, None, scale=0.5)
    np.testing.assert_allclose(
        F.rwkv6_wkv(r, k, v, w, u, scale=0.5), o_ref0, atol=TOL * np.abs(o_ref0).max(), rtol=0
    )


def test_two_calls_equal_one(path):
    r, k, v, w, u, s0 = case(1, 2, 13, 6, 7, seed=3)
    whole, s_whole = F.rwkv6_wkv(r, k, v, w, u, initial_state=s0, return_state=True)
    a, s = F.rwkv6_wkv(*(x[:, :, :5].copy() for x in (r, k, v, w)), u, initial_state=s0, return_state=True)
    parts = [a]
    for t in range(5, 13):
        o, s = F.rwkv6_wkv(
            *(x[:, :, t : t + 1].copy() for x in (r, k, v, w)), u, initial_state=s, return_state=True
        )
        parts.append(o)
    # the same float32 recurrence either way, up to where the final-state step is rounded
    np.testing.assert_allclose(np.concatenate(parts, axis=2), whole, atol=1e-6 * np.abs(whole).max(), rtol=0)
    np.testing.assert_allclose(s, s_whole, atol=1e-6 * np.abs(s_whole).max(), rtol=0)


@pytest.mark.parametrize(
    "args,kw,err,match",
    [
        (lambda c: (c[0][0],) + c[1:5], {}, tfcore.TfcoreValueError, "receptance"),
        (lambda c: (c[0], c[1][:, :, :2]) + c[2:5], {}, tfcore.TfcoreValueError, "key has shape"),
        (lambda c: c[:2] + (c[2][:, :1],) + c[3:5], {}, tfcore.TfcoreValueError, "value has shape"),
        (lambda c: c[:3] + (-c[3],) + c[4:5], {}, tfcore.TfcoreValueError, "log_decay"),
        (lambda c: c[:4] + (c[4][:, :2],), {}, tfcore.TfcoreValueError, "bonus has shape"),
        (lambda c: c[:2] + (c[2].astype(np.float64),) + c[3:5], {}, tfcore.TfcoreTypeError, "float64"),
        (lambda c: (c[0] * np.nan,) + c[1:5], {}, tfcore.TfcoreValueError, "NaN"),
        (lambda c: (c[0][:, :, :0],) + c[1:5], {}, tfcore.TfcoreValueError, "empty"),
        (lambda c: (list(c[0]),) + c[1:5], {}, tfcore.TfcoreTypeError, "ndarray"),
        (
            lambda c: c[:5],
            {"initial_state": np.zeros((2, 3, 4, 4), np.float32)},
            tfcore.TfcoreValueError,
            "initial_state",
        ),
        (lambda c: c[:5], {"scale": "x"}, tfcore.TfcoreTypeError, "scale"),
        (lambda c: c[:5], {"scale": float("nan")}, tfcore.TfcoreValueError, "scale"),
    ],
)
def test_bad_inputs_raise(args, kw, err, match):
    c = case(2, 3, 5, 6, 7, seed=0)
    with pytest.raises(err, match=match):
        F.rwkv6_wkv(*args(c), **kw)
