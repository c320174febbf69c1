"""Readable float64 NumPy reference of Longformer attention (sliding window with dilation and
global tokens), written from the definition with dense (L, L) masks — fine for test sizes."""

from __future__ import annotations

import math

import numpy as np


def _softmax(s, allowed):
    s = np.where(allowed, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0.0))
    den = e.sum(-1, keepdims=True)
    return np.where(den > 0, e / np.where(den > 0, den, 1.0), 0.0)


def sliding_window_attention(
    q,
    k,
    v,
    window,
    dilation=1,
    attention_mask=None,
    global_attention_mask=None,
    global_query=None,
    global_key=None,
    global_value=None,
    scale=None,
):
    """q, k, v (B, H, L, D) -> (out (B, H, L, D), weights (B, H, L, G + 2w + 1),
    global_weights (B, H, L, G)) in float64, with the semantics of tfcore's
    sliding_window_attention (Hugging Face's LongformerSelfAttention plus dilation)."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    B, H, L, D = q.shape
    gk = k if global_key is None else np.asarray(global_key, np.float64)
    gv = v if global_value is None else np.asarray(global_value, np.float64)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    real = np.ones((B, L), bool) if attention_mask is None else np.asarray(attention_mask) != 0
    glob = np.zeros((B, L), bool) if global_attention_mask is None else np.asarray(global_attention_mask) != 0
    glob &= real
    G = int(glob.sum(1).max())
    w, d = window, dilation
    out = np.zeros((B, H, L, D))
    weights = np.zeros((B, H, L, G + 2 * w + 1))
    gweights = np.zeros((B, H, L, G))
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    offset = j - i
    in_band = (np.abs(offset) <= w * d) & (offset % d == 0)
    for b in range(B):
        gpos = np.flatnonzero(glob[b])
        # local queries: the band's real non-global keys, plus every global key
        allowed = (in_band & (real[b] & ~glob[b])[None, :]) | glob[b][None, :]
        p = _softmax(np.einsum("hld,hsd->hls", q[b], k[b]) * scale, allowed[None])
        out[b] = p @ v[b]
        weights[b, :, :, : len(gpos)] = p[:, :, gpos]
        local_key = real[b] & ~glob[b]  # a global key in the band counts in its global column only
        for t in range(-w, w + 1):
            rows = np.arange(L)
            keys = rows + d * t
            ok = (keys >= 0) & (keys < L)
            ok[ok] &= local_key[keys[ok]]
            weights[b, :, rows[ok], G + w + t] = p[:, rows[ok], keys[ok]].T
        # global queries: own projections, every real key
        if len(gpos):
            qg = (
                np.asarray(global_query, np.float64)[b, :, : len(gpos)]
                if global_query is not None
                else q[b][:, gpos]
            )
            pg = _softmax(np.einsum("hgd,hsd->hgs", qg, gk[b]) * scale, real[b][None, None, :])
            out[b][:, gpos] = pg @ gv[b]
            gweights[b, :, :, : len(gpos)] = pg.transpose(0, 2, 1)
            weights[b][:, gpos] = 0.0
        out[b][:, ~real[b]] = 0.0
        weights[b][:, ~real[b]] = 0.0
    return out, weights, gweights
