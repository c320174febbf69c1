"""GPT-2: GPT2Model and GPT2LMHeadModel from Hugging Face checkpoints.

Conv1D weights are stored (in, out), so every projection is a tfcore.Linear with
transposed=True; c_attn is already the fused QKV projection; the LM head is tied to wte.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import DecoderLM, DecoderModel
from .registry import register

__all__ = ["GPT2LMHeadModel", "GPT2Model"]


@register("base")
class GPT2Model(DecoderModel):
    """``transformers.GPT2Model``: the final hidden states (no LM head, no generate())."""

    model_types = ("gpt2",)
    base_prefixes = ("", "transformer.")
    ignore_keys = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of old checkpoints

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H, L = cfg.require("n_embd"), cfg.require("n_head"), cfg.require("n_layer")
        V, P = cfg.require("vocab_size"), cfg.require("n_positions")
        F = cfg.get("n_inner") or 4 * C
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        act = cfg.get("activation_function", "gelu_new")
        if C % H:
            raise CheckpointError(f"config.json: n_embd={C} is not divisible by n_head={H}")
        # reorder_and_upcast_attn only changes torch's precision handling: same math in fp32
        self.vocab_size, self.max_positions, self.hidden_size = V, P, C
        self.wte = _C.Embedding(w.get("wte.weight", (V, C)))
        self.wpe = w.get("wpe.weight", (P, C))
        D = C // H
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(f"h.{i}.{key}", shape, matrix=len(shape) == 2)

            scale = (1.0 / np.sqrt(D)) if cfg.get("scale_attn_weights", True) else 1.0
            if cfg.get("scale_attn_by_inverse_layer_idx"):
                scale /= float(i + 1)
            attn = _C.MultiHeadAttention(
                C,
                H,
                qkv_weight=g("attn.c_attn.weight", C, 3 * C),
                qkv_bias=g("attn.c_attn.bias", 3 * C),
                o_weight=g("attn.c_proj.weight", C, C),
                o_bias=g("attn.c_proj.bias", C),
                transposed=True,
                is_causal=True,
                scale=scale,
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("mlp.c_fc.weight", C, F),
                g("mlp.c_proj.weight", F, C),
                up_bias=g("mlp.c_fc.bias", F),
                down_bias=g("mlp.c_proj.bias", C),
                activation=act,
                transposed=True,
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(g("ln_1.weight", C), g("ln_1.bias", C), eps=eps)
            n2 = _C.LayerNorm(g("ln_2.weight", C), g("ln_2.bias", C), eps=eps)
            self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
            w.release()
        self.final_norm = _C.LayerNorm(w.get("ln_f.weight", (C,)), w.get("ln_f.bias", (C,)), eps=eps)

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Input embeddings of ids (B, T) at positions (B, T): (B, T, C) float32."""
        if positions.max() >= self.max_positions or positions.min() < 0:
            raise _C.TfcoreValueError(
                f"positions reach {positions.max()}, beyond n_positions={self.max_positions}"
            )
        h = self.wte(ids)
        h += self.wpe[positions]
        return h


@register("causal-lm")
class GPT2LMHeadModel(DecoderLM):
    """``transformers.GPT2LMHeadModel``: a GPT2Model (``model.transformer``), the LM head tied
    to its token embedding, KV cache, generate()."""

    model_types = ("gpt2",)
    base_prefixes = ("transformer.", "")
    ignore_keys = GPT2Model.ignore_keys
    base_model_class = GPT2Model
    base_model_prefix = "transformer"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.lm_head = self.tied_lm_head(config, weights, self.transformer.wte.weight)
