"""float64 NumPy reference of RWKV-6 ("Finch") as flash-linear-attention's RWKV6ForCausalLM,
read from fla's config keys and checkpoint names, written per the paper's formulas (one token
at a time, no fusion):

    x = LayerNorm(h);  sx = x_{t-1} - x_t  (x_{-1} = 0)
    m_n = x + sx * (x_bias_n + tanh((x + sx * mu_x) A)_n B_n)     n in (r, w, k, v, g)
    r, k, v, g = W_r m_r, W_k m_k, W_v m_v, W_g m_g
    w_t = exp(-exp(d + tanh(m_w D1) D2))                          per channel decay in (0, 1)
    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),  S_t = diag(w_t) S_{t-1} + k_t^T v_t   per head
    h += W_o (GroupNorm_heads(o) * silu(g))
    x' = LayerNorm(h);  h += sigmoid(W_r' (x' + sx' mu_r')) * W_v' relu(W_k' (x' + sx' mu_k'))^2

wkv() is the per-head recurrence alone (checked against fla's naive_recurrent_rwkv6 by the
tests)."""

from __future__ import annotations

import numpy as np


def _d(a):
    return np.asarray(a, np.float64)


def layer_norm(x, weight, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight + bias


def wkv(r, k, v, w, u, state=None):
    """r, k, w (T, H, dk), v (T, H, dv), w the decays in (0, 1), u (H, dk); state (H, dk, dv).
    Returns o (T, H, dv) and the final state."""
    T, H, dk = r.shape
    S = np.zeros((H, dk, v.shape[-1])) if state is None else state.copy()
    o = np.empty((T, H, v.shape[-1]))
    for t in range(T):
        kv = k[t][:, :, None] * v[t][:, None, :]  # (H, dk, dv)
        o[t] = np.einsum("hk,hkv->hv", r[t], S + u[:, :, None] * kv)
        S = w[t][:, :, None] * S + kv
    return o, S


def rwkv6_logits(cfg: dict, weights: dict, ids) -> np.ndarray:
    """Logits (B, T, vocab) of fla's RWKV6ForCausalLM for ids (B, T), float64."""
    C, H, L = cfg["hidden_size"], cfg["num_heads"], cfg["num_hidden_layers"]
    Kd, Vd = int(C * cfg.get("expand_k", 0.5)), int(C * cfg.get("expand_v", 1.0))
    eps = cfg.get("norm_eps", 1e-5)
    geps = cfg.get("group_norm_eps", eps)
    W = {n: _d(a) for n, a in weights.items()}
    out = []
    for row in np.asarray(ids):
        h = W["model.embeddings.weight"][row]  # (T, C)
        T = h.shape[0]
        for i in range(L):
            p = f"model.layers.{i}."
            if i == 0 and cfg.get("norm_first", True):
                h = layer_norm(h, W[p + "pre_norm.weight"], W[p + "pre_norm.bias"], eps)
            a = p + "attn."
            x = layer_norm(h, W[p + "attn_norm.weight"], W[p + "attn_norm.bias"], eps)
            sx = np.vstack([np.zeros((1, C)), x[:-1]]) - x
            A = W[a + "x_proj.0.linear.weight"].T  # (C, 5R)
            R = A.shape[1] // 5
            lo = np.tanh((x + sx * W[a + "x_proj.0.mu"]) @ A).reshape(T, 5, R)
            Bup = W[a + "x_proj.2.weight"].reshape(C, 5, R)
            m = {
                n: x + sx * (W[a + "x_bias"][j] + lo[:, j] @ Bup[:, j].T)
                for j, n in enumerate(("r", "w", "k", "v", "g"))
            }
            r = m["r"] @ W[a + "r_proj.linear.weight"].T
            k = m["k"] @ W[a + "k_proj.linear.weight"].T
            v = m["v"] @ W[a + "v_proj.linear.weight"].T
            g = m["g"] @ W[a + "g_proj.linear.weight"].T
            lw = (
                np.tanh(m["w"] @ W[a + "w_proj.linear.lora.0.weight"].T)
                @ W[a + "w_proj.linear.lora.2.weight"].T
            )
            decay = np.exp(-np.exp(lw + W[a + "w_proj.linear.lora.2.bias"]))
            dk, dv = Kd // H, Vd // H
            o, _ = wkv(
                r.reshape(T, H, dk),
                k.reshape(T, H, dk),
                v.reshape(T, H, dv),
                decay.reshape(T, H, dk),
                W[a + "bonus"],
            )
            mu = o.mean(-1, keepdims=True)
            var = ((o - mu) ** 2).mean(-1, keepdims=True)
            o = ((o - mu) / np.sqrt(var + geps)).reshape(T, Vd) * W[a + "g_norm.weight"] + W[
                a + "g_norm.bias"
            ]
            o = o * (g / (1 + np.exp(-g)))
            h = h + o @ W[a + "o_proj.weight"].T
            f = p + "ffn."
            x = layer_norm(h, W[p + "ffn_norm.weight"], W[p + "ffn_norm.bias"], eps)
            sx = np.vstack([np.zeros((1, C)), x[:-1]]) - x
            kk = np.maximum((x + sx * W[f + "key.mu"]) @ W[f + "key.linear.weight"].T, 0) ** 2
            rr = (x + sx * W[f + "receptance.mu"]) @ W[f + "receptance.linear.weight"].T
            h = h + 1 / (1 + np.exp(-rr)) * (kk @ W[f + "value.weight"].T)
        h = layer_norm(h, W["model.norm.weight"], W["model.norm.bias"], eps)
        out.append(h @ W["lm_head.weight"].T)
    return np.stack(out)
