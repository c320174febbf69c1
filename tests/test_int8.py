"""int8 weights with dynamic per-token activations: Linear against a NumPy emulation of the
same quantization (exact up to float rounding), and every family loaded with dtype='int8'
against Hugging Face with the same fake quantization hooked into every projection (tight),
and against plain float32 (the accuracy int8 costs)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from reference import dense
from reference.quant import emulate_int8
from tiny_models import causal_lms

import tfcore

# every CPU runs int8: natively with VNNI (8-bit weights), elsewhere on oneDNN's AVX2 int8
# GEMM with 7-bit weights (Linear.quant_max 63; the CI run with ONEDNN_MAX_CPU_ISA=AVX2
# covers it). The rows are 8-bit everywhere.
NATIVE = tfcore.supported_dtypes()["int8"].startswith("native")
WEIGHT_MAX = 127 if NATIVE else 63


def quantize_rows(a, qmax=127):
    """Symmetric int8 per row in float32 arithmetic as tfcore does it: scale = max|a| / qmax,
    q = round_half_even(a * (1 / scale)). Returns (q as float64, scale as float64)."""
    a = np.asarray(a, np.float32)
    s = np.abs(a).max(axis=-1, keepdims=True) / np.float32(qmax)
    s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(a * (np.float32(1) / s)), -qmax, qmax)
    return q.astype(np.float64), s.astype(np.float64)


def emulated_linear(x, W, b, act):
    """y = act(s_x s_w (q_x q_wᵀ) + b): integer products are exact in float64."""
    qx, sx = quantize_rows(x)
    qw, sw = quantize_rows(W, WEIGHT_MAX)
    y = (qx @ qw.T) * sx * sw.T + (0 if b is None else b)
    return dense.activation(y, act)


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("M", [1, 3, 4, 5, 97])
@pytest.mark.parametrize("act", [None, "gelu_tanh", "silu"])
def test_linear_equals_the_emulated_quantization(rng, M, act):
    K, N = 131, 197
    W, b, x, r = rand(rng, N, K, scale=K**-0.5), rand(rng, N), rand(rng, M, K), rand(rng, M, N)
    lin = tfcore.Linear(W, b, act, dtype="int8")
    assert lin.dtype == "int8" and "int8" in repr(lin) and lin.quant_max == WEIGHT_MAX
    assert ("vnni" in lin.implementation) == NATIVE, lin.implementation
    ref = emulated_linear(x, W, b, act)
    assert np.abs(lin(x) - ref).max() < 1e-5
    assert np.abs(lin(x, r) - (ref + r)).max() < 1e-5
    acc = r.copy()
    lin(x, acc, out=acc)
    assert np.abs(acc - (ref + r)).max() < 1e-5
    # against float32 the error is int8's: ~1/127 of each row's range, on both operands
    full = dense.linear(x, W, b, act)
    assert np.abs(lin(x) - full).max() < 2e-2 * np.abs(full).max()
    qw, sw = quantize_rows(W, WEIGHT_MAX)
    np.testing.assert_allclose(lin.weight, qw * sw, rtol=1e-6, atol=0)


def test_linear_transposed_gated_and_wide(rng):
    K, N = 64, 2 * 131
    W = rand(rng, K, N, scale=0.1)  # Conv1D layout: (in, out), one scale per column
    x, g = rand(rng, 9, K), rand(rng, 9, N)
    lin = tfcore.Linear(W, transposed=True, dtype="int8")
    ref = emulated_linear(x, W.T, None, None)
    assert np.abs(lin(x) - ref).max() < 1e-5
    gated = tfcore.FeedForward(
        rand(rng, N, K), rand(rng, K, N), gate_weight=rand(rng, N, K), activation="silu", dtype="int8"
    )
    gated_f32 = tfcore.FeedForward(
        gated.up.weight, gated.down.weight, gate_weight=gated.gate.weight, activation="silu"
    )
    y, y32 = gated(x), gated_f32(x)
    assert np.abs(y - y32).max() < 3e-2 * np.abs(y32).max()
    del g


def test_zero_rows_and_outliers(rng):
    W = rand(rng, 33, 40)
    lin = tfcore.Linear(W, np.ones(33, np.float32), dtype="int8")
    x = rand(rng, 3, 40)
    x[1] = 0.0
    x[2, 5] = 1e6  # one outlier: the rest of its row rounds to zero
    y = lin(x)
    np.testing.assert_array_equal(y[1], np.ones(33, np.float32))
    ref = emulated_linear(x, W, np.ones(33), None)
    assert np.abs(y - ref).max() < 1e-5 * np.abs(ref).max()
    zero_w = tfcore.Linear(np.zeros((4, 40), np.float32), dtype="int8")
    np.testing.assert_array_equal(zero_w(x), 0.0)


_MEMORY_CHILD = """
import json, sys
import numpy as np
import tfcore
sys.path.insert(0, sys.argv[1])
from memory import rss_bytes
W = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)  # 16 MiB in float32
kept = {}
for dtype in ("float32", "int8"):
    before = rss_bytes()
    kept[dtype] = (tfcore.Linear(W, dtype=dtype), rss_bytes() - before)
