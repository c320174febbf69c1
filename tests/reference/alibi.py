"""Readable float64 NumPy reference of ALiBi (Press et al., 2021) as BLOOM uses it."""
from __future__ import annotations

import math

import numpy as np


def alibi_slopes(num_heads: int) -> np.ndarray:
    """(H,) slopes: for the largest power of two n <= H, 2^(-8 k / n) for k = 1..n; the
    remaining H - n heads take the odd powers 2^(-4 k / n), k = 1, 3, 5, ... (HF's
    _get_alibi_slopes / the paper's recipe for non-power-of-2 head counts)."""
    n = 2 ** math.floor(math.log2(num_heads))
    slopes = [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]
    slopes += [2.0 ** (-4.0 * k / n) for k in range(1, 2 * min(n, num_heads - n), 2)]
    return np.array(slopes, np.float64)


def alibi_bias(num_heads: int, L: int, S: int, past: int = 0) -> np.ndarray:
    """(1, H, L, S) bias slope[h] * (key - query) for L queries at positions past..past+L-1
    over S keys at positions 0..S-1."""
    rel = np.arange(S)[None, :] - (past + np.arange(L))[:, None]
    return (alibi_slopes(num_heads)[:, None, None] * rel)[None]
