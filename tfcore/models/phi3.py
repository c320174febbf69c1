"""Phi-3: Phi3Model and Phi3ForCausalLM.

Llama-shaped, with the q/k/v projections fused into one ``qkv_proj`` (rows [q | k | v])
and gate/up fused into ``gate_up_proj`` (rows [gate | up]); both are split once at load.
Rotary: HF's rope parameters including ``partial_rotary_factor`` and LongRoPE (``longrope``,
older ``su``/``yarn`` spellings): inverse frequencies divided by the per-dimension
``short_factor``, cos/sin multiplied by the attention factor (folded here into the attention
scale, the same product of q and k). HF switches to ``long_factor`` for a forward whose
positions pass ``original_max_position_embeddings``; tfcore does not (yet), and refuses such
positions with TfcoreValueError instead of computing something else. An optional
``sliding_window`` applies to every layer, as in HF.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .decoder import rope_settings, rotary_dim
from .llama import LlamaForCausalLM, LlamaModel
from .registry import register

__all__ = ["Phi3ForCausalLM", "Phi3Model"]


def longrope(cfg: Config, theta: float, params: dict, D: int, rd: int):
    """(inv_freq with the short factors, attention factor, original_max_position_embeddings)."""
    orig = cfg.get("original_max_position_embeddings") or params.get("original_max_position_embeddings")
    orig = orig or cfg.get("max_position_embeddings")
    short = params.get("short_factor")
    if not isinstance(orig, int) or orig <= 0:
        raise CheckpointError(f"config.json: longrope needs original_max_position_embeddings, got {orig!r}")
    if not isinstance(short, list) or len(short) != rd // 2:
        raise CheckpointError(
            f"config.json: longrope short_factor must list rotary_dim/2={rd // 2} numbers, got {short!r}"
        )
    factor = params.get("factor")
    if factor is None:
        factor = cfg.get("max_position_embeddings", orig) / orig
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    # float32 like HF: 1 / (ext * base ** (arange(0, rd, 2).float() / rd))
    shape = np.arange(0, rd, 2, dtype=np.int64).astype(np.float32) / np.float32(rd)
    ext = np.asarray(short, dtype=np.float32)
    inv = (np.float32(1.0) / (ext * (np.float32(theta) ** shape).astype(np.float32))).astype(np.float32)
    return inv, float(attention_factor), orig


@register("base")
class Phi3Model(LlamaModel):
    """``transformers.Phi3Model``: the final hidden states (no LM head, no generate())."""

    model_types = ("phi3",)
    sliding_window_key = "sliding_window"

    def rope(self, cfg: Config, D: int) -> dict:
        from ..functional import rope_inv_freq

        theta, scaling = rope_settings(cfg)
        rd = rotary_dim(cfg, D)
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
        self.rope_limit = None
        if kind in ("longrope", "su", "yarn"):
            inv, attention_factor, self.rope_limit = longrope(cfg, theta, scaling, D, rd)
            if attention_factor != 1.0 and rd != D:
                raise CheckpointError(
                    "config.json: longrope with an attention factor and partial rotary is not supported"
                )
            # cos and sin scaled by f multiply q.k by f^2 (every dim is rotated)
            return dict(rope_inv_freq=inv, rotary_dim=rd, scale=attention_factor**2 / math.sqrt(D))
        if kind != "default":
            raise CheckpointError(
                f"config.json: Phi-3 rope_type {kind!r} is not supported (default, longrope)"
            )
        return dict(rope_inv_freq=rope_inv_freq(D, theta, rotary_dim=rd), rotary_dim=rd)

    def attention_weights(self, g, C: int, H: int, KVH: int, D: int) -> dict:
        qkv = g("self_attn.qkv_proj.weight", (H + 2 * KVH) * D, C)
        return dict(qkv_weight=qkv, o_weight=g("self_attn.o_proj.weight", C, H * D))

    def mlp_weights(self, g, C: int, F: int) -> dict:
        gate_up = g("mlp.gate_up_proj.weight", 2 * F, C)
        return dict(
            gate_weight=np.ascontiguousarray(gate_up[:F]),
            up_weight=np.ascontiguousarray(gate_up[F:]),
            down_weight=g("mlp.down_proj.weight", C, F),
        )

    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Input embeddings of ids (B, T); refuses positions HF would rotate with LongRoPE's
        long factors (max(position) + 1 > original_max_position_embeddings)."""
        if self.rope_limit is not None and positions.size and int(positions.max()) + 1 > self.rope_limit:
            raise _C.TfcoreValueError(
                f"position {int(positions.max())} passes original_max_position_embeddings="
                f"{self.rope_limit}: LongRoPE's long_factor is not supported by tfcore yet"
            )
        return self.embed_tokens(ids)


@register("causal-lm")
class Phi3ForCausalLM(LlamaForCausalLM):
    """``transformers.Phi3ForCausalLM``: a Phi3Model (``model.model``), the LM head, KV cache,
    generate()."""

    model_types = ("phi3",)
    base_model_class = Phi3Model
