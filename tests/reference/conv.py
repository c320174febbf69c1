"""A readable float64 NumPy reference for 1-D and 2-D convolutions (torch.nn.Conv1d/Conv2d
semantics: cross-correlation, zero padding, stride, dilation, groups)."""

from __future__ import annotations

import itertools

import numpy as np


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x (B, C, *sp) channels first, weight (OC, C / groups, *k) -> (B, OC, *out) in float64.

    stride and dilation: an int or one per spatial axis; padding: an int, one per axis, or
    one (before, after) pair per axis."""
    x = np.asarray(x, np.float64)
    w = np.asarray(weight, np.float64)
    nsp = x.ndim - 2
    per_axis = lambda v: (v,) * nsp if np.isscalar(v) else tuple(v)  # noqa: E731
    stride, dilation = per_axis(stride), per_axis(dilation)
    pads = [(p, p) if np.isscalar(p) else tuple(p) for p in per_axis(padding)]
    B, C = x.shape[:2]
    OC, Cg = w.shape[:2]
    k = w.shape[2:]
    assert C == Cg * groups and OC % groups == 0
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    out = [(xp.shape[2 + i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(nsp)]
    y = np.zeros((B, OC, *out))
    OCg = OC // groups
    for g in range(groups):
        xg = xp[:, g * Cg : (g + 1) * Cg]
        wg = w[g * OCg : (g + 1) * OCg]
        # y[b, o, p] += sum_c x[b, c, p * stride + offset * dilation] w[o, c, offset]
        for offset in itertools.product(*(range(n) for n in k)):
            window = tuple(
                slice(
                    offset[i] * dilation[i], offset[i] * dilation[i] + stride[i] * (out[i] - 1) + 1, stride[i]
                )
                for i in range(nsp)
            )
            patch = xg[(slice(None), slice(None)) + window]  # (B, Cg, *out)
            y[:, g * OCg : (g + 1) * OCg] += np.einsum(
                "bc...,oc->bo...", patch, wg[(slice(None), slice(None)) + offset]
            )
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape((1, OC) + (1,) * nsp)
    return y


def round_bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), as float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)
