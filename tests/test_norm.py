"""LayerNorm and RMSNorm against float64 NumPy, torch and HF's LlamaRMSNorm."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from memory import rss_growth
from reference import ops

import tfcore

# Row statistics in float32 over C <= 1000 values: ~1e-6 relative; outputs are O(1).
TOL = 2e-5


def rand(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


@pytest.mark.parametrize("C", [7, 97, 131, 768, 1000])
@pytest.mark.parametrize("M", [1, 3, 97])
def test_layer_norm(rng, path, C, M):
    x, w, b, r = rand(rng, M, C, scale=3, shift=5), rand(rng, C), rand(rng, C), rand(rng, M, C)
    ln = tfcore.LayerNorm(w, b, eps=1e-5)
    assert np.abs(ln(x) - ops.layer_norm(x, w, b, 1e-5)).max() < TOL  # large mean: two-pass variance
    assert np.abs(ln(x, r) - ops.layer_norm(x, w, b, 1e-5, residual=r)).max() < TOL
    with torch.no_grad():
        t = torch.nn.functional.layer_norm(
            torch.from_numpy(x), (C,), torch.from_numpy(w), torch.from_numpy(b), 1e-5
        )
    assert np.abs(ln(x) - t.numpy()).max() < TOL


@pytest.mark.parametrize("C", [7, 131, 1000])
@pytest.mark.parametrize("offset", [False, True])
def test_rms_norm(rng, path, C, offset):
    x, w, r = rand(rng, 2, 5, C), rand(rng, C), rand(rng, 2, 5, C)
    n = tfcore.RMSNorm(w, eps=1e-6, offset=offset)
    assert np.abs(n(x) - ops.rms_norm(x, w, 1e-6, offset=offset)).max() < TOL
    assert np.abs(n(x, r) - ops.rms_norm(x, w, 1e-6, residual=r, offset=offset)).max() < TOL
    assert np.array_equal(n.weight, w)


def test_rms_norm_matches_hf_llama(rng):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    ref = LlamaRMSNorm(97, eps=1e-5)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(rand(rng, 97)))
    x = rand(rng, 3, 7, 97)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    got = tfcore.RMSNorm(ref.weight.detach().numpy(), eps=1e-5)(x)
    assert np.abs(got - want).max() < 1e-5


def test_in_place_and_out(rng):
    x, w = rand(rng, 4, 33), rand(rng, 33)
    ln = tfcore.LayerNorm(w)
    want = ln(x)
    out = np.empty_like(x)
    assert ln(x, out=out) is out and np.array_equal(out, want)
    y = ln(x, out=x)  # in place
    assert np.shares_memory(y, x) and np.array_equal(x, want)


def test_properties_and_repr(rng):
    w, b = rand(rng, 10), rand(rng, 10)
    ln = tfcore.LayerNorm(w, b, eps=1e-12)
    assert ln.normalized_shape == (10,) and abs(ln.eps - 1e-12) < 1e-18
    assert np.array_equal(ln.weight, w) and np.array_equal(ln.bias, b)
    assert "LayerNorm(10" in repr(ln) and "RMSNorm(10" in repr(tfcore.RMSNorm(w))
    assert tfcore.RMSNorm(w).bias is None


def test_errors(rng):
    ln = tfcore.LayerNorm(rand(rng, 8))
    with pytest.raises(tfcore.TfcoreValueError, match="x has last dim 7, expected normalized size 8"):
        ln(rand(rng, 2, 7))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        ln(np.zeros((2, 8)))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ln(np.full((2, 8), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        ln(np.zeros((0, 8), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="C-contiguous"):
        ln(rand(rng, 8, 8)[:, ::2].repeat(2, 1)[::2])
    with pytest.raises(tfcore.TfcoreValueError, match="residual must have the shape of x"):
        ln(rand(rng, 2, 8), rand(rng, 3, 8))
    with pytest.raises(tfcore.TfcoreValueError, match="bias has 3 elements, expected 8"):
        tfcore.LayerNorm(rand(rng, 8), rand(rng, 3))
    with pytest.raises(tfcore.TfcoreValueError, match="eps must be in"):
        tfcore.RMSNorm(rand(rng, 8), eps=0.0)
    with pytest.raises(tfcore.TfcoreValueError, match="weight must have 1 dimensions"):
        tfcore.LayerNorm(rand(rng, 2, 8))


def test_memory_and_threads(rng):
    n = tfcore.RMSNorm(rand(rng, 512))
    xs = [rand(rng, 64 + i, 512) for i in range(6)]
    want = [n(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(50):
            got[i] = n(xs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert rss_growth(lambda: n(xs[0]), calls=1000) < 2 * 2**20
