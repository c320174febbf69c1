"""BLOOM: BloomModel and BloomForCausalLM from Hugging Face checkpoints.

No position embeddings: every attention layer adds ALiBi, ``slope[h] * (key - query)``,
computed inside the attention kernel (MultiHeadAttention(alibi=True); HF adds
``slope[h] * key_position`` with positions counted over the attention mask, which gives the
same softmax whenever padding is a prefix or a suffix of each row, because the two differ
by a constant per query row). The embeddings have their own LayerNorm; the fused
query_key_value is stored per head as [H, 3, D] and reordered once at load into the
[q heads | k heads | v heads] rows MultiHeadAttention fuses; bloom_gelu is the tanh GELU;
the LM head is tied to word_embeddings.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import DecoderLM, DecoderModel, qkv_heads_to_blocks
from .registry import register

__all__ = ["BloomForCausalLM", "BloomModel"]


def _config_int(cfg: Config, *names: str) -> int:
    """The first of several HF spellings of a size (BLOOM configs use n_embed / hidden_size,
    n_head / num_attention_heads, n_layer / num_hidden_layers)."""
    for name in names:
        if cfg.get(name) is not None:
            return cfg.require(name)
    raise CheckpointError(f"config.json: needs one of {', '.join(map(repr, names))}")


class _ResidualAfterNormBlock:
    """A BLOOM layer with apply_residual_connection_post_layernorm=True (the residual is the
    norm's output, not its input): ``n = ln1(x); h = n + attn(n); m = ln2(h); y = m + mlp(m)``.
    Same call as TransformerBlock; the residual adds stay fused into the output GEMMs."""

    def __init__(self, attention, feed_forward, norm1, norm2):
        self.attention, self.feed_forward, self.norm1, self.norm2 = attention, feed_forward, norm1, norm2

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        *,
        output_attentions: bool = False,
        past_key_values=None,
        layer_idx: Optional[int] = None,
    ):
        n = self.norm1(hidden_states)
        kw = dict(past_key_values=past_key_values, layer_idx=layer_idx) if past_key_values is not None else {}
        out = self.attention(n, attention_mask, residual=n, output_attentions=output_attentions, **kw)
        h, weights = out if output_attentions else (out, None)
        m = self.norm2(h)
        y = self.feed_forward(m, m)
        return (y, weights) if output_attentions else y


@register("base")
class BloomModel(DecoderModel):
    """``transformers.BloomModel``: the final hidden states (no LM head, no generate())."""

    model_types = ("bloom",)
    base_prefixes = ("", "transformer.")

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C = _config_int(cfg, "hidden_size", "n_embed")
        H = _config_int(cfg, "n_head", "num_attention_heads")
        L = _config_int(cfg, "n_layer", "num_hidden_layers")
        V = cfg.require("vocab_size")
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        if C % H:
            raise CheckpointError(f"config.json: hidden_size={C} is not divisible by n_head={H}")
        D = C // H
        post_norm_residual = bool(cfg.get("apply_residual_connection_post_layernorm", False))
        # pretraining_tp / slow_but_exact only split the dense GEMMs into slices: same math
        self.vocab_size, self.hidden_size = V, C
        self.word_embeddings = _C.Embedding(w.get("word_embeddings.weight", (V, C)))
        self.word_embeddings_layernorm = _C.LayerNorm(
            w.get("word_embeddings_layernorm.weight", (C,)),
            w.get("word_embeddings_layernorm.bias", (C,)),
            eps=eps,
        )
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(f"h.{i}.{key}", shape, matrix=len(shape) == 2)

            attn = _C.MultiHeadAttention(
                C,
                H,
                qkv_weight=qkv_heads_to_blocks(g("self_attention.query_key_value.weight", 3 * C, C), H, D),
                qkv_bias=qkv_heads_to_blocks(g("self_attention.query_key_value.bias", 3 * C), H, D),
                o_weight=g("self_attention.dense.weight", C, C),
                o_bias=g("self_attention.dense.bias", C),
                is_causal=True,
                alibi=True,
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("mlp.dense_h_to_4h.weight", 4 * C, C),
                g("mlp.dense_4h_to_h.weight", C, 4 * C),
                up_bias=g("mlp.dense_h_to_4h.bias", 4 * C),
                down_bias=g("mlp.dense_4h_to_h.bias", C),
                activation="gelu_tanh",
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(g("input_layernorm.weight", C), g("input_layernorm.bias", C), eps=eps)
            n2 = _C.LayerNorm(
                g("post_attention_layernorm.weight", C), g("post_attention_layernorm.bias", C), eps=eps
            )
            if post_norm_residual:
                self.layers.append(_ResidualAfterNormBlock(attn, ffn, n1, n2))
            else:
                self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
            w.release()
        self.final_norm = _C.LayerNorm(w.get("ln_f.weight", (C,)), w.get("ln_f.bias", (C,)), eps=eps)

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Normalized input embeddings of ids (B, T): (B, T, C) float32.

        word_embeddings then word_embeddings_layernorm; positions are unused (ALiBi is
        applied inside attention)."""
        return self.word_embeddings_layernorm(self.word_embeddings(ids))


@register("causal-lm")
class BloomForCausalLM(DecoderLM):
    """``transformers.BloomForCausalLM``: a BloomModel (``model.transformer``), the LM head
    tied to its word embeddings, KV cache, generate()."""

    model_types = ("bloom",)
    base_prefixes = ("transformer.", "")
    base_model_class = BloomModel
    base_model_prefix = "transformer"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.lm_head = self.tied_lm_head(config, weights, self.transformer.word_embeddings.weight)
