"""GPT-NeoX (Pythia, GPT-NeoX-20B): GPTNeoXModel and GPTNeoXForCausalLM.

LayerNorms with biases, a fused ``query_key_value`` stored per head as [H, 3, D] (reordered
once at load into [q heads | k heads | v heads]), rotary embedding on the first
``partial_rotary_factor`` (older configs: ``rotary_pct``) of each head, half-split like
Llama, and by default the parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))``
(``use_parallel_residual=False``: the usual sequential pre-norm layer). The LM head is
``embed_out``, untied unless the config ties it.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..functional import rope_inv_freq
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import (
    DecoderLM,
    DecoderModel,
    ParallelResidualBlock,
    qkv_heads_to_blocks,
    rope_settings,
    rotary_dim,
)
from .registry import register

__all__ = ["GPTNeoXForCausalLM", "GPTNeoXModel"]


def rope_theta(cfg: Config) -> float:
    """rope_parameters' rope_theta (v5 configs) or GPT-NeoX's older rotary_emb_base."""
    params = cfg.get("rope_parameters")
    if not (isinstance(params, dict) and "rope_theta" in params) and cfg.get("rotary_emb_base") is not None:
        return float(cfg.get("rotary_emb_base"))
    return rope_settings(cfg)[0]


@register("base")
class GPTNeoXModel(DecoderModel):
    """``transformers.GPTNeoXModel``: the final hidden states (no LM head, no generate())."""

    model_types = ("gpt_neox",)
    base_prefixes = ("", "gpt_neox.")
    rotary = True

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H, L = (
            cfg.require("hidden_size"),
            cfg.require("num_attention_heads"),
            cfg.require("num_hidden_layers"),
        )
        F, V = cfg.require("intermediate_size"), cfg.require("vocab_size")
        if C % H:
            raise CheckpointError(f"config.json: hidden_size={C} is not divisible by num_attention_heads={H}")
        D = C // H
        eps = float(cfg.get("layer_norm_eps", 1e-5))
        act = cfg.get("hidden_act", "gelu")
        parallel = bool(cfg.get("use_parallel_residual", True))
        _, scaling = rope_settings(cfg)
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) not in ("default", "linear"):
            raise CheckpointError(f"config.json: GPT-NeoX rope scaling {scaling!r} is not supported")
        rd = rotary_dim(cfg, D)
        if rd < 2 or rd % 2:
            raise CheckpointError(
                f"config.json: partial rotary gives {rd} rotary dims of head_dim={D} (needs an even number >= 2)"
            )
        inv_freq = rope_inv_freq(D, rope_theta(cfg), rotary_dim=rd, scaling=scaling)
        self.vocab_size, self.hidden_size = V, C
        self.embed_in = _C.Embedding(w.get("embed_in.weight", (V, C)))
        for i in w.layer_range(L):

            def g(key, *shape, optional=False):
                return w.get(f"layers.{i}.{key}", shape, optional=optional, matrix=len(shape) == 2)

            qkv_b = g("attention.query_key_value.bias", 3 * C, optional=True)
            attn = _C.MultiHeadAttention(
                C,
                H,
                qkv_weight=qkv_heads_to_blocks(g("attention.query_key_value.weight", 3 * C, C), H, D),
                qkv_bias=None if qkv_b is None else qkv_heads_to_blocks(qkv_b, H, D),
                o_weight=g("attention.dense.weight", C, C),
                o_bias=g("attention.dense.bias", C, optional=True),
                is_causal=True,
                rope_inv_freq=inv_freq,
                rotary_dim=rd,
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
            n1 = _C.LayerNorm(g("input_layernorm.weight", C), g("input_layernorm.bias", C), eps=eps)
            n2 = _C.LayerNorm(
                g("post_attention_layernorm.weight", C), g("post_attention_layernorm.bias", C), eps=eps
            )
            if parallel:
                self.layers.append(ParallelResidualBlock(attn, ffn, n1, n2))
            else:
                self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
            w.release()
        self.final_norm = _C.LayerNorm(
            w.get("final_layer_norm.weight", (C,)), w.get("final_layer_norm.bias", (C,)), eps=eps
        )

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Input embeddings of ids (B, T): (B, T, C) float32 (rotary positions act in attention)."""
        return self.embed_in(ids)


@register("causal-lm")
class GPTNeoXForCausalLM(DecoderLM):
    """``transformers.GPTNeoXForCausalLM``: a GPTNeoXModel (``model.gpt_neox``), the LM head
    ``embed_out`` (tied to embed_in only when the config says so), KV cache, generate()."""

    model_types = ("gpt_neox",)
    base_prefixes = ("gpt_neox.", "")
    base_model_class = GPTNeoXModel
    base_model_prefix = "gpt_neox"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        V, C = self.vocab_size, self.hidden_size
        head = weights.get("embed_out.weight", (V, C), optional=True, matrix=True)
        if config.get("tie_word_embeddings", False) or head is None:
            if head is None and not config.get("tie_word_embeddings", False):
                raise CheckpointError("checkpoint has no embed_out.weight and tie_word_embeddings is false")
            head = self.gpt_neox.embed_in.weight
        self.lm_head = _C.Linear(head, dtype=weights.dtype)
