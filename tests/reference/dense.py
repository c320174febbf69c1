"""Readable float64 NumPy references for dense layers (Linear, FeedForward)."""

from __future__ import annotations

import math

import numpy as np


def activation(x: np.ndarray, kind: str | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if kind in (None, "none"):
        return x
    if kind == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "silu":
        return x / (1.0 + np.exp(-x))
    if kind == "tanh":
        return np.tanh(x)
    raise ValueError(kind)


def linear(x, weight, bias=None, act=None, residual=None):
    """y = act(x @ weight.T + bias) + residual, weight (out, in)."""
    y = np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    y = activation(y, act)
    if residual is not None:
        y = y + np.asarray(residual, np.float64)
    return y


def feed_forward(x, up, down, act, gate=None, up_bias=None, down_bias=None, gate_bias=None, residual=None):
    if gate is None:
        hidden = linear(x, up, up_bias, act)
    else:
        hidden = linear(x, gate, gate_bias, act) * linear(x, up, up_bias)
    return linear(hidden, down, down_bias, residual=residual)
