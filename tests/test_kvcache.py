"""KVCache: incremental decoding through MultiHeadAttention/TransformerBlock equals a full
forward at every step (GQA, RoPE, causal, growth past capacity, padding masks)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import tfcore
from test_mha import build, params, rand

TOL = 2e-5  # cached vs full forward: same kernels, different key-block boundaries


def llama_like(rng, C=48, H=6, KVH=2, D=8):
    p = params(rng, C, H, KVH, D, bias=False)
    return build(p, C, H, KVH, D, is_causal=True, rope_theta=10000.0)


@pytest.mark.parametrize("prompt,steps,capacity", [(7, 9, 256), (1, 20, 4), (33, 5, 8)])
def test_incremental_equals_full(rng, path, prompt, steps, capacity):
    layer = llama_like(rng)
    B, C = 2, 48
    x = rand(rng, B, prompt + steps, C)
    full = layer(x)
    cache = tfcore.KVCache(1, B, 2, 8, capacity=capacity)
    outs = [layer(np.ascontiguousarray(x[:, :prompt]), past_key_values=cache, layer_idx=0)]
    for t in range(prompt, prompt + steps):
        outs.append(layer(np.ascontiguousarray(x[:, t : t + 1]), past_key_values=cache, layer_idx=0))
    got = np.concatenate(outs, axis=1)
    assert cache.get_seq_length() == prompt + steps
    assert cache.capacity >= prompt + steps
    assert np.abs(got - full).max() < TOL


def test_block_with_cache_and_padding_mask(rng):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
    import hf_layers

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, intermediate_size=96)
    blk = hf_layers.llama_layer(LlamaDecoderLayer(cfg, layer_idx=0).eval(), cfg, LlamaRotaryEmbedding(cfg).inv_freq.numpy())
    B, T = 2, 12
    x = rand(rng, B, T, 64)
    mask = np.ones((B, T), np.int64)
    mask[1, 10:] = 0  # the second row's last tokens are padding (keys hidden from later queries)
    full = blk(x, mask)
    cache = tfcore.KVCache(1, B, 2, 8, capacity=4)
    a = blk(np.ascontiguousarray(x[:, :8]), np.ascontiguousarray(mask[:, :8]), past_key_values=cache, layer_idx=0)
    b = blk(np.ascontiguousarray(x[:, 8:]), mask, past_key_values=cache, layer_idx=0)  # mask spans past + new
    got = np.concatenate([a, b], axis=1)
    assert np.abs(got - full).max() < TOL


def test_views_are_zero_copy_and_survive_growth(rng):
    layer = llama_like(rng)
    cache = tfcore.KVCache(1, 1, 2, 8, capacity=2)
    layer(rand(rng, 1, 2, 48), past_key_values=cache, layer_idx=0)
    k = cache.keys(0)
    assert k.shape == (1, 2, 2, 8) and not k.flags.writeable
    assert np.shares_memory(k, cache.keys(0))
    before = k.copy()
    layer(rand(rng, 1, 3, 48), past_key_values=cache, layer_idx=0)  # grows: new storage
    assert np.array_equal(k, before)  # the old view still reads valid (old) memory
    assert np.array_equal(cache.keys(0)[:, :, :2], before)  # contents carried over
    assert cache.values(0).shape == (1, 2, 5, 8)
    cache.crop(3)
    assert cache.get_seq_length() == 3
    cache.reset()
    assert cache.get_seq_length() == 0 and "KVCache(num_layers=1" in repr(cache)


def test_errors(rng):
    layer = llama_like(rng)
    x = rand(rng, 1, 3, 48)
    with pytest.raises(tfcore.TfcoreValueError, match="layer_idx must be given"):
        layer(x, past_key_values=tfcore.KVCache(2, 1, 2, 8))
    with pytest.raises(tfcore.TfcoreValueError, match=r"KVCache is \(batch 2, kv_heads 2, head_dim 8\)"):
        layer(x, past_key_values=tfcore.KVCache(1, 2, 2, 8), layer_idx=0)
    with pytest.raises(tfcore.TfcoreTypeError, match="past_key_values must be a tfcore.KVCache"):
        layer(x, past_key_values=object(), layer_idx=0)
    with pytest.raises(tfcore.TfcoreValueError, match="sizes must be positive"):
        tfcore.KVCache(0, 1, 1, 1)
    with pytest.raises(tfcore.TfcoreValueError, match="more than 64 GiB"):
        tfcore.KVCache(100, 100, 100, 100, capacity=10**6)
    cache = tfcore.KVCache(1, 1, 2, 8)
    with pytest.raises(tfcore.TfcoreValueError, match="out of range"):
        cache.keys(1)
    # a rejected call leaves the cache unchanged
    layer(x, past_key_values=cache, layer_idx=0)
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        layer(np.full((1, 1, 48), np.nan, np.float32), past_key_values=cache, layer_idx=0)
    assert cache.get_seq_length() == 3


def test_cache_shared_by_mistake_between_threads_is_rejected_or_safe(rng):
    layer = llama_like(rng, C=64, H=8, KVH=2, D=8)
    cache = tfcore.KVCache(1, 1, 2, 8, capacity=4096)
    x = rand(rng, 1, 64, 64)
    errors, ok = [], []

    def work():
        for _ in range(20):
            try:
                layer(x, past_key_values=cache, layer_idx=0)
                ok.append(1)
            except tfcore.TfcoreValueError as e:
                errors.append(str(e))

    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all("in use by another call" in e for e in errors)
    assert cache.get_seq_length() == 64 * len(ok)  # every accepted call appended exactly once
