"""float64 NumPy references of RWKV-4's ops, written as what they mean rather than as the
kernels' running-max recurrence:

WKV at step t is a softmax-weighted average of the values seen so far, with logits
    (t - 1 - i) * w + k_i  for i < t,   u + k_t  for the current token,
    t * w + log(den) + max for the initial state's (num / den) (if den > 0),
where w = -exp(time_decay). The state after T steps is the same sum without the current
token's bonus, summarised as (num, den, max) with max the largest logit."""

from __future__ import annotations

import numpy as np


def _softmax_average(logits, values):
    """logits, values (n, B, C): sum softmax(logits over n) * values."""
    m = logits.max(axis=0)
    e = np.exp(logits - m)
    return (e * values).sum(axis=0) / e.sum(axis=0)


def wkv(k, v, time_decay, time_first, state=None, receptance=None):
    """k, v (B, T, C); time_decay, time_first (C,); state (num, den, max) each (B, C) or None.
    Returns (y (B, T, C), final state (num, den, max))."""
    k, v = np.asarray(k, np.float64), np.asarray(v, np.float64)
    w = -np.exp(np.asarray(time_decay, np.float64))
    u = np.asarray(time_first, np.float64)
    B, T, C = k.shape
    init_logits, init_values = [], []
    if state is not None:
        num, den, mx = (np.asarray(s, np.float64) for s in state)
        full = den > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            init_logits = [np.where(full, mx + np.log(np.where(full, den, 1.0)), -np.inf)]
            init_values = [np.where(full, num / np.where(full, den, 1.0), 0.0)]
    y = np.zeros((B, T, C))
    for t in range(T + 1):
        logits = [lg + t * w for lg in init_logits]
        values = list(init_values)
        for i in range(t):
            logits.append((t - 1 - i) * w + k[:, i])
            values.append(v[:, i])
        if t < T:
            y[:, t] = _softmax_average(np.stack(logits + [u + k[:, t]]), np.stack(values + [v[:, t]]))
    # the state after the last token (t = T): its logits and values without a current token
    if not logits:
        return y, (np.zeros((B, C)), np.zeros((B, C)), np.full((B, C), -1e38))
    lg, vals = np.stack(logits), np.stack(values)
    mx = lg.max(axis=0)
    e = np.exp(lg - mx)
    if receptance is not None:
        y = y / (1.0 + np.exp(-np.asarray(receptance, np.float64)))
    return y, ((e * vals).sum(axis=0), e.sum(axis=0), mx)


def token_shift(x, mix, state=None):
    """x (B, T, C), mix (n, C), state (B, C) or None: (n, B, T, C) mixes, and x[:, -1]."""
    x = np.asarray(x, np.float64)
    prev = np.zeros_like(x[:, :1]) if state is None else np.asarray(state, np.float64)[:, None]
    shifted = np.concatenate([prev, x[:, :-1]], axis=1)
    m = np.asarray(mix, np.float64)[:, None, None, :]
    return x[None] * m + shifted[None] * (1.0 - m), x[:, -1]
