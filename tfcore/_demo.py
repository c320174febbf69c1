"""The demo behind ``tfcore demo``: a small BERT-style encoder (post-norm blocks)
and a GPT-style causal stack (pre-norm, GQA, rotary) built from tfcore layers on random
weights, each checked against the same math in float64 NumPy, then timed."""

from __future__ import annotations

import math
import time

import numpy as np

import tfcore

TOLERANCE = 2e-4  # float32 kernels vs float64 NumPy through 2 layers of width 256


# ----------------------------------------------------------------- float64 NumPy math


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _rms_norm(x, w, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * w


def _gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _rope(x, theta):
    # x is (B, H, T, D); half-split rotation (Llama convention)
    D, T = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., D // 2 :], x[..., : D // 2]], -1)
    return x * cos + rot * sin


def _attention(x, p, H, KVH, causal, key_mask=None, rope_theta=None):
    B, T, C = x.shape
    D = C // H
    q = (x @ p["q"].T).reshape(B, T, H, D).transpose(0, 2, 1, 3)
    k = (x @ p["k"].T).reshape(B, T, KVH, D).transpose(0, 2, 1, 3)
    v = (x @ p["v"].T).reshape(B, T, KVH, D).transpose(0, 2, 1, 3)
    if rope_theta is not None:
        q, k = _rope(q, rope_theta), _rope(k, rope_theta)
    k, v = np.repeat(k, H // KVH, axis=1), np.repeat(v, H // KVH, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)
    if causal:
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    if key_mask is not None:
        s = np.where(key_mask[:, None, None, :].astype(bool), s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    ctx = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, H * D)
    return ctx @ p["o"].T


# ----------------------------------------------------------------- models


def _weights(rng, C, F, H, KVH, gated):
    D = C // H
    r = lambda *s: (rng.standard_normal(s) * (s[-1] ** -0.5)).astype(np.float32)  # noqa: E731
    p = {
        "q": r(H * D, C),
        "k": r(KVH * D, C),
        "v": r(KVH * D, C),
        "o": r(C, H * D),
        "up": r(F, C),
        "down": r(C, F),
        "n1": (1 + 0.1 * rng.standard_normal(C)).astype(np.float32),
        "n2": (1 + 0.1 * rng.standard_normal(C)).astype(np.float32),
        "b1": (0.1 * rng.standard_normal(C)).astype(np.float32),
        "b2": (0.1 * rng.standard_normal(C)).astype(np.float32),
    }
    if gated:
        p["gate"] = r(F, C)
    return p


def _encoder_block(p, H):
    attn = tfcore.MultiHeadAttention(
        p["q"].shape[1], H, q_weight=p["q"], k_weight=p["k"], v_weight=p["v"], o_weight=p["o"]
    )
    ffn = tfcore.FeedForward(p["up"], p["down"], activation="gelu")
    return tfcore.TransformerBlock(
        attn,
        ffn,
        tfcore.LayerNorm(p["n1"], p["b1"], eps=1e-12),
        tfcore.LayerNorm(p["n2"], p["b2"], eps=1e-12),
        norm_first=False,
    )


def _decoder_block(p, H, KVH, theta):
    C = p["q"].shape[1]
    attn = tfcore.MultiHeadAttention(
        C,
        H,
        num_key_value_heads=KVH,
        q_weight=p["q"],
        k_weight=p["k"],
        v_weight=p["v"],
        o_weight=p["o"],
        is_causal=True,
        rope_theta=theta,
    )
    ffn = tfcore.FeedForward(p["up"], p["down"], gate_weight=p["gate"], activation="silu")
    return tfcore.TransformerBlock(
        attn, ffn, tfcore.RMSNorm(p["n1"], eps=1e-6), tfcore.RMSNorm(p["n2"], eps=1e-6), norm_first=True
    )


def _encoder_reference(x, params, H, key_mask):
    h = x.astype(np.float64)
    for p in params:
        h = _layer_norm(h + _attention(h, p, H, H, False, key_mask), p["n1"], p["b1"], 1e-12)
        h = _layer_norm(h + _gelu(h @ p["up"].T) @ p["down"].T, p["n2"], p["b2"], 1e-12)
    return h


def _decoder_reference(x, params, H, KVH, theta):
    h = x.astype(np.float64)
    for p in params:
        h = h + _attention(_rms_norm(h, p["n1"], 1e-6), p, H, KVH, True, rope_theta=theta)
        n = _rms_norm(h, p["n2"], 1e-6)
        h = h + (_silu(n @ p["gate"].T) * (n @ p["up"].T)) @ p["down"].T
    return h


def _time(fn, repeat=20):
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def run_demo(threads: int | None = None) -> int:
    if threads is not None:
        tfcore.set_num_threads(threads)
    tfcore.show_config()
    rng = np.random.default_rng(0)
    B, T, C, F, H, KVH, layers = 4, 128, 256, 1024, 8, 2, 2
    ok = True

    # Encoder: post-norm (BERT), padding mask with ragged lengths.
    enc_params = [_weights(rng, C, F, H, H, gated=False) for _ in range(layers)]
    enc = [_encoder_block(p, H) for p in enc_params]
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    lengths = np.array([T, 97, 64, 7])
    key_mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)

    def run_encoder():
        h = x
        for blk in enc:
            h = blk(h, key_mask)
        return h

    got = run_encoder()
    want = _encoder_reference(x, enc_params, H, key_mask)
    err_enc = float(np.abs(got - want).max())
    ok &= err_enc < TOLERANCE

    # Decoder: pre-norm (Llama-style), causal, GQA 8 query heads over 2 KV heads, RoPE, SwiGLU.
    dec_params = [_weights(rng, C, F, H, KVH, gated=True) for _ in range(layers)]
    dec = [_decoder_block(p, H, KVH, 10000.0) for p in dec_params]

    def run_decoder():
        h = x
        for blk in dec:
            h = blk(h)
        return h

    got = run_decoder()
    want = _decoder_reference(x, dec_params, H, KVH, 10000.0)
    err_dec = float(np.abs(got - want).max())
    ok &= err_dec < TOLERANCE

    t_enc, t_dec = _time(run_encoder), _time(run_decoder)
    tokens = B * T
    print()
    print(
        f"{layers}-layer encoder (post-norm, padding mask)  B={B} T={T} C={C} H={H}: "
        f"max |tfcore - float64 NumPy| = {err_enc:.2e}  {t_enc * 1e3:.2f} ms  ({tokens / t_enc:,.0f} tokens/s)"
    )
    print(
        f"{layers}-layer decoder (pre-norm, causal, GQA {H}/{KVH}, RoPE, SwiGLU): "
        f"max |tfcore - float64 NumPy| = {err_dec:.2e}  {t_dec * 1e3:.2f} ms  ({tokens / t_dec:,.0f} tokens/s)"
    )
    print(f"self-check (tolerance {TOLERANCE:g}): {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1
