"""Linear's int4 dtype (kernels/q4.c, layers/linear_int4.c) against float64 references.

The weights are W = d q + m per row and group (q 0..15). A few rows (decoding and short prompts, M <= 32) are
quantized to int8 per group (sx = max|x| / 127, round to nearest even, as kernels/quant.c) and multiplied with integer dot products; the reference emulates that
quantization in NumPy float32 (the same IEEE steps) and then sums in float64, so the only
difference is the kernel's float32 summation order. More rows go through oneDNN's float32
GEMM on dequantized weights: reference x @ W.T in float64.
"""

import numpy as np
import pytest
from tiny_models import causal_lms

import tfcore

EPS32 = np.finfo(np.float32).eps
KS = [64, 97, 200, 256, 300]  # odd K: the last group partial, the last superblock padded


def emulate_x(x, group):
    """NumPy float32 emulation of tf_q4_quantize_x: int8 rows per group (scale max|x| / 127),
    dequantized exactly in float64 (the offsets term sees x unquantized)."""
    M, K = x.shape
    Kp = -(-K // 64) * 64
    G = -(-Kp // group)
    xp = np.zeros((M, G * group), np.float32)
    xp[:, :K] = x
    blocks = xp.reshape(M, G, group)
    amax = np.abs(blocks).max(-1)
    s = np.where(amax > 0, np.maximum(amax / np.float32(127), np.finfo(np.float32).tiny), np.float32(1))
    s = s.astype(np.float32)
    inv = (np.float32(1) / s).astype(np.float32)
    xq = np.clip(np.rint(blocks * inv[..., None]), -127, 127)
    return (xq * s[..., None].astype(np.float64)).reshape(M, G * group)[:, :K]


def random_int4(rng, N, K, group):
    G = -(-K // group)
    values = rng.integers(0, 16, (N, K)).astype(np.uint8)
    scales = (rng.random((N, G)) * 0.1 + 0.01).astype(np.float32)
    offsets = (-8 * scales + rng.standard_normal((N, G)).astype(np.float32) * 0.01).astype(np.float32)
    return values, scales, offsets


def dequantize(values, scales, offsets, group):
    """float32 d q + m per element (two roundings, as the kernel's dequantization)."""
    g = np.arange(values.shape[1]) // group
    return (scales[:, g] * values.astype(np.float32) + offsets[:, g]).astype(np.float32)


@pytest.mark.parametrize("group", [32, 64, 128, 256])
@pytest.mark.parametrize("K", KS)
def test_from_int4_weights_are_the_formula(path, K, group):
    """Dequantization at every ISA level: d * q rounded, plus m rounded, bit for bit."""
    rng = np.random.default_rng(K + group)
    v, d, m = random_int4(rng, 37, K, group)
    lin = tfcore.Linear.from_int4(v, d, m, group_size=group)
    assert lin.dtype == ("int4" if group == 128 else f"int4_g{group}") and lin.group_size == group
    assert (lin.in_features, lin.out_features) == (K, 37)
    # bit-equal: each weight is the float32 d * q rounded, plus m rounded
    np.testing.assert_array_equal(lin.weight, dequantize(v, d, m, group))


@pytest.mark.parametrize("group", [32, 128])
@pytest.mark.parametrize("K", [97, 256])
def test_rtn_quantization(K, group):
    """dtype='int4' at construction: min/max round to nearest per group, bit-equal to NumPy's
    float32 steps; every weight within half a step of the original."""
    rng = np.random.default_rng(K)
    N = 45
    w = rng.standard_normal((N, K)).astype(np.float32)
    lin = tfcore.Linear(w, dtype="int4", group_size=group)
    G = -(-K // group)
    d = np.zeros((N, G), np.float32)
    m = np.zeros((N, G), np.float32)
    q = np.zeros((N, K), np.uint8)
    for g in range(G):
        blk = w[:, g * group : (g + 1) * group]
        lo, hi = blk.min(1), blk.max(1)
        step = ((hi - lo) / np.float32(15)).astype(np.float32)
        d[:, g], m[:, g] = step, lo
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant group: step 0, q 0
            qg = np.clip(np.rint((blk - lo[:, None]) / step[:, None]), 0, 15)
        q[:, g * group : (g + 1) * group] = np.where(step[:, None] > 0, qg, 0)
    np.testing.assert_array_equal(lin.weight, dequantize(q, d, m, group))
    err = np.abs(lin.weight - w)
    assert np.all(err <= 0.5 * np.repeat(d, group, axis=1)[:, :K] * (1 + 1e-5) + 1e-7)
    # the transposed (GPT-2 Conv1D) form quantizes the same matrix the same way
    lin_t = tfcore.Linear(np.ascontiguousarray(w.T), transposed=True, dtype=f"int4_g{group}")
    np.testing.assert_array_equal(lin_t.weight, lin.weight)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 8, 17, 32])
@pytest.mark.parametrize("K,group", [(64, 32), (97, 32), (200, 64), (300, 128), (256, 256)])
def test_decode_rows_vs_float64(path, M, K, group):
    """The integer-dot kernel at every ISA level: equal to the float64 sum of the same
    products up to float32 summation (bound: (2 groups + 4) eps32 sum |terms|: per group an
    exact int32 dot times a rounded scale product, a float32 sum over groups)."""
    rng = np.random.default_rng(M * 1000 + K)
    N = 131
    v, d, m = random_int4(rng, N, K, group)
    bias = rng.standard_normal(N).astype(np.float32)
    lin = tfcore.Linear.from_int4(v, d, m, bias, group_size=group)
    x = rng.standard_normal((M, K)).astype(np.float32)
    x[0, :7] *= 40.0  # blocks with different scales
    y = lin(x)
    g = np.arange(K) // group
    dq = d[:, g].astype(np.float64) * v  # exact in float64
    mo = m[:, g].astype(np.float64)
    xd = emulate_x(x, group)
    ref = xd @ dq.T + x.astype(np.float64) @ mo.T + bias
    mag = np.abs(xd) @ np.abs(dq).T + np.abs(x.astype(np.float64)) @ np.abs(mo).T + np.abs(bias)
    n_terms = 2 * -(-K // group) + 6
    err = np.abs(y - ref)
    assert np.all(err <= n_terms * EPS32 * mag), f"max err {err.max()}, bound {(n_terms * EPS32 * mag).min()}"


@pytest.mark.parametrize("M", [33, 70])
@pytest.mark.parametrize("K,group", [(97, 32), (300, 128)])
def test_prefill_rows_vs_float64(path, M, K, group):
    """More than 32 rows: oneDNN float32 GEMM on dequantized weights (bound: K eps32 sum |x w|)."""
    rng = np.random.default_rng(M + K)
    N = 77
    v, d, m = random_int4(rng, N, K, group)
    lin = tfcore.Linear.from_int4(v, d, m, group_size=group)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = lin.weight.astype(np.float64)
    ref = x.astype(np.float64) @ w.T
    mag = np.abs(x.astype(np.float64)) @ np.abs(w).T
    assert np.all(np.abs(lin(x) - ref) <= K * EPS32 * mag)


@pytest.mark.parametrize("M", [1, 12, 40])
def test_activation_and_residual(path, M):
    """Activation and residual fused as for the other dtypes, in the kernel and oneDNN paths."""
    rng = np.random.default_rng(M)
    K, N = 96, 70
    v, d, m = random_int4(rng, N, K, 32)
    bias = rng.standard_normal(N).astype(np.float32)
    plain = tfcore.Linear.from_int4(v, d, m, bias, group_size=32)
    silu = tfcore.Linear.from_int4(v, d, m, bias, "silu", group_size=32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    r = rng.standard_normal((M, N)).astype(np.float32)
    z = plain(x).astype(np.float64)
    expect = z / (1 + np.exp(-z)) + r
    np.testing.assert_allclose(silu(x, r), expect, rtol=1e-5, atol=1e-5)  # silu's float32 exp
    out = r.copy()
    silu(x, out, out=out)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    v, d, m = random_int4(rng, 8, 64, 32)
    with pytest.raises(tfcore.TfcoreValueError, match="group_size must be 32, 64, 128 or 256, got 48"):
        tfcore.Linear(w, dtype="int4", group_size=48)
    with pytest.raises(tfcore.TfcoreValueError, match="applies to dtype='int4' only"):
        tfcore.Linear(w, group_size=32)
    with pytest.raises(tfcore.TfcoreValueError, match="int4_g<group size>"):
        tfcore.Linear(w, dtype="int4_gx")
    with pytest.raises(tfcore.TfcoreValueError, match="disagree"):
        tfcore.Linear(w, dtype="int4_g32", group_size=64)
    with pytest.raises(tfcore.TfcoreTypeError, match="group_size must be an int"):
        tfcore.Linear(w, dtype="int4", group_size="32")
    w_nan = w.copy()
    w_nan[3, 5] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        tfcore.Linear(w_nan, dtype="int4")
    with pytest.raises(tfcore.TfcoreTypeError, match="group_size="):
        tfcore.Linear.from_int4(v, d, m)
    with pytest.raises(tfcore.TfcoreTypeError, match="uint8"):
        tfcore.Linear.from_int4(v.astype(np.int32), d, m, group_size=32)
    bad = v.copy()
    bad[2, 3] = 16
    with pytest.raises(tfcore.TfcoreValueError, match=r"0..15, values\[2, 3\] is 16"):
        tfcore.Linear.from_int4(bad, d, m, group_size=32)
    with pytest.raises(tfcore.TfcoreValueError, match=r"scales has shape \(8, 2\), expected .* \(8, 1\)"):
        tfcore.Linear.from_int4(v, d, m, group_size=64)
    d_nan = d.copy()
    d_nan[0, 0] = np.inf
    with pytest.raises(tfcore.TfcoreValueError, match="scales"):
        tfcore.Linear.from_int4(v, d_nan, m, group_size=32)
    with pytest.raises(tfcore.TfcoreValueError, match="non-empty 2-D"):
        tfcore.Linear.from_int4(v[0], d, m, group_size=32)
    with pytest.raises(tfcore.TfcoreValueError, match="bias has 3 elements"):
        tfcore.Linear.from_int4(v, d, m, np.zeros(3, np.float32), group_size=32)
    lin = tfcore.Linear.from_int4(v, d, m, group_size=32)
    with pytest.raises(tfcore.TfcoreValueError, match="64"):
        lin(np.zeros((2, 63), np.float32))
    from tfcore._runtime import canonical_dtype

    assert canonical_dtype("int4_g128") == "int4" and canonical_dtype("int4_g32") == "int4_g32"
    with pytest.raises(tfcore.TfcoreValueError, match="dtype must be one of"):
        canonical_dtype("int3")


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_model_int4_vs_float32(tmp_path, name, capsys):
    """dtype='int4' on a whole model: RTN per group at load. Bound: int4 weights (step
    (max - min) / 15 of a group, error up to half a step) move each logit by a few percent of
    the logits' scale on these tiny random models; measured at group 128 0.06 (GPT-2) and 0.17
    (Llama: hidden size 64, so a logit sums few products and the errors average out less) of
    max |logit| ~0.6-1.0, the same at every ISA (levels differ by float32 rounding only); 0.25. Teacher-forced
    top-1 agreement is printed (random tiny models have near-tied logits, so it is lower than
    on trained ones: int8 gets ~0.96 here)."""
    import torch

    torch.manual_seed(0)
    causal_lms()[name]().save_pretrained(tmp_path)
    f32 = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = np.random.default_rng(1).integers(0, 97, (2, 40))
    ref = f32(ids).logits
    scale = np.abs(ref).max()
    for dtype in ("int4", "int4_g32"):
        q = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=dtype)
        assert q.dtype == dtype and q.memory_bytes() < f32.memory_bytes() / 3
        logits = q(ids).logits
        err = np.abs(logits - ref).max() / scale
        agree = (logits.argmax(-1) == ref.argmax(-1)).mean()
        with capsys.disabled():
            print(f"\n{name} {dtype}: max |logit diff| / scale {err:.3f}, top-1 agreement {agree:.3f}")
        assert err < 0.25
        assert agree > 0.5
        # greedy decode steps (int8 rows, the integer-dot kernel) pick what a full forward
        # (oneDNN on dequantized slices) ranks first, unless the two are within the int8
        # activation error of each other (0.02 of the scale: 1/254 per value over K terms)
        out = q.generate(ids[:, :6], max_new_tokens=4, do_sample=False)
        full = q(out[:, :-1]).logits[:, 5:]
        picked = np.take_along_axis(full, out[:, 6:, None], -1)[..., 0]
        assert np.all(full.max(-1) - picked <= 0.02 * scale)
