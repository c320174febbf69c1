"""Readable float64 NumPy reference of scaled-dot-product attention with tfcore's extras."""

from __future__ import annotations

import math

import numpy as np


def visible(L, S, *, causal=False, window=None, kv_len=None):
    """(L, S) bool: key j visible to query i (causal top-left aligned like torch)."""
    i, j = np.arange(L)[:, None], np.arange(S)[None, :]
    vis = np.ones((L, S), bool)
    if causal:
        vis &= j <= i
    if window is not None:
        left, right = window
        if left is not None:
            vis &= i - j <= left
        if right is not None:
            vis &= j - i <= right
    if kv_len is not None:
        vis &= j < kv_len
    return vis


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, *, window=None, bias=None, softcap=None):
    """q (B, H, L, D), k (B, KVH, S, D), v (B, KVH, S, Dv) -> (out, weights) in float64.

    GQA: head h uses kv head h // (H // KVH). Queries with no visible key get zeros.
    softcap=c: the scaled scores become c * tanh(s / c) before masks and bias (Gemma 2)."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    B, H, L, D = q.shape
    KVH, S = k.shape[1], k.shape[2]
    k = np.repeat(k, H // KVH, axis=1)
    v = np.repeat(v, H // KVH, axis=1)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = np.einsum("bhld,bhsd->bhls", q, k) * scale
    if softcap is not None:
        s = softcap * np.tanh(s / softcap)
    allowed = np.broadcast_to(visible(L, S, causal=is_causal, window=window), (B, H, L, S)).copy()
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.dtype == bool:
            allowed &= np.broadcast_to(m, (B, H, L, S))
        else:
            s = s + np.broadcast_to(m.astype(np.float64), (B, H, L, S))
    if bias is not None:
        s = s + np.broadcast_to(np.asarray(bias, np.float64), (B, H, L, S))
    s = np.where(allowed, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0.0))
    den = e.sum(-1, keepdims=True)
    w = np.where(den > 0, e / np.where(den > 0, den, 1.0), 0.0)
    return np.einsum("bhls,bhsd->bhld", w, v), w
