"""Readable float64 NumPy references for row-wise ops: norms, rotary embedding."""

from __future__ import annotations

import numpy as np


def layer_norm(x, weight, bias=None, eps=1e-5, residual=None):
    s = np.asarray(x, np.float64) + (0 if residual is None else np.asarray(residual, np.float64))
    mu = s.mean(-1, keepdims=True)
    var = ((s - mu) ** 2).mean(-1, keepdims=True)
    y = (s - mu) / np.sqrt(var + eps) * weight
    return y if bias is None else y + bias


def rms_norm(x, weight, eps=1e-6, residual=None, offset=False):
    s = np.asarray(x, np.float64) + (0 if residual is None else np.asarray(residual, np.float64))
    w = np.asarray(weight, np.float64) + (1.0 if offset else 0.0)
    return s / np.sqrt((s**2).mean(-1, keepdims=True) + eps) * w


def rope(x, positions, inv_freq, interleaved=False):
    """x (B, T, H, D); rotates the first 2 * len(inv_freq) dims of each head."""
    x = np.asarray(x, np.float64).copy()
    half = len(inv_freq)
    ang = np.asarray(positions, np.float64)[:, :, None, None] * np.asarray(inv_freq, np.float64)
    c, s = np.cos(ang), np.sin(ang)
    if interleaved:
        a, b = x[..., 0 : 2 * half : 2].copy(), x[..., 1 : 2 * half : 2].copy()
        x[..., 0 : 2 * half : 2], x[..., 1 : 2 * half : 2] = a * c - b * s, b * c + a * s
    else:
        a, b = x[..., :half].copy(), x[..., half : 2 * half].copy()
        x[..., :half], x[..., half : 2 * half] = a * c - b * s, b * c + a * s
    return x
