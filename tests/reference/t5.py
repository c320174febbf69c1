"""Readable NumPy reference of T5's bucketed relative position bias (HF's
T5Attention._relative_position_bucket and compute_bias), materialised as (1, H, L, S)."""
from __future__ import annotations

import math

import numpy as np


def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Bucket of each key_position - query_position. Half the buckets (per direction when
    bidirectional) count distances exactly; the rest grow logarithmically up to max_distance.
    The log is taken in float32 and truncated, as HF does in torch."""
    rel = np.asarray(relative_position, np.int64)
    buckets = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0) * num_buckets
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    max_exact = num_buckets // 2
    far = np.maximum(rel, max_exact).astype(np.float32)  # the log is only used for rel >= max_exact
    scaled = (np.log(far / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
    large = max_exact + scaled.astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(rel < max_exact, rel, large)


def position_bias(table, L, S, *, bidirectional, offset=0, max_distance=128):
    """(1, H, L, S) float32 bias of L queries at positions offset .. offset + L - 1 over
    keys 0 .. S - 1, from a (num_buckets, H) table."""
    table = np.asarray(table, np.float32)
    rel = np.arange(S)[None, :] - (np.arange(L)[:, None] + offset)
    b = relative_position_bucket(rel, bidirectional, table.shape[0], max_distance)
    return np.ascontiguousarray(table[b].transpose(2, 0, 1)[None])
