"""float64 NumPy references for the state-space kernels (Mamba's short convolution and
selective scan, Mamba-2's SSD), token-major like tfcore.functional: written as the
per-token recurrences of the papers, short enough to check by eye."""

from __future__ import annotations

import numpy as np


def silu(v):
    return v / (1.0 + np.exp(-v))


def softplus(v):
    return np.where(v > 20.0, v, np.log1p(np.exp(np.minimum(v, 20.0))))


def causal_conv1d(x, w, bias=None, state=None, activation=None):
    """x (B, T, C), w (C, K), bias (C,), state (B, C, K-1) -> (y (B, T, C), new state)."""
    x = np.asarray(x, np.float64)
    B, T, C = x.shape
    K = w.shape[-1]
    w = np.asarray(w, np.float64).reshape(C, K)
    prev = np.zeros((B, C, K - 1)) if state is None else np.asarray(state, np.float64)
    u = np.concatenate([prev.transpose(0, 2, 1), x], axis=1)  # (B, K-1+T, C)
    y = np.zeros((B, T, C))
    for t in range(T):
        y[:, t] = np.einsum("bjc,cj->bc", u[:, t : t + K], w)
    if bias is not None:
        y += np.asarray(bias, np.float64)
    if activation == "silu":
        y = silu(y)
    return y, u[:, T:].transpose(0, 2, 1).copy()


def selective_scan(x, dt, A, Bm, Cm, D=None, z=None, dt_bias=None, state=None):
    """Mamba S6: x, dt (B, T, Dc), A (Dc, N), Bm, Cm (B, T, N) -> (y (B, T, Dc), state (B, Dc, N))."""
    x, dt, A, Bm, Cm = (np.asarray(a, np.float64) for a in (x, dt, A, Bm, Cm))
    Bsz, T, Dc = x.shape
    s = np.zeros((Bsz, Dc, A.shape[1])) if state is None else np.array(state, np.float64)
    delta = softplus(dt + (0.0 if dt_bias is None else np.asarray(dt_bias, np.float64)))
    y = np.zeros((Bsz, T, Dc))
    for t in range(T):
        dA = np.exp(delta[:, t, :, None] * A)  # (B, Dc, N)
        s = dA * s + (delta[:, t] * x[:, t])[:, :, None] * Bm[:, t, None, :]
        y[:, t] = np.einsum("bdn,bn->bd", s, Cm[:, t])
    if D is not None:
        y += x * np.asarray(D, np.float64)
    if z is not None:
        y *= silu(np.asarray(z, np.float64))
    return y, s


def ssd_scan(x, dt, A, Bm, Cm, D=None, dt_bias=None, dt_limit=(0.0, np.inf), state=None):
    """Mamba-2 SSD as its recurrence: x (B, T, H, P), dt (B, T, H), A (H,), Bm, Cm (B, T, G, N)
    -> (y (B, T, H, P), state (B, H, P, N))."""
    x, dt, A, Bm, Cm = (np.asarray(a, np.float64) for a in (x, dt, A, Bm, Cm))
    Bsz, T, H, P = x.shape
    G, N = Bm.shape[2:]
    Bh = np.repeat(Bm, H // G, axis=2)  # (B, T, H, N): head h reads group h // (H / G)
    Ch = np.repeat(Cm, H // G, axis=2)
    s = np.zeros((Bsz, H, P, N)) if state is None else np.array(state, np.float64)
    delta = np.clip(softplus(dt + (0.0 if dt_bias is None else np.asarray(dt_bias, np.float64))), *dt_limit)
    y = np.zeros_like(x)
    for t in range(T):
        dA = np.exp(delta[:, t] * A)  # (B, H)
        s = dA[:, :, None, None] * s + np.einsum("bh,bhp,bhn->bhpn", delta[:, t], x[:, t], Bh[:, t])
        y[:, t] = np.einsum("bhpn,bhn->bhp", s, Ch[:, t])
    if D is not None:
        y += x * np.asarray(D, np.float64)[:, None]
    return y, s


def gated_rms_norm(x, gate, weight, n_groups=1, eps=1e-6):
    """Mamba-2's gated RMSNorm: per group of the last axis, g = x silu(gate),
    g / sqrt(mean(g^2) + eps) * weight (float64)."""
    x, gate, weight = (np.asarray(a, np.float64) for a in (x, gate, weight))
    g = x * silu(gate)
    shape = g.shape
    g = g.reshape(*shape[:-1], n_groups, -1)
    g = g / np.sqrt(np.mean(g * g, axis=-1, keepdims=True) + eps)
    return g.reshape(shape) * weight
