"""Gated Linear Attention (Yang et al. 2024) in flash-linear-attention's Hugging Face form:
``GLAForCausalLM`` with fla's ``model_type: "gla"`` config keys and checkpoint names.

The block is RetNet's (pre-norm, SwiGLU MLP, fla's fused RMSNorm * swish output gate); the
token mixer replaces RetNet's fixed per-head decay and rotary positions with data-dependent
per-channel decays from a low-rank projection:
    gk = logsigmoid(x W_down^T W_up^T + b) / 16    (gk_proj.0, gk_proj.1; <= 0)
    S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t,  o_t = Dk^-0.5 q_t S_t
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .registry import register
from .retnet import MultiScaleRetention, RetNetForCausalLM

__all__ = ["GLAForCausalLM", "GatedLinearAttention"]

GATE_LOGIT_NORMALIZER = 16.0  # fla's GatedLinearAttention default (not in its config)


class GatedLinearAttention(MultiScaleRetention):
    """fla's ``GatedLinearAttention`` layer (no short convolution, no GQA, fused swish output
    gate): RetNet's gated heads with data-dependent per-channel decays instead of rotary
    positions and fixed gammas. Calls take (B, T, hidden) float32."""

    def __init__(
        self,
        hidden_size,
        num_heads,
        *,
        q_weight,
        k_weight,
        v_weight,
        g_weight,
        o_weight,
        gk_down_weight,
        gk_up_weight,
        gk_up_bias,
        norm_weight,
        norm_eps=1e-6,
        clamp_min=None,
        dtype="float32",
    ):
        self.init_heads(
            hidden_size,
            num_heads,
            q_weight,
            k_weight,
            v_weight,
            g_weight,
            o_weight,
            norm_weight,
            norm_eps,
            dtype,
        )
        self.gk_down = _C.Linear(gk_down_weight, dtype=dtype)
        self.gk_up = _C.Linear(gk_up_weight, gk_up_bias, dtype=dtype)
        self.clamp_min = clamp_min

    def queries_keys(self, x, positions):
        """q, k (no position encoding) and the log-space gate (B, T, H, head_k_dim):
        logsigmoid of the low-rank projection / 16, clamped below at clamp_min if set."""
        B, T, _ = x.shape
        H, dk = self.num_heads, self.head_k_dim
        gk = -np.logaddexp(0.0, -self.gk_up(self.gk_down(x))) / GATE_LOGIT_NORMALIZER  # logsigmoid
        if self.clamp_min is not None:
            gk = np.maximum(gk, self.clamp_min)
        q = self.q_proj(x).reshape(B, T, H, dk)
        k = self.k_proj(x).reshape(B, T, H, dk)
        return q, k, {"gate": gk.reshape(B, T, H, dk)}


@register("causal-lm")
class GLAForCausalLM(RetNetForCausalLM):
    """flash-linear-attention's ``GLAForCausalLM``: ``model.embeddings``, ``model.layers.{i}``
    (attn_norm, attn = GatedLinearAttention, mlp_norm, mlp = SwiGLU), ``model.norm``,
    ``lm_head``. generate() decodes with a tfcore.RecurrentState (constant memory)."""

    model_types = ("gla",)
    default_expand_k, default_expand_v = 0.5, 1.0  # fla's GLAConfig defaults

    def unsupported(self, cfg: Config):
        return (
            ("use_gk", cfg.get("use_gk", True)),
            ("use_gv", not cfg.get("use_gv", False)),
        )

    def build_attention(self, cfg: Config, g, C: int, H: int, Kd: int, Vd: int, eps: float, dtype: str):
        down = g("attn.gk_proj.0.weight")
        if down.ndim != 2 or down.shape[1] != C:
            raise CheckpointError(
                f"attn.gk_proj.0.weight has shape {down.shape}, expected (gate_low_rank_dim, {C})"
            )
        r = down.shape[0]
        clamp = cfg.get("clamp_min")
        return GatedLinearAttention(
            C,
            H,
            q_weight=g("attn.q_proj.weight", Kd, C),
            k_weight=g("attn.k_proj.weight", Kd, C),
            v_weight=g("attn.v_proj.weight", Vd, C),
            g_weight=g("attn.g_proj.weight", Vd, C),
            o_weight=g("attn.o_proj.weight", C, Vd),
            gk_down_weight=down,
            gk_up_weight=g("attn.gk_proj.1.weight", Kd, r),
            gk_up_bias=g("attn.gk_proj.1.bias", Kd),
            norm_weight=g("attn.g_norm_swish_gate.weight", Vd // H),
            norm_eps=eps,
            clamp_min=None if clamp is None else float(clamp),
            dtype=dtype,
        )
