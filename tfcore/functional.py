"""Stateless ops on NumPy arrays (float32), in the style of ``torch.nn.functional``.

``scaled_dot_product_attention`` has the semantics of PyTorch's, run by tfcore's fused
attention kernel; see its docstring for the extras (sliding window, bias, weights, out=).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ._C import (
    TfcoreValueError,
    activation,
    alibi_slopes,
    block_sparse_attention,
    causal_conv1d,
    deberta_relative_index,
    gated_rms_norm,
    gelu,
    glu,
    linear_attention,
    relu,
    rotary_embedding,
    rwkv4_wkv,
    rwkv_token_shift,
    scaled_dot_product_attention,
    selective_scan,
    sigmoid_gate,
    silu,
    sliding_window_attention,
    squared_relu,
    ssd_scan,
    t5_relative_position_bucket,
    window_attention,
)
from ._rwkv6 import rwkv6_wkv

__all__ = [
    "activation",
    "alibi_slopes",
    "block_sparse_attention",
    "causal_conv1d",
    "deberta_relative_index",
    "gated_rms_norm",
    "gelu",
    "glu",
    "linear_attention",
    "relu",
    "rope_inv_freq",
    "rotary_embedding",
    "rwkv4_wkv",
    "rwkv6_wkv",
    "rwkv_token_shift",
    "scaled_dot_product_attention",
    "selective_scan",
    "sigmoid_gate",
    "silu",
    "squared_relu",
    "t5_relative_position_bucket",
    "sliding_window_attention",
    "ssd_scan",
    "window_attention",
]


def rope_inv_freq(
    head_dim: int,
    theta: float = 10000.0,
    *,
    rotary_dim: Optional[int] = None,
    scaling: Optional[Mapping] = None,
) -> np.ndarray:
    """Rotary inverse frequencies ``(rotary_dim // 2,)`` float32, as Hugging Face computes them.

    scaling follows HF's ``rope_scaling``: None / ``{"rope_type": "default"}``,
    ``{"rope_type": "linear", "factor": f}`` (positions divided by f), or the Llama 3 form
    ``{"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    "original_max_position_embeddings"}``.
    """
    rd = head_dim if rotary_dim is None else int(rotary_dim)
    if rd < 2 or rd % 2 or rd > head_dim:
        raise TfcoreValueError(f"rotary_dim must be even and in [2, head_dim={head_dim}], got {rd}")
    if not theta > 1.0:
        raise TfcoreValueError(f"theta must be > 1, got {theta}")
    # float32 like HF: 1 / theta ** (arange(0, rd, 2, int64).float() / rd)
    inv = 1.0 / (theta ** (np.arange(0, rd, 2, dtype=np.int64).astype(np.float32) / np.float32(rd)))
    inv = inv.astype(np.float32)
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return (inv / np.float32(scaling["factor"])).astype(np.float32)
    if kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * np.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    raise TfcoreValueError(f"unsupported rope_scaling type {kind!r} (supported: default, linear, llama3)")