print(json.dumps({k: v[1] for k, v in kept.items()}))
"""


def test_int8_weights_take_a_quarter_of_the_memory():
    # in a fresh process: after other tests the allocator may keep the int8 construction's
    # temporary (a (N, K) int8 copy before packing) resident and count it against the layer
    import json
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, here],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(tfcore.__file__)),
    )
    kept = json.loads(out.stdout.strip().splitlines()[-1])
    assert kept["int8"] < 0.35 * kept["float32"], kept


# ---- models: Hugging Face with the same fake quantization in every projection ----


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "opt"])
def test_causal_lm_logits_and_decoding(rng, tmp_path, name):
    torch.manual_seed(0)
    hf = causal_lms()[name]().eval()
    hf.save_pretrained(tmp_path)
    ids = rng.integers(3, 97, size=(2, 23))
    with torch.no_grad():
        full = hf(torch.from_numpy(ids)).logits.numpy()
        emulated = emulate_int8(hf)(torch.from_numpy(ids)).logits.numpy()
    model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="int8")
    assert model.dtype == "int8" and model.lm_head.dtype == "int8"
    got = model(ids).logits
    scale = np.abs(full).max()
    assert np.abs(got - emulated).max() < 2e-4 * scale
    assert np.abs(got - full).max() < 5e-2 * scale
    # cached decoding quantizes each new row alone, as the full forward quantizes each row
    out = model(ids[:, :20], use_cache=True)
    cache = out.past_key_values
    for t in range(20, 23):
        step = model(ids[:, t : t + 1], past_key_values=cache, use_cache=True)
        cache = step.past_key_values
        assert np.abs(step.logits[:, -1] - got[:, t]).max() < 1e-4 * scale
    assert pickle.loads(pickle.dumps(model)).dtype == "int8"


def test_encoders_and_vision(rng, tmp_path):
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=101,
            hidden_size=60,
            num_hidden_layers=2,
            num_attention_heads=5,
            intermediate_size=97,
            max_position_embeddings=64,
        )
    ).eval()
    bert.save_pretrained(tmp_path / "bert")
    ids = rng.integers(3, 101, size=(3, 31))
    mask = (np.arange(31)[None] < np.array([[31], [7], [1]])).astype(np.int64)
    with torch.no_grad():
        args = dict(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        full = bert(**args).last_hidden_state.numpy()
        emulated = emulate_int8(bert)(**args).last_hidden_state.numpy()
    got = tfcore.AutoModel.from_pretrained(tmp_path / "bert", dtype="int8")(ids, attention_mask=mask)
    real = mask.astype(bool)
    assert np.abs(got.last_hidden_state[real] - emulated[real]).max() < 1e-3
    assert np.abs(got.last_hidden_state[real] - full[real]).max() < 0.1  # LayerNorm outputs are O(1)

    vit = ViTModel(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=60,
            num_hidden_layers=2,
            num_attention_heads=5,
            intermediate_size=97,
        )
    ).eval()
    vit.save_pretrained(tmp_path / "vit")
    px = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = vit(torch.from_numpy(px)).last_hidden_state.numpy()
    got = tfcore.AutoModel.from_pretrained(tmp_path / "vit", dtype="int8")(px).last_hidden_state
    assert np.abs(got - want).max() < 0.1


def test_from_bf16_checkpoint(rng, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=97, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=97
        )
    ).eval()
    hf.to(torch.bfloat16).save_pretrained(tmp_path)
    hf = LlamaForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.float32).eval()
    ids = rng.integers(3, 97, size=(1, 9))
    with torch.no_grad():
        emulated = emulate_int8(hf)(torch.from_numpy(ids)).logits.numpy()
    got = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="int8")(ids).logits
    assert np.abs(got - emulated).max() < 2e-4 * np.abs(emulated).max()


@pytest.mark.parametrize("N", [1, 16, 17, 65, 200])
@pytest.mark.parametrize("K", [5, 64, 97])
def test_few_row_kernel_narrow_panels_and_odd_k(rng, N, K):
    """Rows <= 4 take tfcore's VNNI kernel, more rows oneDNN's: both give the emulation."""
    W, b = rand(rng, N, K), rand(rng, N)
    lin = tfcore.Linear(W, b, "gelu_tanh", dtype="int8")
    x = rand(rng, 6, K)
    ref = emulated_linear(x, W, b, "gelu_tanh")
    for M in range(1, 7):
        assert np.abs(lin(x[:M]) - ref[:M]).max() < 1e-5 * max(1.0, np.abs(ref).max()), M
    res = rand(rng, 3, N)
    acc = res.copy()
    lin(x[:3], acc, out=acc)
    assert np.abs(acc - (ref[:3] + res)).max() < 1e-5 * max(1.0, np.abs(ref).max())
