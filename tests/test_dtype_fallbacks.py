"""bfloat16 and int8 on a CPU without AVX512_BF16 / VNNI, at every kernel level this CPU runs.

With oneDNN limited to AVX2 (as on most laptops) bf16 weights are kept as plain bf16 rows and
multiplied in float32 (a few rows by tfcore's portable kernel straight from the bf16 rows,
more rows by widening a slice of columns at a time for oneDNN's float32 matmul), and int8
runs oneDNN's AVX2 int8 GEMM with 7-bit weights. Each case runs in a child process (oneDNN
reads ONEDNN_MAX_CPU_ISA once) at one tfcore kernel level, against NumPy emulations of the
same rounding in float64: the same products the native paths compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import KERNEL_LEVELS, package_parent

_CHILD = """
import json, sys
import numpy as np
import tfcore
sys.path.insert(0, sys.argv[1])
from reference import dense

rng = np.random.default_rng(0)
dt = tfcore.supported_dtypes()
assert not dt["bfloat16"].startswith("native") and not dt["int8"].startswith("native"), dt


def bf16_round(a):
    b = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def quantize_rows(a, qmax):
    a = np.asarray(a, np.float32)
    s = np.abs(a).max(axis=-1, keepdims=True) / np.float32(qmax)
    s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
    return np.clip(np.rint(a * (np.float32(1) / s)), -qmax, qmax).astype(np.float64), s.astype(np.float64)


def int8_ref(x, W, b, act, qmax):
    qx, sx = quantize_rows(x, 127)
    qw, sw = quantize_rows(W, qmax)
    return dense.activation((qx @ qw.T) * sx * sw.T + (0 if b is None else b), act)


worst = {"bfloat16": 0.0, "int8": 0.0}
impl = {}
# (K, N): odd and narrow shapes; a layer wider than one widened slice (8 MiB of float32)
for K, N, act, transposed in ((131, 197, "silu", False), (37, 17, None, True),
                              (64, 64, "gelu_tanh", False), (1024, 2 * 1024 + 37, None, False)):
    W = (rng.standard_normal((N, K)) * K**-0.5).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    given = np.ascontiguousarray(W.T) if transposed else W
    layers = {d: tfcore.Linear(given, b, act, transposed=transposed, dtype=d) for d in worst}
    qmax = layers["int8"].quant_max
    assert qmax == 63, qmax
    for d, lin in layers.items():
        impl[d] = lin.implementation
    for M in (1, 2, 3, 4, 5, 16, 17, 97):  # the few-row kernel takes up to 16 rows, 4 per pass
        x = rng.standard_normal((M, K)).astype(np.float32)
        r = rng.standard_normal((M, N)).astype(np.float32)
        refs = {"bfloat16": dense.linear(bf16_round(x), bf16_round(W), b, act),
                "int8": int8_ref(x, W, b, act, qmax)}
        for d, lin in layers.items():
            acc = r.copy()
            lin(x, acc, out=acc)
            ref = refs[d]
            for got, want in ((lin(x), ref), (lin(x, r), ref + r), (acc, ref + r)):
                err = float(np.abs(got - want).max()) / (2e-6 * K + 1e-5) / max(1.0, float(np.abs(want).max()))
                worst[d] = max(worst[d], err)
    np.testing.assert_array_equal(layers["bfloat16"].weight, bf16_round(W).astype(np.float32))

# int8 at full range: every product at the limits. 8-bit weights would saturate oneDNN's AVX2
# pair sums (2 * 255 * 127 > 32767) and come out far too small; 7-bit ones are exact.
K, N = 256, 48
W = np.where(rng.random((N, K)) < 0.5, -1.0, 1.0).astype(np.float32)
W[:, :2] = 1.0  # same-sign pairs
lin = tfcore.Linear(W, dtype="int8")
for M in (1, 64):
    x = np.ones((M, K), np.float32)
    got = lin(x)
    np.testing.assert_allclose(got, np.broadcast_to(W.sum(1), (M, N)), rtol=1e-6, atol=1e-4)
print("RESULT " + json.dumps({"worst": worst, "impl": impl}), flush=True)
"""


@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_bf16_and_int8_without_native_instructions(level):
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "TFCORE_ISA": level}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, here],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=package_parent(),  # the tfcore under test (a source checkout as cwd would shadow it)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    for dtype, worst in result["worst"].items():
        assert worst < 1.0, (dtype, worst)  # within 2e-6 K + 1e-5, relative to the output scale
    assert result["impl"]["bfloat16"].startswith("tfcore bf16 (widened) panels + gemm:jit"), result["impl"]
    assert result["impl"]["int8"].startswith("tfcore int8 panels + gemm:jit"), result["impl"]


_DECODE_CHILD = """
import numpy as np
import tfcore
rng = np.random.default_rng(0)
layers = [tfcore.Linear(rng.standard_normal((197, 131)).astype(np.float32), dtype=d) for d in ("bfloat16", "int8")]
print("FEW ROWS", flush=True)
for lin in layers:
    for M in (1, 2, 3, 4, 7, 16):
        lin(rng.standard_normal((M, 131)).astype(np.float32))
print("MANY ROWS", flush=True)
for lin in layers:
    lin(rng.standard_normal((17, 131)).astype(np.float32))
"""


@pytest.mark.parametrize("level", [lv for lv in KERNEL_LEVELS if lv != "reference"])
def test_few_rows_run_no_onednn_matmul(level):
    """Decoding (up to 16 rows: batched decoding) reads the bf16 / int8 panels in tfcore's
    kernel: oneDNN runs no matmul for those calls (ONEDNN_VERBOSE), and does for 17 rows (the
    control)."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1", "TFCORE_ISA": level}
    out = subprocess.run(
        [sys.executable, "-c", _DECODE_CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=package_parent(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    few = out.stdout.split("FEW ROWS", 1)[1].split("MANY ROWS", 1)[0]
    many = out.stdout.split("MANY ROWS", 1)[1]
    assert "exec,cpu,matmul" not in few
    assert many.count("exec,cpu,matmul") >= 2
