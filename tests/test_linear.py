"""Linear and FeedForward against float64 NumPy references and torch."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import KERNEL_LEVELS
from memory import rss_growth
from reference import dense

import tfcore

ACTS = [None, "gelu", "gelu_tanh", "relu", "silu", "tanh"]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def tol(K):
    # fp32 accumulation of K products of O(1) terms: error grows ~sqrt(K) * eps * |y|;
    # 2e-6 * K is a safe bound for unit-variance inputs at these sizes.
    return 2e-6 * K + 1e-5


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("M,K,N", [(1, 7, 5), (7, 97, 131), (97, 131, 97), (3, 768, 1000)])
def test_linear_matches_reference(rng, act, M, K, N):
    W, b, x = rand(rng, N, K, scale=K**-0.5), rand(rng, N), rand(rng, M, K)
    y = tfcore.Linear(W, b, act)(x)
    ref = dense.linear(x, W, b, act)
    assert y.shape == (M, N) and y.dtype == np.float32
    assert np.abs(y - ref).max() < tol(K)


def test_linear_matches_torch(rng):
    W, b, x = rand(rng, 131, 97), rand(rng, 131), rand(rng, 2, 7, 97)
    t = torch.nn.Linear(97, 131)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(W))
        t.bias.copy_(torch.from_numpy(b))
        ref = torch.nn.functional.gelu(t(torch.from_numpy(x)), approximate="tanh").numpy()
    y = tfcore.Linear(W, b, "gelu_new")(x)
    assert y.shape == (2, 7, 131)
    assert np.abs(y - ref).max() < 1e-4  # both fp32, different summation order


def test_transposed_weight_is_conv1d_layout(rng):
    W, x = rand(rng, 97, 131), rand(rng, 7, 97)  # (in, out) like GPT-2 Conv1D
    y = tfcore.Linear(W, transposed=True)(x)
    assert np.abs(y - x.astype(np.float64) @ W).max() < tol(97)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 7, 8, 9])
@pytest.mark.parametrize("act", ["gelu_tanh", "silu", None])
@pytest.mark.parametrize("bias", [True, False])
def test_few_rows_decode_path(rng, path, M, act, bias):
    """Up to 4 rows run a hand-written kernel over the packed panels (decoding) at the
    AVX-512 and AVX2 levels, up to 8 over oneDNN's plain AVX2 rows; more rows, and every M at
    the reference level, run oneDNN. Odd K and N exercise the zero-padded K block and the
    last partial panel."""
    K, N = 131, 197
    W, b, x, r = (
        rand(rng, N, K, scale=K**-0.5),
        rand(rng, N) if bias else None,
        rand(rng, M, K),
        rand(rng, M, N),
    )
    lin = tfcore.Linear(W, b, act)
    ref = dense.linear(x, W, b, act)
    assert np.abs(lin(x) - ref).max() < tol(K)
    assert np.abs(lin(x, r) - dense.linear(x, W, b, act, residual=r)).max() < tol(K)
    acc = r.copy()
    lin(x, acc, out=acc)
    assert np.abs(acc - (ref + r)).max() < tol(K)
    # the same rows inside a large batch (oneDNN) give the same values
    big = np.concatenate([x, rand(rng, 64, K)])
    assert np.abs(lin(big)[:M] - lin(x)).max() < 1e-5


@pytest.mark.parametrize("N", [1, 16, 17, 33, 64, 65])
def test_few_rows_narrow_last_panel(rng, path, N):
    """Last panels narrower than 64 columns (the bias and stores are masked per 16 lanes)."""
    K = 37
    W, b, x = rand(rng, N, K), rand(rng, N), rand(rng, 2, K)
    assert np.abs(tfcore.Linear(W, b, "silu")(x) - dense.linear(x, W, b, "silu")).max() < tol(K)


def test_few_rows_wide_layer_threads(rng, path):
    """A layer wide enough to be split over threads by panels (LM-head shaped)."""
    K, N = 96, 50_000
    W, x = rand(rng, N, K, scale=K**-0.5), rand(rng, 2, K)
    assert np.abs(tfcore.Linear(W)(x) - dense.linear(x, W, None, None)).max() < tol(K)


def test_few_rows_same_bits_at_avx512_and_avx2(rng):
    """Both vector levels sum each column's K products in order with FMAs: the same bits,
    residual and in-place accumulation included (activations: within their own ulps)."""
    levels = [lv for lv in ("avx512", "avx2") if lv in KERNEL_LEVELS]
    if len(levels) < 2:
        pytest.skip("needs a CPU running both AVX-512 and AVX2 kernels")
    K, N = 131, 197
    W, b = rand(rng, N, K, scale=K**-0.5), rand(rng, N)
    lin = tfcore.Linear(W, b)
    for M in range(1, 5):
        x, r = rand(rng, M, K), rand(rng, M, N)
        got = {}
        for lv in levels:
            prev = tfcore._C._set_isa(lv)
            try:
                acc = r.copy()
                lin(x, acc, out=acc)
                got[lv] = (lin(x), lin(x, r), acc)
            finally:
                tfcore._C._set_isa(prev)
        for a, c in zip(got["avx512"], got["avx2"]):
            np.testing.assert_array_equal(a.view(np.uint32), c.view(np.uint32))


_PLAIN_LAYOUT_CHILD = """
import json, sys
import numpy as np
import tfcore
sys.path.insert(0, sys.argv[1])
from reference import dense
rng = np.random.default_rng(0)
worst = 0.0
for K, N, act in ((131, 197, "silu"), (37, 17, None), (64, 64, "gelu_tanh"), (96, 2 * 2048 + 37, None)):
    W = (rng.standard_normal((N, K)) * K**-0.5).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    lin = tfcore.Linear(W, b, act)
    for M in range(1, 9):
        x, r = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((M, N)).astype(np.float32)
        ref = dense.linear(x, W, b, act)
        acc = r.copy()
        lin(x, acc, out=acc)
        for got, want in ((lin(x), ref), (lin(x, r), ref + r), (acc, ref + r)):
            worst = max(worst, float(np.abs(got - want).max()) / (2e-6 * K + 1e-5))
