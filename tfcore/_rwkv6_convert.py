"""The ``rwkv`` package's RWKV-6 (RWKV-x060) ``.pth`` layout -> flash-linear-attention's
``rwkv6`` names (``tfcore convert model.pth DEST``), read with tfcore's torch-free .pth reader.

Names and shapes in (RWKV-LM's x060 training code): ``emb.weight`` (V, C), ``blocks.{i}``
with ``ln0`` (block 0), ``ln1``, ``ln2``, ``att.time_maa_{x,w,k,v,r,g}`` (1, 1, C),
``att.time_maa_w1`` (C, 5R), ``att.time_maa_w2`` (5, R, C) (blocks ordered w, k, v, r, g),
``att.time_decay`` (1, 1, A), ``att.time_decay_w1`` (C, Rg), ``att.time_decay_w2`` (Rg, A),
``att.time_faaaa`` (H, A / H), ``att.{receptance,key,value,gate}.weight`` (A, C),
``att.output.weight`` (C, A), ``att.ln_x`` (A), ``ffn.time_maa_{k,r}``, ``ffn.{key,
receptance,value}.weight``, ``ln_out``, ``head.weight``. fla orders the five ddlerp blocks
r, w, k, v, g."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ._C import TfcoreValueError

# fla's block n (r, w, k, v, g) is the rwkv package's block _PERM[n] (w, k, v, r, g)
_PERM = [3, 0, 1, 2, 4]
# the rwkv package's GroupNorm eps for ln_x (RWKV-LM: 1e-5 * head_size_divisor 8 ** 2)
GROUP_NORM_EPS = 64e-5


def is_rwkv6_pth(keys) -> bool:
    """True for an RWKV-x060 state dict (time_maa_x marks v6; v5 has time_mix_*)."""
    return "emb.weight" in keys and "blocks.0.att.time_maa_x" in keys


def convert_rwkv6(get, keys) -> Tuple[Dict[str, np.ndarray], dict]:
    """get(name) -> float32 array of the .pth tensor. Returns (fla-named tensors, config)."""
    keys = set(keys)
    if not is_rwkv6_pth(keys):
        raise TfcoreValueError("not an RWKV-6 (x060) .pth: emb.weight or blocks.0.att.time_maa_x is missing")
    L = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("blocks."))
    emb = get("emb.weight")
    V, C = emb.shape
    A = get("blocks.0.att.key.weight").shape[0]
    H = get("blocks.0.att.time_faaaa").shape[0]
    F = get("blocks.0.ffn.key.weight").shape[0]
    R = get("blocks.0.att.time_maa_w1").shape[1] // 5
    Rg = get("blocks.0.att.time_decay_w1").shape[1]
    if int(C * (A / C)) != A or A % H:
        raise TfcoreValueError(
            f"attention width {A} is not expressible as hidden {C} * expand_k over {H} heads"
        )
    out = {"model.embeddings.weight": emb}

    def vec(name, n):
        a = get(name)
        if a.size != n:
            raise TfcoreValueError(f"{name} has shape {a.shape}, expected {n} values")
        return a.reshape(n)

    for i in range(L):
        b, p = f"blocks.{i}.", f"model.layers.{i}."
        a = b + "att."
        if i == 0:
            out[p + "pre_norm.weight"] = get(b + "ln0.weight")
            out[p + "pre_norm.bias"] = get(b + "ln0.bias")
        for src, dst in (("ln1", "attn_norm"), ("ln2", "ffn_norm")):
            out[p + dst + ".weight"] = get(b + src + ".weight")
            out[p + dst + ".bias"] = get(b + src + ".bias")
        w1 = get(a + "time_maa_w1")  # (C, 5R), columns [n * R + r]
        w2 = get(a + "time_maa_w2")  # (5, R, C)
        if w1.shape != (C, 5 * R) or w2.shape != (5, R, C):
            raise TfcoreValueError(
                f"{a}time_maa_w1/w2 have shapes {w1.shape}, {w2.shape}, expected ({C}, {5 * R}), (5, {R}, {C})"
            )
        out[p + "attn.x_proj.0.mu"] = vec(a + "time_maa_x", C)
        out[p + "attn.x_proj.0.linear.weight"] = w1.T.reshape(5, R, C)[_PERM].reshape(5 * R, C)
        out[p + "attn.x_proj.2.weight"] = w2[_PERM].transpose(2, 0, 1).reshape(C, 5 * R)
        out[p + "attn.x_bias"] = np.stack([vec(a + f"time_maa_{n}", C) for n in "rwkvg"])
        for src, dst in (
            ("receptance", "r_proj"),
            ("key", "k_proj"),
            ("value", "v_proj"),
            ("gate", "g_proj"),
        ):
            out[p + f"attn.{dst}.linear.weight"] = get(a + src + ".weight")
        out[p + "attn.w_proj.linear.lora.0.weight"] = get(a + "time_decay_w1").T
        out[p + "attn.w_proj.linear.lora.2.weight"] = get(a + "time_decay_w2").T
        out[p + "attn.w_proj.linear.lora.2.bias"] = vec(a + "time_decay", A)
        out[p + "attn.bonus"] = get(a + "time_faaaa").reshape(H, A // H)
        out[p + "attn.g_norm.weight"] = get(a + "ln_x.weight")
        out[p + "attn.g_norm.bias"] = get(a + "ln_x.bias")
        out[p + "attn.o_proj.weight"] = get(a + "output.weight")
        f = b + "ffn."
        out[p + "ffn.key.mu"] = vec(f + "time_maa_k", C)
        out[p + "ffn.receptance.mu"] = vec(f + "time_maa_r", C)
        out[p + "ffn.key.linear.weight"] = get(f + "key.weight")
        out[p + "ffn.receptance.linear.weight"] = get(f + "receptance.weight")
        out[p + "ffn.value.weight"] = get(f + "value.weight")
    out["model.norm.weight"] = get("ln_out.weight")
    out["model.norm.bias"] = get("ln_out.bias")
    out["lm_head.weight"] = get("head.weight")
    config = {
        "model_type": "rwkv6",
        "architectures": ["RWKV6ForCausalLM"],
        "hidden_size": int(C),
        "num_hidden_layers": int(L),
        "num_heads": int(H),
        "vocab_size": int(V),
        "expand_k": A / C,
        "expand_v": A / C,
        "intermediate_size": int(F),
        "proj_low_rank_dim": int(R),
        "gate_low_rank_dim": int(Rg),
        "hidden_act": "sqrelu",
        "norm_first": True,
        "norm_bias": True,
        "norm_eps": 1e-5,
        "group_norm_eps": GROUP_NORM_EPS,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}, config
