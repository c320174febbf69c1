"""OPT: OPTModel and OPTForCausalLM from Hugging Face checkpoints.

Learned positions counted over the attention mask with OPT's offset of 2, optional
project_in/project_out when word_embed_proj_dim differs from hidden_size, pre-norm
(do_layer_norm_before, most sizes) or post-norm (opt-350m), LM head tied to the embeddings.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import DecoderLM, DecoderModel
from .registry import register

__all__ = ["OPTForCausalLM", "OPTModel"]

POSITION_OFFSET = 2


@register("base")
class OPTModel(DecoderModel):
    """``transformers.OPTModel``: the final hidden states (no LM head, no generate()). HF's
    OPTModel keeps its layers under ``decoder.``; tfcore's holds them directly."""

    model_types = ("opt",)
    base_prefixes = ("decoder.", "model.decoder.")

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H, L = (
            cfg.require("hidden_size"),
            cfg.require("num_attention_heads"),
            cfg.require("num_hidden_layers"),
        )
        F, V, P = cfg.require("ffn_dim"), cfg.require("vocab_size"), cfg.require("max_position_embeddings")
        E = cfg.get("word_embed_proj_dim") or C
        pre_norm = bool(cfg.get("do_layer_norm_before", True))
        bias = bool(cfg.get("enable_bias", True))
        act = cfg.get("activation_function", "relu")
        if C % H:
            raise CheckpointError(f"config.json: hidden_size={C} is not divisible by num_attention_heads={H}")
        if not cfg.get("layer_norm_elementwise_affine", True):
            raise CheckpointError("OPT without elementwise-affine LayerNorm is not supported")
        self.vocab_size, self.hidden_size, self.max_positions = V, C, P
        p = ""
        self.embed_tokens = _C.Embedding(w.get(p + "embed_tokens.weight", (V, E)))
        self.embed_positions = w.get(p + "embed_positions.weight", (P + POSITION_OFFSET, C))
        self.project_in = _C.Linear(w.get(p + "project_in.weight", (C, E)), dtype=w.dtype) if E != C else None
        self.project_out = (
            _C.Linear(w.get(p + "project_out.weight", (E, C)), dtype=w.dtype) if E != C else None
        )
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(
                    f"{p}layers.{i}.{key}",
                    shape,
                    optional=not bias and key.endswith(".bias"),
                    matrix=len(shape) == 2,
                )

            attn = _C.MultiHeadAttention(
                C,
                H,
                q_weight=g("self_attn.q_proj.weight", C, C),
                q_bias=g("self_attn.q_proj.bias", C),
                k_weight=g("self_attn.k_proj.weight", C, C),
                k_bias=g("self_attn.k_proj.bias", C),
                v_weight=g("self_attn.v_proj.weight", C, C),
                v_bias=g("self_attn.v_proj.bias", C),
                o_weight=g("self_attn.out_proj.weight", C, C),
                o_bias=g("self_attn.out_proj.bias", C),
                is_causal=True,
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("fc1.weight", F, C),
                g("fc2.weight", C, F),
                up_bias=g("fc1.bias", F),
                down_bias=g("fc2.bias", C),
                activation=act,
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(g("self_attn_layer_norm.weight", C), g("self_attn_layer_norm.bias", C))
            n2 = _C.LayerNorm(g("final_layer_norm.weight", C), g("final_layer_norm.bias", C))
            self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=pre_norm))
            w.release()
        if pre_norm and w.has(p + "final_layer_norm.weight"):
            self.final_layer_norm = _C.LayerNorm(
                w.get(p + "final_layer_norm.weight", (C,)), w.get(p + "final_layer_norm.bias", (C,))
            )
        else:
            self.final_layer_norm = None

    def final_norm(self, h: np.ndarray) -> np.ndarray:
        """The final LayerNorm (OPT-350m has none: then identity) and project_out."""
        if self.final_layer_norm is not None:
            h = self.final_layer_norm(h)
        return self.project_out(h) if self.project_out is not None else h

    def default_positions(self, mask: np.ndarray, past: int, T: int) -> np.ndarray:
        """OPT counts positions over the attention mask (its learned positions start at 2)."""
        # OPT counts positions over the attention mask (left padding shifts them)
        return (np.cumsum(mask, axis=1) * mask - 1)[:, past:].astype(np.int64)

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Input embeddings of ids (B, T) at positions (B, T): (B, T, C) float32."""
        if positions.max() >= self.max_positions:
            raise _C.TfcoreValueError(
                f"positions reach {positions.max()}, beyond max_position_embeddings={self.max_positions}"
            )
        h = self.embed_tokens(ids)
        if self.project_in is not None:
            h = self.project_in(h)
        h += self.embed_positions[positions + POSITION_OFFSET]
        return h


@register("causal-lm")
class OPTForCausalLM(DecoderLM):
    """``transformers.OPTForCausalLM``: an OPTModel (``model.model``) and the LM head (tied
    to the token embedding unless the checkpoint stores lm_head.weight), generate()."""

    model_types = ("opt",)
    base_prefixes = ("model.decoder.", "decoder.", "")
    base_model_class = OPTModel
    base_model_prefix = "model"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        emb = self.model.embed_tokens.weight
        head = weights.get("lm_head.weight", emb.shape, optional=True, matrix=True)
        self.lm_head = _C.Linear(head if head is not None else emb, dtype=weights.dtype)
