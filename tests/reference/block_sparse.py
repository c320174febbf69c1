"""Readable float64 NumPy reference of block-sparse attention (tfcore.functional.block_sparse_attention).

The layout is expanded into a dense (B, H, L, S) count of how many times each key is listed
for each query (global query blocks: once per key), and the softmax weights each key by its
count: p_ij = c_ij exp(s_ij) / sum_j c_ij exp(s_ij). Dense on purpose: small test sizes only."""

from __future__ import annotations

import math

import numpy as np


def key_counts(layout, block_size, B, H, L, S, global_blocks=()):
    """(B, H, L, S) int: how often key j is attended by query i."""
    lay = np.broadcast_to(np.asarray(layout), (B, H) + np.asarray(layout).shape[-2:])
    nqb = L // block_size
    counts = np.zeros((B, H, L, S), np.int64)
    glob = {g % nqb for g in global_blocks}
    for b in range(B):
        for h in range(H):
            for qb in range(nqb):
                rows = slice(qb * block_size, (qb + 1) * block_size)
                if qb in glob:
                    counts[b, h, rows, :] += 1
                    continue
                for kb in lay[b, h, qb]:
                    if kb >= 0:
                        counts[b, h, rows, kb * block_size : (kb + 1) * block_size] += 1
    return counts


def block_sparse_attention(
    q, k, v, layout, block_size, *, global_blocks=(), key_padding_mask=None, query_mask=None, scale=None
):
    """q (B, H, L, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, L, Dv) float64."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    B, H, L, D = q.shape
    S = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    counts = key_counts(layout, block_size, B, H, L, S, global_blocks).astype(np.float64)
    if key_padding_mask is not None:
        counts *= np.asarray(key_padding_mask, bool)[:, None, None, :]
    s = np.einsum("bhld,bhsd->bhls", q, k) * scale
    s = np.where(counts > 0, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    w = counts * np.exp(s - m)
    total = w.sum(axis=-1, keepdims=True)
    p = np.divide(w, total, out=np.zeros_like(w), where=total > 0)  # no visible key: zeros
    out = np.einsum("bhls,bhsd->bhld", p, v)
    if query_mask is not None:
        out *= np.asarray(query_mask, bool)[:, None, :, None]
    return out
