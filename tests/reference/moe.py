"""Readable float64 NumPy reference of a sparse mixture-of-experts block (Mixtral's)."""

from __future__ import annotations

import numpy as np


def route(x, router, top_k, normalize=True):
    """x (M, C), router (E, C) -> (idx (M, k) int, w (M, k)): softmax over x @ router.T, the
    top_k experts by probability (ties: the lower index first, a stable sort), their
    probabilities divided by their sum when normalize."""
    logits = np.asarray(x, np.float64) @ np.asarray(router, np.float64).T
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    idx = np.argsort(-p, axis=-1, kind="stable")[:, :top_k]
    w = np.take_along_axis(p, idx, -1)
    if normalize:
        w = w / w.sum(-1, keepdims=True)
    return idx, w


def silu(z):
    return z / (1.0 + np.exp(-z))


def swiglu(x, gate, up, down):
    """x (M, C), gate/up (F, C), down (C, F): down(silu(gate x) * up x) in float64."""
    x = np.asarray(x, np.float64)
    return (silu(x @ np.asarray(gate, np.float64).T) * (x @ np.asarray(up, np.float64).T)) @ np.asarray(
        down, np.float64
    ).T


def moe(x, router, experts, top_k, normalize=True):
    """x (M, C); experts a list of (gate, up, down) weight triples -> (M, C) float64."""
    idx, w = route(x, router, top_k, normalize)
    y = np.zeros(np.shape(x), np.float64)
    for i in range(len(x)):
        for j in range(top_k):
            g, u, d = experts[idx[i, j]]
            y[i] += w[i, j] * swiglu(x[i : i + 1], g, u, d)[0]
    return y
