"""Llama-style decoders: LlamaModel / LlamaForCausalLM and MistralModel / MistralForCausalLM
(sliding window).

RMSNorm, SwiGLU (gate/up/down), GQA through num_key_value_heads, rotary embedding with
HF's rope parameters (default, linear, llama3; v5 ``rope_parameters`` or older
``rope_theta`` + ``rope_scaling``), tied or untied LM head.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..functional import rope_inv_freq
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import DecoderLM, DecoderModel, rope_settings
from .registry import register

__all__ = ["LlamaForCausalLM", "LlamaModel", "MistralForCausalLM", "MistralModel"]


@register("base")
class LlamaModel(DecoderModel):
    """``transformers.LlamaModel``: the final hidden states (no LM head, no generate())."""

    model_types = ("llama",)
    base_prefixes = ("", "model.")
    rotary = True
    sliding_window_key = None

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H, L = (
            cfg.require("hidden_size"),
            cfg.require("num_attention_heads"),
            cfg.require("num_hidden_layers"),
        )
        KVH = cfg.get("num_key_value_heads") or H
        D = cfg.get("head_dim") or C // H
        V = cfg.require("vocab_size")
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        if H % KVH:
            raise CheckpointError(
                f"config.json: num_attention_heads={H} is not a multiple of num_key_value_heads={KVH}"
            )
        rope = self.rope(cfg, D)
        self.vocab_size, self.hidden_size = V, C
        self.embed_tokens = _C.Embedding(w.get("embed_tokens.weight", (V, C)))
        for i in w.layer_range(L):

            def g(key, *shape, optional=False):
                return w.get(f"layers.{i}.{key}", shape, optional=optional, matrix=len(shape) == 2)

            attn = _C.MultiHeadAttention(
                C,
                H,
                num_key_value_heads=KVH,
                head_dim=D,
                **self.attention_weights(g, C, H, KVH, D),
                **rope,
                is_causal=True,
                sliding_window=self.layer_window(cfg, i),
                dtype=w.dtype,
                **self.attention_options(cfg),
            )
            ffn = self.feed_forward(cfg, w, i)
            self.layers.append(self.block(g, C, attn, ffn))
            w.release()
        self.final_norm = self.rms_norm(w.get("norm.weight", (C,)))

    # -- what a Llama-shaped family changes (Qwen2, Qwen3, Phi-3, Mixtral, Gemma 2 override these)
    def block(self, g, C: int, attn, ffn):
        """Layer i from its attention and MLP (g: the layer's weight getter): pre-norm
        residual blocks, input_layernorm before attention, post_attention_layernorm before
        the MLP."""
        n1 = self.rms_norm(g("input_layernorm.weight", C))
        n2 = self.rms_norm(g("post_attention_layernorm.weight", C))
        return _C.TransformerBlock(attn, ffn, n1, n2, norm_first=True)

    def rms_norm(self, weight: np.ndarray):
        """An RMSNorm of this family from its checkpoint weight (Gemma: scaled by 1 + weight)."""
        return _C.RMSNorm(weight, eps=self.eps)

    def attention_options(self, cfg: Config) -> dict:
        """Extra MultiHeadAttention arguments of the family (Gemma 2: scale, softcap)."""
        return {}

    def feed_forward(self, cfg: Config, w: Weights, i: int):
        """Layer i's MLP: a SwiGLU FeedForward from mlp_weights(); MoE families (Mixtral)
        return a MixtureOfExperts instead."""
        C, F = cfg.require("hidden_size"), cfg.require("intermediate_size")

        def g(key, *shape, optional=False):
            return w.get(f"layers.{i}.{key}", shape, optional=optional, matrix=len(shape) == 2)

        return _C.FeedForward(
            **self.mlp_weights(g, C, F), activation=cfg.get("hidden_act", "silu"), dtype=w.dtype
        )

    def rope(self, cfg: Config, D: int) -> dict:
        """MultiHeadAttention's rotary arguments (rope_inv_freq, rotary_dim, scale) for head_dim D."""
        theta, scaling = rope_settings(cfg)
        return {"rope_inv_freq": rope_inv_freq(D, theta, scaling=scaling)}

    def layer_window(self, cfg: Config, i: int):
        """The sliding attention window of layer i (None: full attention)."""
        return cfg.get(self.sliding_window_key) if self.sliding_window_key else None

    def attention_weights(self, g, C: int, H: int, KVH: int, D: int) -> dict:
        """MultiHeadAttention's weight arguments from layer getter g (q/k/v/o_proj, optional biases)."""
        return dict(
            q_weight=g("self_attn.q_proj.weight", H * D, C),
            q_bias=g("self_attn.q_proj.bias", H * D, optional=True),
            k_weight=g("self_attn.k_proj.weight", KVH * D, C),
            k_bias=g("self_attn.k_proj.bias", KVH * D, optional=True),
            v_weight=g("self_attn.v_proj.weight", KVH * D, C),
            v_bias=g("self_attn.v_proj.bias", KVH * D, optional=True),
            o_weight=g("self_attn.o_proj.weight", C, H * D),
            o_bias=g("self_attn.o_proj.bias", C, optional=True),
        )

    def mlp_weights(self, g, C: int, F: int) -> dict:
        """FeedForward's weight arguments from layer getter g (gate/up/down_proj, optional biases)."""
        return dict(
            up_weight=g("mlp.up_proj.weight", F, C),
            down_weight=g("mlp.down_proj.weight", C, F),
            gate_weight=g("mlp.gate_proj.weight", F, C),
            up_bias=g("mlp.up_proj.bias", F, optional=True),
            down_bias=g("mlp.down_proj.bias", C, optional=True),
            gate_bias=g("mlp.gate_proj.bias", F, optional=True),
        )

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Input embeddings of ids (B, T) at positions (B, T): (B, T, C) float32."""
        return self.embed_tokens(ids)


@register("causal-lm")
class LlamaForCausalLM(DecoderLM):
    """``transformers.LlamaForCausalLM``: a LlamaModel (``model.model``) and the LM head
    (tied to the token embedding when the config says so), KV cache, generate()."""

    model_types = ("llama",)
    base_prefixes = ("model.", "")
    base_model_class = LlamaModel
    base_model_prefix = "model"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        V, C = self.model.vocab_size, self.model.hidden_size
        head = weights.get("lm_head.weight", (V, C), optional=True, matrix=True)
        if head is None:
            if not config.get("tie_word_embeddings", False):
                raise CheckpointError("checkpoint has no lm_head.weight and tie_word_embeddings is false")
            head = self.model.embed_tokens.weight
        dtype = weights.dtype
        if dtype.startswith("int4") and hasattr(weights.ckpt, "int4_linear"):
            # a GGUF file read in 4 bits: a head the file does not store in 4 bits (SmolLM2's
            # tied Q8_0 embedding) runs in int8, not quantized again to 4 bits (top-1 agreement
            # with float32 drops ~8 points on SmolLM2 with an int4 head; docs/gguf.md)
            dtype = "int8"
        # (an int4 Linear already when a GGUF file's head is stored in 4 bits)
        self.lm_head = head if isinstance(head, _C.Linear) else _C.Linear(head, dtype=dtype)


@register("base")
class MistralModel(LlamaModel):
    """``transformers.MistralModel``: LlamaModel with a sliding attention window."""

    model_types = ("mistral",)
    sliding_window_key = "sliding_window"


@register("causal-lm")
class MistralForCausalLM(LlamaForCausalLM):
    """``transformers.MistralForCausalLM``: Llama with a sliding attention window."""

    model_types = ("mistral",)
    base_model_class = MistralModel
