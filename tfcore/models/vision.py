"""Bicubic resampling of position-embedding grids, matching ``torch.nn.functional.interpolate``
(mode="bicubic", align_corners=False), with and without ``antialias`` — what ViT-family
models use to run on image sizes other than the one they were trained on."""
from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _weights_plain(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of torch's upsample_bicubic2d: A = -0.75, 4 taps, source
    index (i + 0.5) * in/out - 0.5, out-of-range taps clamped to the border."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        real = (i + 0.5) * scale - 0.5
        base = math.floor(real)
        t = real - base
        for k, c in zip(range(-1, 3), _cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)):
            w[i, min(max(base + k, 0), n_in - 1)] += c
    return w


def _weights_antialias(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of torch's antialiased bicubic (PIL's filter, a = -0.5): the
    kernel widens by in/out when downsampling and each row's weights sum to 1."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / scale if scale > 1.0 else 1.0
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        taps = _cubic((np.arange(lo, hi) - center + 0.5) * inv, -0.5)
        total = taps.sum()
        w[i, lo:hi] = taps / total if total != 0 else taps
    return w


def resize_grid(grid: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    """grid (h, w, C) -> (height, width, C), float32, computed in float64."""
    h, w, _ = grid.shape
    make = _weights_antialias if antialias else _weights_plain
    wy, wx = make(h, height), make(w, width)
    out = np.einsum("yh,hwc->ywc", wy, grid.astype(np.float64))
    out = np.einsum("xw,ywc->yxc", wx, out)
    return out.astype(np.float32)
