"""float64 NumPy reference of flash-linear-attention's GLAForCausalLM (model_type "gla", no
short conv, no GQA, swish output gate), from the paper's recurrence and fla's module
structure: one token at a time."""

from __future__ import annotations

import numpy as np

from reference.retnet import rms, swish


def gla_logits(cfg, w, ids):
    """Logits (B, T, V) of the token ids (B, T); w maps checkpoint names to arrays."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    C, H, L = cfg["hidden_size"], cfg["num_heads"], cfg["num_hidden_layers"]
    eps = cfg.get("norm_eps", 1e-6)
    Kd, Vd = int(C * cfg.get("expand_k", 0.5)), int(C * cfg.get("expand_v", 1.0))
    dk, dv = Kd // H, Vd // H
    B, T = ids.shape
    h = w["model.embeddings.weight"][ids]
    for i in range(L):
        p = lambda n: w[f"model.layers.{i}.{n}"]  # noqa: E731
        x = rms(h, p("attn_norm.weight"), eps)
        S = np.zeros((B, H, dk, dv))
        out = np.zeros((B, T, H, dv))
        for t in range(T):
            q = (x[:, t] @ p("attn.q_proj.weight").T).reshape(B, H, dk)
            k = (x[:, t] @ p("attn.k_proj.weight").T).reshape(B, H, dk)
            v = (x[:, t] @ p("attn.v_proj.weight").T).reshape(B, H, dv)
            logit = x[:, t] @ p("attn.gk_proj.0.weight").T @ p("attn.gk_proj.1.weight").T + p(
                "attn.gk_proj.1.bias"
            )
            a = (1.0 / (1.0 + np.exp(-logit))) ** (1.0 / 16.0)  # exp(logsigmoid / 16)
            S = a.reshape(B, H, dk)[..., None] * S + k[..., :, None] * v[..., None, :]
            out[:, t] = dk**-0.5 * np.einsum("bhd,bhde->bhe", q, S)
        g = (x @ p("attn.g_proj.weight").T).reshape(B, T, H, dv)
        o = rms(out, p("attn.g_norm_swish_gate.weight"), eps) * swish(g)
        h = h + o.reshape(B, T, Vd) @ p("attn.o_proj.weight").T
        x = rms(h, p("mlp_norm.weight"), eps)
        gate, up = x @ p("mlp.gate_proj.weight").T, x @ p("mlp.up_proj.weight").T
        h = h + (swish(gate) * up) @ p("mlp.down_proj.weight").T
    h = rms(h, w["model.norm.weight"], eps)
    return h @ w["lm_head.weight"].T
