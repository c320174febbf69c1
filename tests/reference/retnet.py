"""float64 NumPy reference of flash-linear-attention's RetNetForCausalLM (model_type "retnet",
no short conv, no GQA, swish output gate), written from the paper's recurrence and fla's
module structure: one token at a time, short enough to check by eye."""

from __future__ import annotations

import numpy as np


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def swish(x):
    return x / (1.0 + np.exp(-x))


def rotary(x, pos, theta=10000.0):
    """x (..., D) at integer position pos: Llama's half-split rotation."""
    D = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = pos * inv
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def retnet_logits(cfg, w, ids):
    """Logits (B, T, V) of the token ids (B, T); w maps checkpoint names to arrays."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    C, H, L = cfg["hidden_size"], cfg["num_heads"], cfg["num_hidden_layers"]
    eps = cfg.get("norm_eps", 1e-6)
    Kd, Vd = int(C * cfg.get("expand_k", 1.0)), int(C * cfg.get("expand_v", 2.0))
    dk, dv = Kd // H, Vd // H
    gammas = 1.0 - 2.0 ** (-5.0 - np.arange(H))
    B, T = ids.shape
    h = w["model.embeddings.weight"][ids]  # (B, T, C)
    for i in range(L):
        p = lambda n: w[f"model.layers.{i}.{n}"]  # noqa: E731
        x = rms(h, p("attn_norm.weight"), eps)
        S = np.zeros((B, H, dk, dv))
        out = np.zeros((B, T, H, dv))
        for t in range(T):
            q = rotary((x[:, t] @ p("attn.q_proj.weight").T).reshape(B, H, dk), t)
            k = rotary((x[:, t] @ p("attn.k_proj.weight").T).reshape(B, H, dk), t)
            v = (x[:, t] @ p("attn.v_proj.weight").T).reshape(B, H, dv)
            S = gammas[None, :, None, None] * S + k[..., :, None] * v[..., None, :]
            out[:, t] = dk**-0.5 * np.einsum("bhd,bhde->bhe", q, S)
        g = (x @ p("attn.g_proj.weight").T).reshape(B, T, H, dv)
        o = rms(out, p("attn.g_norm_swish_gate.weight"), eps) * swish(g)
        h = h + o.reshape(B, T, Vd) @ p("attn.o_proj.weight").T
        x = rms(h, p("mlp_norm.weight"), eps)
        gate, up = x @ p("mlp.gate_proj.weight").T, x @ p("mlp.up_proj.weight").T
        h = h + (swish(gate) * up) @ p("mlp.down_proj.weight").T
    h = rms(h, w["model.norm.weight"], eps)
    return h @ w["lm_head.weight"].T
