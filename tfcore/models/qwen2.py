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

__all__ = ["Qwen2ForCausalLM", "Qwen2Model"]


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
