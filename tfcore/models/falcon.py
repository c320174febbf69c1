"""Falcon: FalconModel and FalconForCausalLM (rotary variants: Falcon-7B/40B/180B, Falcon 2).

One fused ``query_key_value`` in one of HF's three layouts, reordered once at load into
the [q heads | k heads | v heads] rows MultiHeadAttention fuses:
``new_decoder_architecture`` (grouped per KV head: that group's queries, then its key and
value; ``num_kv_heads`` KV heads), ``multi_query`` (all queries, one key, one value), or
neither (per head [H, 3, D]). The layer is parallel (``parallel_attn``, and always with the
new architecture): ``x + attn(ln(x)) + mlp(ln(x))``, with separate ``ln_attn`` / ``ln_mlp``
when ``num_ln_in_parallel_attn`` is 2 (the new architecture's default), or sequential
pre-norm. GELU MLP without gate; LM head tied to the word embeddings by default.
ALiBi Falcons (``alibi=True``, Falcon-RW) are not supported and refused at load.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..functional import rope_inv_freq
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import DecoderLM, DecoderModel, ParallelResidualBlock, qkv_heads_to_blocks, rope_settings
from .registry import register

__all__ = ["FalconForCausalLM", "FalconModel"]


def grouped_qkv_to_blocks(a: np.ndarray, H: int, KVH: int, D: int) -> np.ndarray:
    """Falcon's new-architecture fused rows, grouped per KV head as [KVH, H/KVH + 2, D] (the
    group's queries, its key, its value), reordered to [q heads | k heads | v heads]:
    ((H + 2 KVH) D, ...) in and out (weights or bias; float32 or bfloat16 bits)."""
    rest = a.shape[1:]
    g = a.reshape((KVH, H // KVH + 2, D) + rest)
    q = g[:, :-2].reshape((H * D,) + rest)
    k = g[:, -2].reshape((KVH * D,) + rest)
    v = g[:, -1].reshape((KVH * D,) + rest)
    return np.ascontiguousarray(np.concatenate([q, k, v]))


@register("base")
class FalconModel(DecoderModel):
    """``transformers.FalconModel``: the final hidden states (no LM head, no generate())."""

    model_types = ("falcon",)
    base_prefixes = ("", "transformer.")
    rotary = True

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C = cfg.require("hidden_size")
        H, L = cfg.require("num_attention_heads"), cfg.require("num_hidden_layers")
        V = cfg.require("vocab_size")
        if cfg.get("alibi", False):
            raise CheckpointError(
                "config.json: Falcon with alibi=True is not supported (rotary Falcons only)"
            )
        if C % H:
            raise CheckpointError(f"config.json: hidden_size={C} is not divisible by num_attention_heads={H}")
        D = C // H
        new_arch = bool(cfg.get("new_decoder_architecture", False))
        multi_query = bool(cfg.get("multi_query", True))
        parallel = bool(cfg.get("parallel_attn", True))
        if new_arch and not parallel:
            raise CheckpointError(
                "config.json: new_decoder_architecture with parallel_attn=false has no layer norms in HF"
            )
        if new_arch:
            KVH = cfg.get("num_kv_heads") or H
        else:
            KVH = 1 if multi_query else H
        if not isinstance(KVH, int) or KVH <= 0 or H % KVH:
            raise CheckpointError(
                f"config.json: num_attention_heads={H} is not a multiple of num_kv_heads={KVH}"
            )
        n_ln = cfg.get("num_ln_in_parallel_attn") or (2 if new_arch else 1)
        F = cfg.get("ffn_hidden_size") or 4 * C
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        act = cfg.get("activation", "gelu")
        theta, scaling = rope_settings(cfg)
        inv_freq = rope_inv_freq(D, theta, scaling=scaling)
        W = (H + 2 * KVH) * D
        self.vocab_size, self.hidden_size = V, C
        self.word_embeddings = _C.Embedding(w.get("word_embeddings.weight", (V, C)))
        for i in w.layer_range(L):

            def g(key, *shape, optional=False):
                return w.get(f"h.{i}.{key}", shape, optional=optional, matrix=len(shape) == 2)

            def ln(name):
                return _C.LayerNorm(g(f"{name}.weight", C), g(f"{name}.bias", C, optional=True), eps=eps)

            qkv_w = g("self_attention.query_key_value.weight", W, C)
            qkv_b = g("self_attention.query_key_value.bias", W, optional=True)
            if new_arch:
                order = lambda a: grouped_qkv_to_blocks(a, H, KVH, D)  # noqa: E731
            elif multi_query:
                order = np.ascontiguousarray  # already [q heads | k | v]
            else:
                order = lambda a: qkv_heads_to_blocks(a, H, D)  # noqa: E731
            attn = _C.MultiHeadAttention(
                C,
                H,
                num_key_value_heads=KVH,
                qkv_weight=order(qkv_w),
                qkv_bias=None if qkv_b is None else order(qkv_b),
                o_weight=g("self_attention.dense.weight", C, C),
                o_bias=g("self_attention.dense.bias", C, optional=True),
                is_causal=True,
                rope_inv_freq=inv_freq,
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("mlp.dense_h_to_4h.weight", F, C),
                g("mlp.dense_4h_to_h.weight", C, F),
                up_bias=g("mlp.dense_h_to_4h.bias", F, optional=True),
                down_bias=g("mlp.dense_4h_to_h.bias", C, optional=True),
                activation=act,
                dtype=w.dtype,
            )
            if not parallel:
                block = _C.TransformerBlock(
                    attn, ffn, ln("input_layernorm"), ln("post_attention_layernorm"), norm_first=True
                )
            elif n_ln == 2:
                block = ParallelResidualBlock(attn, ffn, ln("ln_attn"), ln("ln_mlp"))
            else:
                block = ParallelResidualBlock(attn, ffn, ln("input_layernorm"))
            self.layers.append(block)
            w.release()
        self.final_norm = _C.LayerNorm(
            w.get("ln_f.weight", (C,)), w.get("ln_f.bias", (C,), optional=True), eps=eps
        )

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Input embeddings of ids (B, T): (B, T, C) float32 (rotary positions act in attention)."""
        return self.word_embeddings(ids)


@register("causal-lm")
class FalconForCausalLM(DecoderLM):
    """``transformers.FalconForCausalLM``: a FalconModel (``model.transformer``), the LM head
    tied to its word embeddings unless the config unties it, KV cache, generate()."""

    model_types = ("falcon",)
    base_prefixes = ("transformer.", "")
    base_model_class = FalconModel
    base_model_prefix = "transformer"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.lm_head = self.tied_lm_head(config, weights, self.transformer.word_embeddings.weight)
