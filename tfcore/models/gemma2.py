"""Gemma 2 decoders: Gemma2Model / Gemma2ForCausalLM.

Llama-shaped (GQA, rotary, gated MLP) with Gemma 2's changes, each where HF puts it:

- embeddings scaled by ``sqrt(hidden_size)`` (a float32 constant, as HF's ``embed_scale``);
- RMSNorms scale by ``1 + weight`` (the checkpoint stores the offset from 1);
- four norms per layer ("sandwich"): ``h = x + post_attention_layernorm(attn(
  input_layernorm(x)))``, ``y = h + post_feedforward_layernorm(mlp(
  pre_feedforward_layernorm(h)))``;
- GeGLU MLP (``hidden_activation`` gelu with the tanh approximation);
- attention scale ``query_pre_attn_scalar ** -0.5`` instead of ``head_dim ** -0.5``, and
  ``head_dim`` independent of ``hidden_size / num_attention_heads``;
- attention logit soft-capping ``c tanh(s / c)`` (``attn_logit_softcapping``) inside the
  attention kernel, before the mask;
- sliding-window attention on the layers ``layer_types`` marks ``"sliding_attention"``
  (HF's default: every even layer), full attention on the others;
- final logit soft-capping (``final_logit_softcapping``) on the LM head's output;
- tied LM head by default.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, Weights
from .llama import LlamaForCausalLM, LlamaModel
from .registry import register

__all__ = ["Gemma2ForCausalLM", "Gemma2Model"]


class SandwichNormBlock:
    """A decoder layer with a norm before and after each sublayer (Gemma 2)::

        h = x + post_attention_norm(attention(input_norm(x)))
        y = h + post_feedforward_norm(feed_forward(pre_feedforward_norm(h)))

    Same call as TransformerBlock (mask, position_ids, cache, output_attentions)."""

    def __init__(self, attention, feed_forward, input_norm, post_attention_norm, pre_ffn_norm, post_ffn_norm):
        self.attention, self.feed_forward = attention, feed_forward
        self.input_norm, self.post_attention_norm = input_norm, post_attention_norm
        self.pre_ffn_norm, self.post_ffn_norm = pre_ffn_norm, post_ffn_norm

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        *,
        position_ids=None,
        output_attentions: bool = False,
        past_key_values=None,
        layer_idx: Optional[int] = None,
    ):
        kw = {} if position_ids is None else {"position_ids": position_ids}
        if past_key_values is not None:
            kw.update(past_key_values=past_key_values, layer_idx=layer_idx)
        out = self.attention(
            self.input_norm(hidden_states), attention_mask, output_attentions=output_attentions, **kw
        )
        a, weights = out if output_attentions else (out, None)
        h = hidden_states + self.post_attention_norm(a)
        y = h + self.post_ffn_norm(self.feed_forward(self.pre_ffn_norm(h)))
        return (y, weights) if output_attentions else y


def _softcap(cfg: Config, key: str) -> Optional[float]:
    c = cfg.get(key)
    if c is None:
        return None
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < float("inf"):
        raise CheckpointError(f"config.json: {key} must be a positive number or null, got {c!r}")
    return float(c)


@register("base")
class Gemma2Model(LlamaModel):
    """``transformers.Gemma2Model``: the final hidden states (no LM head, no generate())."""

    model_types = ("gemma2",)

    def __init__(self, config: Config, weights: Weights):
        C = config.require("hidden_size")
        # HF multiplies by a float32 tensor of sqrt(hidden_size)
        self.embed_scale = np.float32(np.sqrt(np.float64(C)))
        super().__init__(config, weights)

    def block(self, g, C: int, attn, ffn):
        return SandwichNormBlock(
            attn,
            ffn,
            self.rms_norm(g("input_layernorm.weight", C)),
            self.rms_norm(g("post_attention_layernorm.weight", C)),
            self.rms_norm(g("pre_feedforward_layernorm.weight", C)),
            self.rms_norm(g("post_feedforward_layernorm.weight", C)),
        )

    def rms_norm(self, weight: np.ndarray):
        # Gemma's RMSNorm multiplies by (1 + weight), computed in float32 as HF does
        return _C.RMSNorm(np.float32(1.0) + weight.astype(np.float32), eps=self.eps)

    def attention_options(self, cfg: Config) -> dict:
        scalar = cfg.get("query_pre_attn_scalar", 256)
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float)) or not scalar > 0:
            raise CheckpointError(
                f"config.json: query_pre_attn_scalar must be a positive number, got {scalar!r}"
            )
        # HF: scaling = query_pre_attn_scalar ** -0.5 (a Python float, rounded to float32 by torch)
        return {"scale": float(scalar) ** -0.5, "softcap": _softcap(cfg, "attn_logit_softcapping")}

    def layer_window(self, cfg: Config, i: int):
        window = cfg.get("sliding_window")
        types = cfg.get("layer_types")
        if types is None:  # HF's default: sliding on even layers
            types = ["sliding_attention" if (j + 1) % 2 else "full_attention" for j in range(i + 1)]
        if not isinstance(types, list) or i >= len(types):
            raise CheckpointError(f"config.json: layer_types must list one type per layer, got {types!r}")
        return window if types[i] == "sliding_attention" else None

    def feed_forward(self, cfg: Config, w: Weights, i: int):
        C, F = cfg.require("hidden_size"), cfg.require("intermediate_size")

        def g(key, *shape, optional=False):
            return w.get(f"layers.{i}.{key}", shape, optional=optional, matrix=len(shape) == 2)

        act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
        return _C.FeedForward(**self.mlp_weights(g, C, F), activation=act, dtype=w.dtype)

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return self.embed_tokens(ids) * self.embed_scale


@register("causal-lm")
class Gemma2ForCausalLM(LlamaForCausalLM):
    """``transformers.Gemma2ForCausalLM``: a Gemma2Model (``model.model``), the LM head (tied
    by default) with final logit soft-capping, KV cache, generate()."""

    model_types = ("gemma2",)
    base_model_class = Gemma2Model

    def __init__(self, config: Config, weights: Weights):
        if config.get("tie_word_embeddings") is None:
            config = Config({**config.to_dict(), "tie_word_embeddings": True})
        super().__init__(config, weights)
        self.final_logit_softcapping = _softcap(config, "final_logit_softcapping")

    def forward(self, *args, **kwargs) -> ModelOutput:
        """As LlamaForCausalLM.forward, then logits = c tanh(logits / c) in float32 (HF's
        final_logit_softcapping c)."""
        out = super().forward(*args, **kwargs)
        c = self.final_logit_softcapping
        if c is not None:
            cap = np.float32(c)
            out["logits"] = np.tanh(out["logits"] / cap) * cap
        return out
