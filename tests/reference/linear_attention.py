"""float64 reference of tfcore.functional.linear_attention: the recurrence as the issue states
it, one step at a time, short enough to check by eye."""

from __future__ import annotations

import numpy as np


def feature_map(x, name):
    """phi: None (identity), "elu+1" or "relu"."""
    if name is None:
        return x
    if name == "elu+1":
        return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))
    if name == "relu":
        return np.maximum(x, 0.0)
    raise ValueError(name)


def linear_attention(
    q,
    k,
    v,
    *,
    decay=None,
    gate=None,
    feature_map_name=None,
    normalize=False,
    scale=None,
    initial_state=None,
    initial_z=None,
):
    """q, k (B, H, L, Dk), v (B, H, L, Dv) -> o (B, H, L, Dv), final S (B, H, Dk, Dv), final z.

    S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t
    z_t = a_t * z_{t-1} + phi(k_t)
    o_t = scale * phi(q_t) S_t   [/ (scale * phi(q_t) . z_t)]
    """
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    B, H, L, Dk = q.shape
    Dv = v.shape[-1]
    scale = Dk**-0.5 if scale is None else scale
    q, k = feature_map(q, feature_map_name), feature_map(k, feature_map_name)
    S = np.zeros((B, H, Dk, Dv)) if initial_state is None else np.array(initial_state, np.float64)
    z = np.zeros((B, H, Dk)) if initial_z is None else np.array(initial_z, np.float64)
    o = np.zeros((B, H, L, Dv))
    for t in range(L):
        if gate is not None:
            a = np.exp(np.asarray(gate, np.float64)[:, :, t])  # (B, H, Dk)
        elif decay is not None:
            a = np.broadcast_to(np.asarray(decay, np.float64)[None, :, None], (B, H, Dk))
        else:
            a = np.ones((B, H, Dk))
        S = a[..., None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        z = a * z + k[:, :, t]
        o[:, :, t] = scale * np.einsum("bhd,bhde->bhe", q[:, :, t], S)
        if normalize:
            o[:, :, t] /= scale * np.einsum("bhd,bhd->bh", q[:, :, t], z)[..., None]
    return o, S, z


def parallel_weights(q, k, *, decay=None, gate=None, feature_map_name=None, scale=None):
    """(B, H, L, L) weights W of the parallel form, o = W v (no initial state, no
    normalization): W[i, j] = scale * sum_c phi(q_i)_c phi(k_j)_c prod_{t=j+1..i} a_t,c, j <= i."""
    q, k = (feature_map(np.asarray(x, np.float64), feature_map_name) for x in (q, k))
    B, H, L, Dk = q.shape
    scale = Dk**-0.5 if scale is None else scale
    if gate is not None:
        logs = np.asarray(gate, np.float64)
    elif decay is not None:
        logs = np.broadcast_to(np.log(np.asarray(decay, np.float64))[None, :, None, None], (B, H, L, Dk))
    else:
        logs = np.zeros((B, H, L, Dk))
    cum = np.cumsum(logs, axis=2)  # (B, H, L, Dk)
    diff = cum[:, :, :, None, :] - cum[:, :, None, :, :]  # (B, H, i, j, Dk) = sum_{j<t<=i}
    causal = np.tril(np.ones((L, L), bool))
    dec = np.exp(np.where(causal[None, None, :, :, None], diff, -np.inf))
    return scale * np.einsum("bhic,bhjc,bhijc->bhij", q, k, dec)
