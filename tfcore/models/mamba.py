"""Mamba (Gu & Dao 2023) as Hugging Face's ``MambaForCausalLM``: ``backbone.embeddings``,
``backbone.layers.{i}`` (``norm``, ``mixer`` = MambaMixer), ``backbone.norm_f``, ``lm_head``
(tied to the embeddings unless the checkpoint has its own).

Per layer (pre-norm, residual): h += out_proj(y) with
    x, z = in_proj(RMSNorm(h))                        (the two halves of in_proj)
    x    = silu(causal_conv1d(x))                     (depthwise, conv_kernel taps)
    dt, B, C = x_proj(x);  dt = dt_proj(dt)           (dt_proj's bias goes into the scan)
    y    = selective_scan(x, dt, A = -exp(A_log), B, C, D, z)
Prefill and decoding are the same two kernels (tfcore.functional.causal_conv1d and
selective_scan), carrying per layer the conv state (B, intermediate, conv_kernel - 1) and the
SSM state (B, intermediate, state_size) in a tfcore.RecurrentState: memory does not grow
with the sequence.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _C
from ..config import Config
from ..functional import causal_conv1d, selective_scan
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import RecurrentLM
from .registry import register

__all__ = ["MambaForCausalLM", "MambaMixer"]


class MambaMixer:
    """HF's ``MambaMixer`` (the selective-SSM token mixer) from its weights; calls take
    (B, T, hidden) float32. in_proj is held as two Linear layers (x half, gate half) so each
    output is contiguous for the kernels; dt_proj without its bias, which the scan adds."""

    def __init__(
        self,
        *,
        in_proj_weight,
        conv1d_weight,
        x_proj_weight,
        dt_proj_weight,
        dt_proj_bias,
        A_log,
        D,
        out_proj_weight,
        in_proj_bias=None,
        conv1d_bias=None,
        out_proj_bias=None,
        dtype="float32",
    ):
        Di2, self.hidden_size = in_proj_weight.shape
        self.intermediate_size = Di = Di2 // 2
        self.state_size = N = A_log.shape[1]
        self.time_step_rank = R = dt_proj_weight.shape[1]
        self.conv_kernel = conv1d_weight.shape[-1]
        if x_proj_weight.shape != (R + 2 * N, Di):
            raise CheckpointError(
                f"x_proj.weight has shape {x_proj_weight.shape}, expected {(R + 2 * N, Di)}"
            )
        bias = (lambda b, lo, hi: None) if in_proj_bias is None else (lambda b, lo, hi: b[lo:hi])
        self.in_x = _C.Linear(in_proj_weight[:Di], bias(in_proj_bias, 0, Di), dtype=dtype)
        self.in_z = _C.Linear(in_proj_weight[Di:], bias(in_proj_bias, Di, 2 * Di), dtype=dtype)
        self.conv_weight = np.ascontiguousarray(conv1d_weight.reshape(Di, self.conv_kernel), dtype=np.float32)
        self.conv_bias = None if conv1d_bias is None else np.ascontiguousarray(conv1d_bias, dtype=np.float32)
        self.x_proj = _C.Linear(x_proj_weight, dtype=dtype)
        self.dt_proj = _C.Linear(dt_proj_weight, dtype=dtype)
        self.dt_bias = np.ascontiguousarray(dt_proj_bias, dtype=np.float32)
        self.A = np.ascontiguousarray(-np.exp(np.asarray(A_log, dtype=np.float32)))  # HF: -exp(A_log.float())
        self.D = np.ascontiguousarray(D, dtype=np.float32)
        self.out_proj = _C.Linear(out_proj_weight, out_proj_bias, dtype=dtype)

    @classmethod
    def from_config(cls, g, cfg: Config, C: int, dtype: str, **extra) -> "MambaMixer":
        """A MambaMixer from ``<prefix>.mixer.*`` weights (g(key, *shape) reads them), sized by the
        HF config keys intermediate_size (or expand * hidden_size), state_size,
        time_step_rank ("auto": ceil(hidden_size / 16)), conv_kernel, use_bias, use_conv_bias."""
        Di = cfg.get("intermediate_size") or int(cfg.get("expand", 2) * C)
        N, K = cfg.require("state_size"), cfg.get("conv_kernel", 4)
        R = cfg.get("time_step_rank", "auto")
        R = math.ceil(C / 16) if R == "auto" else int(R)
        use_bias = cfg.get("use_bias", False)
        use_conv_bias = cfg.get("use_conv_bias", True)
        return cls(
            in_proj_weight=g("in_proj.weight", 2 * Di, C),
            in_proj_bias=g("in_proj.bias", 2 * Di) if use_bias else None,
            conv1d_weight=g("conv1d.weight", Di, 1, K),
            conv1d_bias=g("conv1d.bias", Di) if use_conv_bias else None,
            x_proj_weight=g("x_proj.weight", R + 2 * N, Di),
            dt_proj_weight=g("dt_proj.weight", Di, R),
            dt_proj_bias=g("dt_proj.bias", Di),
            A_log=g("A_log", Di, N),
            D=g("D", Di),
            out_proj_weight=g("out_proj.weight", C, Di),
            out_proj_bias=g("out_proj.bias", C) if use_bias else None,
            dtype=dtype,
            **extra,
        )

    def state_shapes(self) -> dict:
        """The per-item shapes of this layer's RecurrentState tensors."""
        return {
            "conv": (self.intermediate_size, self.conv_kernel - 1),
            "ssm": (self.intermediate_size, self.state_size),
        }

    def ssm_inputs(self, x):
        """(dt, B, C) of the scan from the convolved x (B, T, intermediate): x_proj split,
        dt_proj applied (Jamba's mixer overrides this to normalize them first)."""
        R, N = self.time_step_rank, self.state_size
        p = self.x_proj(x)
        dt = self.dt_proj(np.ascontiguousarray(p[..., :R]))
        return dt, np.ascontiguousarray(p[..., R : R + N]), np.ascontiguousarray(p[..., R + N :])

    def __call__(self, h, *, keep=None, state=None, layer_idx=0):
        """h (B, T, hidden) normed input; keep (B, T) bool zeroes padding as HF does (before
        in_proj and after the convolution); state: a RecurrentState continued and updated."""
        if keep is not None and not keep.all():
            h = np.ascontiguousarray(h * keep[:, :, None], dtype=np.float32)
        x, z = self.in_x(h), self.in_z(h)
        conv = ssm = None
        if state is not None:
            conv, ssm = state.get(layer_idx, "conv"), state.get(layer_idx, "ssm")
        x = causal_conv1d(
            x,
            self.conv_weight,
            self.conv_bias,
            state=conv if self.conv_kernel > 1 else None,
            activation="silu",
        )
        if keep is not None and not keep.all():
            x = np.ascontiguousarray(x * keep[:, :, None], dtype=np.float32)
        dt, Bm, Cm = self.ssm_inputs(x)
        y = selective_scan(x, dt, self.A, Bm, Cm, D=self.D, z=z, dt_bias=self.dt_bias, state=ssm)
        if state is not None and state.dtype != "float32":  # bfloat16 states: get() gave copies
            state.set(layer_idx, "conv", conv)
            state.set(layer_idx, "ssm", ssm)
        return self.out_proj(y)