print("RESULT " + json.dumps({"worst": worst, "gemv": tfcore._C.config()["kernels"]["gemv"]}), flush=True)
lin(rng.standard_normal((9, W.shape[1])).astype(np.float32))  # 9 rows: oneDNN (the control)
"""


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_few_rows_over_onednn_avx2_plain_layout(level):
    """With oneDNN limited to AVX2 (as on a CPU without AVX-512) it keeps float32 weights as
    plain (K, N) rows: the few-row kernel reads those too (column chunks wider than a thread's
    stack buffer included) for up to 8 rows (batched greedy decoding, 2 inputs x 4 beams),
    and oneDNN runs no matmul for M <= 8."""
    import json
    import os
    import subprocess
    import sys

    if level not in KERNEL_LEVELS:
        pytest.skip(f"this CPU does not run {level}")
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1", "TFCORE_ISA": level}
    out = subprocess.run(
        [sys.executable, "-c", _PLAIN_LAYOUT_CHILD, here],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(tfcore.__file__)),
    ).stdout
    few, rest = out.split("RESULT ")
    res = json.loads(rest.splitlines()[0])
    assert res["gemv"] == level
    assert res["worst"] < 1.0, res  # within tol(K) of the float64 reference
    assert "wei_f32::blocked:ba" in out  # the plain layout, kept as (N, K) rows
    assert ",exec,cpu,matmul," not in few  # every few-row product ran in tfcore's kernel
    assert ",exec,cpu,matmul," in rest  # (and the verbose log does show oneDNN's runs)


@pytest.mark.parametrize("act", ["gelu", None])
def test_residual_fused_and_in_place(rng, act):
    W, b, x, r = rand(rng, 64, 48), rand(rng, 64), rand(rng, 5, 48), rand(rng, 5, 64)
    lin = tfcore.Linear(W, b, act)
    ref = dense.linear(x, W, b, act, residual=r)
    assert np.abs(lin(x, r) - ref).max() < tol(48)
    acc = r.copy()
    y = lin(x, acc, out=acc)  # accumulate in place
    assert np.shares_memory(y, acc)
    assert np.abs(acc - ref).max() < tol(48)


def test_out_is_written_in_place(rng):
    W, x = rand(rng, 33, 17), rand(rng, 9, 17)
    out = np.full((9, 33), np.nan, np.float32)
    y = tfcore.Linear(W)(x, out=out)
    assert y is out
    assert np.abs(out - x.astype(np.float64) @ W.T.astype(np.float64)).max() < tol(17)


def test_weight_round_trip_and_properties(rng):
    W, b = rand(rng, 131, 97), rand(rng, 131)
    lin = tfcore.Linear(W, b, "silu")
    assert np.array_equal(lin.weight, W)  # packing is a permutation: exact
    assert np.array_equal(lin.bias, b)
    assert (lin.in_features, lin.out_features, lin.activation) == (97, 131, "silu")
    assert "avx512" in lin.implementation or "gemm" in lin.implementation
    assert "in_features=97" in repr(lin)


def test_input_used_in_place_not_copied(rng):
    # Zero-copy: tfcore reads x where it is; a non-contiguous view is refused, not copied.
    W = rand(rng, 16, 32)
    lin = tfcore.Linear(W)
    x = rand(rng, 8, 64)[:, ::2]
    with pytest.raises(tfcore.TfcoreValueError, match="C-contiguous"):
        lin(x)


@pytest.mark.parametrize(
    "make_x,exc,msg",
    [
        (lambda: np.zeros((3, 32), np.float64), tfcore.TfcoreTypeError, "dtype float32, got float64"),
        (lambda: [[0.0] * 32], tfcore.TfcoreTypeError, "numpy.ndarray"),
        (
            lambda: np.zeros((3, 31), np.float32),
            tfcore.TfcoreValueError,
            "last dim 31, expected in_features=32",
        ),
        (lambda: np.zeros((0, 32), np.float32), tfcore.TfcoreValueError, "empty"),
        (lambda: np.full((2, 32), np.nan, np.float32), tfcore.TfcoreValueError, "NaN"),
        (lambda: np.zeros((), np.float32), tfcore.TfcoreValueError, "dimensions"),
        (lambda: np.zeros((4, 64), np.float32)[:, ::2], tfcore.TfcoreValueError, "C-contiguous"),
    ],
)
def test_linear_bad_input(make_x, exc, msg):
    lin = tfcore.Linear(np.ones((16, 32), np.float32))
    with pytest.raises(exc, match=msg):
        lin(make_x())
    # The object stays usable after a rejected call.
    assert lin(np.ones((1, 32), np.float32)).shape == (1, 16)


def test_linear_bad_construction():
    with pytest.raises(tfcore.TfcoreValueError, match="bias has 3 elements, expected out_features=16"):
        tfcore.Linear(np.ones((16, 8), np.float32), np.ones(3, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="unknown activation 'tanhh'"):
        tfcore.Linear(np.ones((16, 8), np.float32), activation="tanhh")
    with pytest.raises(tfcore.TfcoreValueError, match="weight must have 2 dimensions"):
        tfcore.Linear(np.ones(8, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="Inf"):
        tfcore.Linear(np.full((2, 2), np.inf, np.float32))


def test_bad_out_and_residual(rng):
    lin = tfcore.Linear(rand(rng, 16, 8))
    x = rand(rng, 4, 8)
    with pytest.raises(tfcore.TfcoreValueError, match=r"out has shape \(4, 15\), expected \(4, 16\)"):
        lin(x, out=np.zeros((4, 15), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="read-only"):
        o = np.zeros((4, 16), np.float32)
        o.flags.writeable = False
        lin(x, out=o)
    with pytest.raises(tfcore.TfcoreValueError, match="residual has shape"):
        lin(x, np.zeros((4, 8), np.float32))
    buf = np.zeros((4, 16), np.float32)
    with pytest.raises(tfcore.TfcoreValueError, match="share memory with x"):
        square = tfcore.Linear(rand(rng, 16, 16))
        square(buf, out=buf)


def test_memory_flat_over_repeated_calls(rng):
    lin = tfcore.Linear(rand(rng, 256, 128), rand(rng, 256), "gelu")
    x = rand(rng, 33, 128)
    growth = rss_growth(lambda: lin(x), calls=1000)
    assert growth < 2 * 2**20  # < 2 MiB over 1,000 calls (allocator noise only)


def test_threads_share_one_layer(rng):
    lin = tfcore.Linear(rand(rng, 300, 200), rand(rng, 300), "silu")
    xs = [rand(rng, 17 + i, 200) for i in range(8)]
    expected = [lin(x) for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(30):
            results[i] = lin(xs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)


def test_thread_count_control(rng):
    lin = tfcore.Linear(rand(rng, 64, 64))
    x = rand(rng, 64, 64)
    base = lin(x)
    with tfcore.threads(1):
        assert tfcore.get_num_threads() == 1
        assert np.allclose(lin(x), base, atol=1e-5)
    prev = tfcore.get_num_threads()
    tfcore.set_num_threads(1)
    try:
        assert np.allclose(lin(x), base, atol=1e-5)
    finally:
        tfcore.set_num_threads(prev)
    with pytest.raises(ValueError):
        tfcore.set_num_threads(0)


# ---------------------------------------------------------------- FeedForward


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "relu", "silu"])
@pytest.mark.parametrize("gated", [False, True])
def test_feed_forward_matches_reference(rng, act, gated):
    C, F = 97, 131
    up, down, gate = rand(rng, F, C, scale=0.1), rand(rng, C, F, scale=0.1), rand(rng, F, C, scale=0.1)
    ub, db, gb = rand(rng, F), rand(rng, C), rand(rng, F)
    x, r = rand(rng, 2, 7, C), rand(rng, 2, 7, C)
    kw = dict(gate_weight=gate, gate_bias=gb) if gated else {}
    ffn = tfcore.FeedForward(up, down, up_bias=ub, down_bias=db, activation=act, **kw)
    ref = dense.feed_forward(
        x, up, down, act, gate if gated else None, ub, db, gb if gated else None, residual=r
    )
    assert ffn.gated == gated
    assert np.abs(ffn(x, r) - ref).max() < 1e-4  # two chained fp32 GEMMs, K <= 131


def test_swiglu_matches_hf_llama_mlp(rng):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    cfg = LlamaConfig(
        hidden_size=48, intermediate_size=97, hidden_act="silu", num_attention_heads=4, num_key_value_heads=2
    )
    torch.manual_seed(0)
    mlp = LlamaMLP(cfg).eval()
    ffn = tfcore.FeedForward(
        mlp.up_proj.weight.detach().numpy(),
        mlp.down_proj.weight.detach().numpy(),
        gate_weight=mlp.gate_proj.weight.detach().numpy(),
        activation="silu",
    )
    x = rand(rng, 3, 5, 48)
    with torch.no_grad():
        ref = mlp(torch.from_numpy(x)).numpy()
    assert np.abs(ffn(x) - ref).max() < 1e-5  # fp32 both sides, small K


def test_feed_forward_bad_shapes(rng):
    with pytest.raises(tfcore.TfcoreValueError, match="down_weight maps"):
        tfcore.FeedForward(rand(rng, 32, 16), rand(rng, 32, 16))
    with pytest.raises(tfcore.TfcoreValueError, match="gate_bias given without gate_weight"):
        tfcore.FeedForward(rand(rng, 32, 16), rand(rng, 16, 32), gate_bias=rand(rng, 32))
    ffn = tfcore.FeedForward(rand(rng, 32, 16), rand(rng, 16, 32))
    with pytest.raises(tfcore.TfcoreValueError, match="last dim 15, expected in_features=16"):
        ffn(rand(rng, 2, 15))
    assert isinstance(ffn.up, tfcore.Linear) and ffn.gate is None


def test_feed_forward_memory_flat(rng):
    ffn = tfcore.FeedForward(
        rand(rng, 256, 64), rand(rng, 64, 256), gate_weight=rand(rng, 256, 64), activation="silu"
    )
    x = rand(rng, 40, 64)
    assert rss_growth(lambda: ffn(x, x), calls=1000) < 2 * 2**20
