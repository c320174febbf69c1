"""Qwen2 and Qwen3 decoders: Qwen2Model / Qwen2ForCausalLM, Qwen3Model / Qwen3ForCausalLM.

Both are Llama-shaped (RMSNorm, SwiGLU, GQA, rotary). Qwen2 adds biases to the q/k/v
projections. Qwen3 has none but normalizes each query and key head with its own RMSNorm
(q_norm / k_norm, weights of size head_dim) before the rotary embedding. Both honour
HF's sliding-window config: a window only when ``use_sliding_window`` is true, and only on
the layers ``layer_types`` marks ``"sliding_attention"`` (older configs: the layers from
``max_window_layers`` on).
"""

from __future__ import annotations

from typing import Optional

from ..config import Config
from ..safetensors import CheckpointError
from .llama import LlamaForCausalLM, LlamaModel
from .registry import register

__all__ = ["Qwen2ForCausalLM", "Qwen2Model", "Qwen3ForCausalLM", "Qwen3Model"]


def qwen_layer_window(cfg: Config, i: int) -> Optional[int]:
    """Layer i's sliding window under HF's Qwen2/Qwen3 rules (None: full attention)."""
    if not cfg.get("use_sliding_window", False):
        return None
    window = cfg.get("sliding_window")
    if window is None:
        return None
    types = cfg.get("layer_types")
    if types is None:
        return window if i >= int(cfg.get("max_window_layers", 28)) else None
    if not isinstance(types, list) or i >= len(types):
        raise CheckpointError(f"config.json: layer_types must list one type per layer, got {types!r}")
    return window if types[i] == "sliding_attention" else None


@register("base")
class Qwen2Model(LlamaModel):
    """``transformers.Qwen2Model``: the final hidden states (no LM head, no generate())."""

    model_types = ("qwen2",)

    def layer_window(self, cfg: Config, i: int):
        return qwen_layer_window(cfg, i)


@register("causal-lm")
class Qwen2ForCausalLM(LlamaForCausalLM):
    """``transformers.Qwen2ForCausalLM``: a Qwen2Model (``model.model``), the LM head (tied
    when the config says so), KV cache, generate()."""

    model_types = ("qwen2",)
    base_model_class = Qwen2Model


@register("base")
class Qwen3Model(Qwen2Model):
    """``transformers.Qwen3Model``: Qwen2's layout with per-head q/k RMSNorms before the
    rotary embedding (MultiHeadAttention's q_norm_weight / k_norm_weight)."""

    model_types = ("qwen3",)

    def attention_weights(self, g, C: int, H: int, KVH: int, D: int) -> dict:
        kw = super().attention_weights(g, C, H, KVH, D)
        kw.update(
            q_norm_weight=g("self_attn.q_norm.weight", D),
            k_norm_weight=g("self_attn.k_norm.weight", D),
            qk_norm_eps=self.eps,
        )
        return kw


@register("causal-lm")
class Qwen3ForCausalLM(LlamaForCausalLM):
    """``transformers.Qwen3ForCausalLM``: a Qwen3Model (``model.model``), the LM head (tied
    when the config says so), KV cache, generate()."""

    model_types = ("qwen3",)
    base_model_class = Qwen3Model
