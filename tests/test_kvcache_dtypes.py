"""KVCache stored in bfloat16 or int8 (one scale per batch, head and token): what is stored is
exactly the rounded / quantized float32 keys and values, through growth, eviction and beam
reordering; attention over it stays within the precision's error of a float32 cache."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_kvcache import llama_like
from test_mha import rand

import tfcore


def bf16_round(a):
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(torch.bfloat16).float().numpy()


def int8_round(a):
    """Per-row (last axis) symmetric int8 quantize-dequantize in float32, as the cache does."""
    s = np.abs(a).max(-1, keepdims=True) / np.float32(127)
    s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
    return (np.clip(np.rint(a * (np.float32(1) / s)), -127, 127) * s).astype(np.float32)


ROUND = {"bfloat16": bf16_round, "int8": int8_round}
TOL = {"bfloat16": 2e-2, "int8": 3e-2}  # relative to the largest output


def run(layer, x, prompt, **cache_kw):
    """Prompt then one token at a time through a one-layer cache; (outputs, cache)."""
    B = x.shape[0]
    cache = tfcore.KVCache(1, B, 2, 8, **cache_kw)
    outs = [layer(np.ascontiguousarray(x[:, :prompt]), past_key_values=cache, layer_idx=0)]
    for t in range(prompt, x.shape[1]):
        outs.append(layer(np.ascontiguousarray(x[:, t : t + 1]), past_key_values=cache, layer_idx=0))
    return np.concatenate(outs, axis=1), cache


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("policy", [{}, {"policy": "sink_window", "budget": 9, "n_sink": 2}])
def test_stores_the_rounded_rows_and_attends_within_tolerance(rng, dtype, policy):
    layer = llama_like(rng)
    x = rand(rng, 3, 31, 48)
    want, ref = run(layer, x, 7, capacity=4, **policy)
    got, cache = run(layer, x, 7, capacity=4, dtype=dtype, **policy)
    assert cache.dtype == dtype and f"dtype={dtype}" in repr(cache)
    # one layer: keys/values depend on x only, so the stores hold exactly the rounded rows
    np.testing.assert_array_equal(cache.keys(0), ROUND[dtype](ref.keys(0)))
    np.testing.assert_array_equal(cache.values(0), ROUND[dtype](ref.values(0)))
    np.testing.assert_array_equal(cache.positions(0), ref.positions(0))
    assert np.abs(got - want).max() < TOL[dtype] * np.abs(want).max()
    assert not np.shares_memory(cache.keys(0), cache.keys(0))  # a dequantized copy, not a view


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_reorder_moves_rows_and_scales(rng, dtype):
    layer = llama_like(rng)
    x = rand(rng, 3, 5, 48)
    _, ref = run(layer, x, 5)
    _, cache = run(layer, x, 5, dtype=dtype)
    idx = np.array([2, 0, 0])
    ref.reorder(idx)
    cache.reorder(idx)
    np.testing.assert_array_equal(cache.keys(0), ROUND[dtype](ref.keys(0)))
    np.testing.assert_array_equal(cache.values(0), ROUND[dtype](ref.values(0)))


def test_memory_and_errors():
    sizes = {}
    for dtype in ("float32", "bfloat16", "int8"):
        cache = tfcore.KVCache(4, 2, 8, 64, capacity=1024, dtype=dtype)
        sizes[dtype] = float(re.search(r"memory=([\d.]+) MiB", repr(cache)).group(1))
    assert sizes["float32"] == 32.0 and sizes["bfloat16"] == 16.0  # 4 x 2 x 2 x 8 x 1024 x 64 values
    assert sizes["int8"] == pytest.approx(8.0 * (64 + 4) / 64, rel=1e-2)  # + a float scale per row
    with pytest.raises(
        tfcore.TfcoreValueError, match="KVCache dtype must be 'float32', 'bfloat16' or 'int8', got 'fp8'"
    ):
        tfcore.KVCache(1, 1, 1, 8, dtype="fp8")


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_causal_lm_generation_with_a_quantized_cache(rng, tmp_path, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=97,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,
            intermediate_size=97,
        )
    ).save_pretrained(tmp_path)
    model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = rng.integers(3, 97, size=(2, 9))
    full = model(ids).logits
    # teacher-forced through a quantized cache: every step's logits near the full forward
    cache = model.new_cache(2, 4, dtype=dtype)
    steps = [model(ids[:, :3], past_key_values=cache).logits]
    for t in range(3, 9):
        steps.append(model(ids[:, t : t + 1], past_key_values=cache).logits)
    got = np.concatenate(steps, axis=1)
    assert np.abs(got - full).max() < TOL[dtype] * np.abs(full).max()
    out = model.generate(ids, max_new_tokens=5, cache_dtype=dtype)
    assert out.shape == (2, 14) and (out[:, :9] == ids).all()
    beams = model.generate(ids, max_new_tokens=4, num_beams=3, cache_dtype=dtype)
    assert beams.shape == (2, 13)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_tova_scores_the_expanded_rows(rng, dtype):
    layer = llama_like(rng)
    x = rand(rng, 2, 20, 48)
    want, _ = run(layer, x, 4, policy="tova", budget=6)
    got, cache = run(layer, x, 4, policy="tova", budget=6, dtype=dtype)
    assert cache.num_cached(0) == 6 and cache.get_seq_length() == 20
    pos = cache.positions(0)
    assert (np.diff(pos, axis=1) > 0).all() and (pos[:, -1] == 19).all()
    assert np.isfinite(got).all() and got.shape == want.shape


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize(
    "idx", [[0, 1, 2, 3], [1, 2, 0, 3], [3, 3, 3, 3], [0, 0, 1, 2], [2, 3, 0, 1]], ids=str
)
def test_reorder_in_place_equals_a_gather(rng, dtype, idx):
    """reorder moves rows in place (cycles, repeats, identity rows kept): the same keys,
    values and positions as NumPy's take of the rows before, and decoding continues alike."""
    layer = llama_like(rng)
    x = rand(rng, 4, 5, 48)
    _, cache = run(layer, x, 5, dtype=dtype)
    idx = np.array(idx)
    before = [(cache.keys(i).copy(), cache.values(i).copy()) for i in range(cache.num_layers)]
    pos = cache.positions(0).copy() if hasattr(cache, "positions") else None
    cache.reorder(idx)
    for i, (k, v) in enumerate(before):
        np.testing.assert_array_equal(cache.keys(i), k[idx])
        np.testing.assert_array_equal(cache.values(i), v[idx])
    if pos is not None:
        np.testing.assert_array_equal(cache.positions(0), pos[idx])
    _, fresh = run(layer, x[idx], 5, dtype=dtype)
    step = rand(rng, 4, 1, 48)
    a = layer(step, past_key_values=cache, layer_idx=0)
    b = layer(step, past_key_values=fresh, layer_idx=0)
    # the fresh prompt ran its rows in another order through the GEMMs: rounding-level only
    assert np.abs(a - b).max() < 1e-5 * max(1.0, np.abs(b).max())
