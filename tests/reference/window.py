"""Readable float64 NumPy reference of Swin's shifted-window attention, done HF's way with
explicit copies: pad the map, roll it, partition it into windows, attend with the
relative-position bias and the shifted-window mask, reverse the partition, roll back, crop."""

from __future__ import annotations

import math

import numpy as np


def relative_bias(table: np.ndarray, ws: int) -> np.ndarray:
    """table ((2 tw - 1)^2, H), tw >= ws -> (H, N, N) bias of a ws x ws window, indexed by
    relative coordinates like HF's relative_position_index (tw = ws there)."""
    side = math.isqrt(table.shape[0])
    tw = (side + 1) // 2
    r, c = np.divmod(np.arange(ws * ws), ws)
    dr = r[:, None] - r[None, :] + tw - 1
    dc = c[:, None] - c[None, :] + tw - 1
    return np.asarray(table, np.float64)[dr * side + dc].transpose(2, 0, 1)


def partition(x: np.ndarray, ws: int) -> np.ndarray:
    """(B, Hp, Wp, ...) -> (B nW, ws*ws, ...), windows row-major, HF's window_partition."""
    B, Hp, Wp = x.shape[:3]
    rest = x.shape[3:]
    x = x.reshape(B, Hp // ws, ws, Wp // ws, ws, *rest)
    x = x.transpose(0, 1, 3, 2, 4, *range(5, x.ndim))
    return x.reshape(-1, ws * ws, *rest)


def reverse(w: np.ndarray, ws: int, B: int, Hp: int, Wp: int) -> np.ndarray:
    """Inverse of partition: (B nW, ws*ws, ...) -> (B, Hp, Wp, ...)."""
    rest = w.shape[2:]
    x = w.reshape(B, Hp // ws, Wp // ws, ws, ws, *rest)
    x = x.transpose(0, 1, 3, 2, 4, *range(5, x.ndim))
    return x.reshape(B, Hp, Wp, *rest)


def region_mask(Hp: int, Wp: int, ws: int, shift: int, value: float = -100.0) -> np.ndarray:
    """(nW, N, N) of 0 / value (-100): HF's SwinLayer.get_attn_mask on the padded map."""
    img = np.zeros((1, Hp, Wp))
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl] = cnt
            cnt += 1
    win = partition(img, ws)  # (nW, N)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, value, 0.0)


def window_attention(qkv, ws: int, shift: int = 0, table=None, pad_qkv=None, scale=None, mask_value=-100.0):
    """qkv (B, Hh, Ww, 3, H, D) -> (out (B, Hh, Ww, H, D), weights (B nW, H, N, N)), float64."""
    qkv = np.asarray(qkv, np.float64)
    B, Hh, Ww, _, H, D = qkv.shape
    Hp, Wp = -(-Hh // ws) * ws, -(-Ww // ws) * ws
    x = np.zeros((B, Hp, Wp, 3, H, D))
    if pad_qkv is not None:
        x[:] = np.asarray(pad_qkv, np.float64)
    x[:, :Hh, :Ww] = qkv
    if shift:
        x = np.roll(x, (-shift, -shift), axis=(1, 2))
    win = partition(x, ws)  # (B nW, N, 3, H, D)
    q, k, v = (win[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B nW, H, N, D)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = q @ k.transpose(0, 1, 3, 2) * scale
    if table is not None:
        s = s + relative_bias(table, ws)[None]
    if shift:
        m = region_mask(Hp, Wp, ws, shift, mask_value)  # (nW, N, N)
        s = s + np.tile(m, (B, 1, 1))[:, None]
    s = s - s.max(-1, keepdims=True)
    w = np.exp(s)
    w /= w.sum(-1, keepdims=True)
    o = (w @ v).transpose(0, 2, 1, 3)  # (B nW, N, H, D)
    y = reverse(o, ws, B, Hp, Wp)
    if shift:
        y = np.roll(y, (shift, shift), axis=(1, 2))
    return y[:, :Hh, :Ww], w
