"""KVCache: incremental decoding through MultiHeadAttention/TransformerBlock equals a full
forward at every step (GQA, RoPE, causal, growth past capacity, padding masks)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_mha import build, params, rand

import tfcore

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
    import hf_layers
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, intermediate_size=96)
    blk = hf_layers.llama_layer(
        LlamaDecoderLayer(cfg, layer_idx=0).eval(), cfg, LlamaRotaryEmbedding(cfg).inv_freq.numpy()
    )
    B, T = 2, 12
    x = rand(rng, B, T, 64)
    mask = np.ones((B, T), np.int64)
    mask[1, 10:] = 0  # the second row's last tokens are padding (keys hidden from later queries)
    full = blk(x, mask)
    cache = tfcore.KVCache(1, B, 2, 8, capacity=4)
    a = blk(
        np.ascontiguousarray(x[:, :8]), np.ascontiguousarray(mask[:, :8]), past_key_values=cache, layer_idx=0
    )
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


@pytest.mark.parametrize("capacity", [2, 4096])  # 2: the cache grows while others are refused
def test_cache_shared_by_mistake_between_threads_is_rejected_or_safe(rng, capacity):
    layer = llama_like(rng, C=64, H=8, KVH=2, D=8)
    cache = tfcore.KVCache(1, 1, 2, 8, capacity=capacity)
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


# ---------------------------------------------------------------- eviction policies


def decode(layer, cache, x, prompt):
    outs = [layer(np.ascontiguousarray(x[:, :prompt]), past_key_values=cache, layer_idx=0)]
    for t in range(prompt, x.shape[1]):
        outs.append(layer(np.ascontiguousarray(x[:, t : t + 1]), past_key_values=cache, layer_idx=0))
    return np.concatenate(outs, axis=1)


def test_sink_window_keeps_sinks_and_recent_tokens(rng):
    layer = llama_like(rng)
    cache = tfcore.KVCache(1, 2, 2, 8, policy="sink_window", budget=6, n_sink=2)
    x = rand(rng, 2, 15, 48)
    decode(layer, cache, x, prompt=4)
    assert cache.get_seq_length() == 15 and cache.num_cached(0) == 6
    assert np.array_equal(cache.positions(0), np.array([[0, 1, 11, 12, 13, 14]] * 2))


def test_tova_drops_the_least_attended_token(rng):
    C, H, KVH, D = 48, 6, 2, 8
    layer = llama_like(rng, C, H, KVH, D)
    budget = 5
    cache = tfcore.KVCache(1, 1, KVH, D, policy="tova", budget=budget)
    full = tfcore.KVCache(1, 1, KVH, D)
    x = rand(rng, 1, 12, C)
    layer(np.ascontiguousarray(x[:, :budget]), past_key_values=cache, layer_idx=0)
    layer(np.ascontiguousarray(x[:, :budget]), past_key_values=full, layer_idx=0)
    for t in range(budget, 12):
        kept = cache.positions(0)[0]
        step = np.ascontiguousarray(x[:, t : t + 1])
        # what TOVA should drop: the current query's attention over the kept keys + itself,
        # averaged over heads, lowest weight (computed here from a full-cache run restricted
        # to the kept positions through an explicit additive mask)
        layer(step, past_key_values=full, layer_idx=0)
        keys = full.keys(0)  # (1, KVH, t + 1, D), already rotated
        q_layer = layer.qkv_proj  # q for the step token, rotated at position t
        qkv = q_layer(step.reshape(1, C)).reshape(-1)
        q = qkv[: H * D].reshape(H, D)
        inv = tfcore.functional.rope_inv_freq(D, 10000.0)
        q = tfcore.functional.rotary_embedding(q[None, None], inv, np.array([[t]]))[0, 0]
        cand = np.append(kept, t)
        k = np.repeat(keys[0][:, cand], H // KVH, axis=0)  # (H, n, D)
        s = np.einsum("hd,hnd->hn", q.astype(np.float64), k) / np.sqrt(D)
        w = np.exp(s - s.max(-1, keepdims=True))
        w = (w / w.sum(-1, keepdims=True)).mean(0)
        expected = np.delete(cand, np.argmin(w))
        layer(step, past_key_values=cache, layer_idx=0)
        assert np.array_equal(cache.positions(0)[0], expected)
        assert cache.num_cached(0) == budget and cache.get_seq_length() == t + 1


@pytest.mark.parametrize("policy", ["sink_window", "tova"])
def test_budget_at_least_length_equals_full_cache(rng, policy):
    layer = llama_like(rng)
    x = rand(rng, 2, 20, 48)
    want = decode(layer, tfcore.KVCache(1, 2, 2, 8), x, prompt=5)
    got = decode(layer, tfcore.KVCache(1, 2, 2, 8, policy=policy, budget=20, n_sink=4), x, prompt=5)
    assert np.array_equal(got, want)


def test_evicted_cache_keeps_original_positions(rng):
    # after eviction new tokens continue at their true positions: the output of a step equals
    # attention over exactly the kept tokens computed with a full cache and a mask
    layer = llama_like(rng)
    x = rand(rng, 1, 14, 48)
    cache = tfcore.KVCache(1, 1, 2, 8, policy="sink_window", budget=6, n_sink=2)
    got = decode(layer, cache, x, prompt=8)
    full = tfcore.KVCache(1, 1, 2, 8)
    layer(np.ascontiguousarray(x[:, :8]), past_key_values=full, layer_idx=0)
    for t in range(8, 14):
        # keys visible to step t under the policy: sinks 0,1 and the 4 most recent before t, and t
        visible = [0, 1] + list(range(t - 4, t)) + [t]
        mask = np.zeros((1, t + 1), np.int64)
        mask[0, visible] = 1
        want = layer(np.ascontiguousarray(x[:, t : t + 1]), mask, past_key_values=full, layer_idx=0)
        assert np.abs(got[:, t] - want[:, 0]).max() < TOL


def test_policy_errors():
    with pytest.raises(tfcore.TfcoreValueError, match="unknown cache policy 'lru'"):
        tfcore.KVCache(1, 1, 1, 8, policy="lru", budget=4)
    with pytest.raises(tfcore.TfcoreValueError, match="needs budget >= 1 and 0 <= n_sink < budget"):
        tfcore.KVCache(1, 1, 1, 8, policy="sink_window", budget=4, n_sink=4)
    with pytest.raises(tfcore.TfcoreValueError, match="needs budget >= 1"):
        tfcore.KVCache(1, 1, 1, 8, policy="tova")