@register("causal-lm")
class MambaForCausalLM(RecurrentLM):
    """``transformers.MambaForCausalLM``: embeddings, Mamba blocks (RMSNorm + MambaMixer,
    residual), norm_f, LM head; generate() decodes with a tfcore.RecurrentState holding each
    layer's "conv" (B, intermediate, conv_kernel - 1) and "ssm" (B, intermediate, state_size)."""

    model_types = ("mamba",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, L, V = (cfg.require(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
        act = cfg.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise CheckpointError(
                f"config.json: MambaForCausalLM with hidden_act={act!r} is not supported (silu)"
            )
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        self.vocab_size, self.hidden_size, self.num_layers = V, C, L
        self.embeddings = _C.Embedding(w.get("backbone.embeddings.weight", (V, C)))
        self.layers = []
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(
                    f"backbone.layers.{i}.mixer.{key}", shape, matrix=len(shape) == 2 and "A_log" not in key
                )

            norm = _C.RMSNorm(w.get(f"backbone.layers.{i}.norm.weight", (C,)), eps=eps)
            self.layers.append((norm, MambaMixer.from_config(g, cfg, C, w.dtype)))
            w.release()
        self.norm_f = _C.RMSNorm(w.get("backbone.norm_f.weight", (C,)), eps=eps)
        head = w.get("lm_head.weight", (V, C), optional=True, matrix=True)
        if head is None or cfg.get("tie_word_embeddings", True):
            head = self.embeddings.weight
        self.lm_head = _C.Linear(head, dtype=w.dtype)
        self.generation_defaults = {k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}
