"""Mamba-2 (Dao & Gu 2024) as Hugging Face's ``Mamba2ForCausalLM``: ``backbone.embeddings``,
``backbone.layers.{i}`` (``norm``, ``mixer`` = Mamba2Mixer), ``backbone.norm_f``, ``lm_head``.

Per layer (pre-norm, residual): h += out_proj(gated_rms_norm(y, z)) with
    z, xBC, dt = in_proj(RMSNorm(h))                      (intermediate, conv_dim, heads)
    x, B, C    = silu(causal_conv1d(xBC))                 (intermediate, groups*N, groups*N)
    y          = ssd_scan(x, dt, A = -exp(A_log), B, C, D, dt_bias, time_step_limit)
gated_rms_norm(y, z) = RMSNorm over each of the n_groups groups of (y * silu(z)), times weight.
Prefill runs the SSD scan's chunkwise form, decoding its recurrent form; the conv state
(B, conv_dim, conv_kernel - 1) and SSM state (B, heads, head_dim, state_size) of each layer
live in a tfcore.RecurrentState.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..functional import causal_conv1d, gated_rms_norm, ssd_scan
from ..safetensors import CheckpointError
from .base import Weights
from .decoder import RecurrentLM
from .registry import register

__all__ = ["Mamba2ForCausalLM", "Mamba2Mixer"]


class Mamba2Mixer:
    """HF's ``Mamba2Mixer`` from its weights; calls take (B, T, hidden) float32. in_proj is
    held as three Linear layers (gate, conv input, dt) so each output is contiguous."""

    def __init__(
        self,
        *,
        num_heads,
        head_dim,
        n_groups,
        in_proj_weight,
        conv1d_weight,
        dt_bias,
        A_log,
        D,
        norm_weight,
        out_proj_weight,
        in_proj_bias=None,
        conv1d_bias=None,
        out_proj_bias=None,
        norm_eps=1e-5,
        time_step_limit=(0.0, float("inf")),
        chunk_size=64,
        dtype="float32",
    ):
        H, P, G = num_heads, head_dim, n_groups
        self.num_heads, self.head_dim, self.n_groups = H, P, G
        self.intermediate_size = Di = H * P
        self.state_size = N = (conv1d_weight.shape[0] - Di) // (2 * G)
        self.conv_dim = Dc = Di + 2 * G * N
        if conv1d_weight.shape[0] != Dc or in_proj_weight.shape[0] != Di + Dc + H or H % G:
            raise CheckpointError(
                f"Mamba2 mixer: in_proj.weight {in_proj_weight.shape} and conv1d.weight {conv1d_weight.shape} "
                f"do not fit num_heads={H}, head_dim={P}, n_groups={G} (in_proj rows = 2 * {Di} + 2 * groups * "
                "state_size + heads; older layouts with extra MLP rows are not supported)"
            )
        self.conv_kernel = conv1d_weight.shape[-1]
        rows = (0, Di, Di + Dc, Di + Dc + H)
        part = lambda a, i: None if a is None else a[rows[i] : rows[i + 1]]  # noqa: E731
        self.in_z, self.in_xbc, self.in_dt = (
            _C.Linear(part(in_proj_weight, i), part(in_proj_bias, i), dtype=dtype) for i in range(3)
        )
        self.conv_weight = np.ascontiguousarray(conv1d_weight.reshape(Dc, self.conv_kernel), dtype=np.float32)
        self.conv_bias = None if conv1d_bias is None else np.ascontiguousarray(conv1d_bias, dtype=np.float32)
        self.dt_bias = np.ascontiguousarray(dt_bias, dtype=np.float32)
        self.A = np.ascontiguousarray(-np.exp(np.asarray(A_log, dtype=np.float32)))
        self.D = np.ascontiguousarray(D, dtype=np.float32)
        self.norm_weight = np.ascontiguousarray(norm_weight, dtype=np.float32)
        self.norm_eps = float(norm_eps)
        # transformers writes inf into config.json as {"__float__": "Infinity"}
        lo, hi = (float(v["__float__"] if isinstance(v, dict) else v) for v in time_step_limit)
        self.dt_limit = (lo, hi)
        self.chunk_size = int(chunk_size)
        self.out_proj = _C.Linear(out_proj_weight, out_proj_bias, dtype=dtype)

    def state_shapes(self) -> dict:
        """The per-item shapes of this layer's RecurrentState tensors."""
        return {
            "conv": (self.conv_dim, self.conv_kernel - 1),
            "ssm": (self.num_heads, self.head_dim, self.state_size),
        }

    def gated_norm(self, y, z):
        """RMSNorm over each group of y * silu(z) (HF's Mamba2RMSNormGated), times the weight:
        tfcore.functional.gated_rms_norm, one fused pass per group."""
        return gated_rms_norm(y, z, self.norm_weight, n_groups=self.n_groups, eps=self.norm_eps)

    def __call__(self, h, *, keep=None, state=None, layer_idx=0):
        """h (B, T, hidden) normed input; keep (B, T) bool zeroes padding as HF does (before
        in_proj and after the convolution); state: a RecurrentState continued and updated."""
        B, T, _ = h.shape
        H, P, G, N, Di = self.num_heads, self.head_dim, self.n_groups, self.state_size, self.intermediate_size
        masked = keep is not None and not keep.all()
        if masked:
            h = np.ascontiguousarray(h * keep[:, :, None], dtype=np.float32)
        z, xbc, dt = self.in_z(h), self.in_xbc(h), self.in_dt(h)
        conv = ssm = None
        if state is not None:
            conv, ssm = state.get(layer_idx, "conv"), state.get(layer_idx, "ssm")
        xbc = causal_conv1d(
            xbc,
            self.conv_weight,
            self.conv_bias,
            state=conv if self.conv_kernel > 1 else None,
            activation="silu",
        )
        if masked:
            xbc = xbc * keep[:, :, None]
        x = np.ascontiguousarray(xbc[..., :Di].reshape(B, T, H, P), dtype=np.float32)
        Bm = np.ascontiguousarray(xbc[..., Di : Di + G * N].reshape(B, T, G, N), dtype=np.float32)
        Cm = np.ascontiguousarray(xbc[..., Di + G * N :].reshape(B, T, G, N), dtype=np.float32)
        y = ssd_scan(
            x,
            dt,
            self.A,
            Bm,
            Cm,
            D=self.D,
            dt_bias=self.dt_bias,
            dt_limit=self.dt_limit,
            state=ssm,
            mode="recurrent" if T <= 4 else "chunkwise",
            chunk_size=self.chunk_size,
        )
        if state is not None and state.dtype != "float32":  # bfloat16 states: get() gave copies
            state.set(layer_idx, "conv", conv)
            state.set(layer_idx, "ssm", ssm)
        return self.out_proj(self.gated_norm(y.reshape(B, T, Di), z))


@register("causal-lm")
class Mamba2ForCausalLM(RecurrentLM):
    """``transformers.Mamba2ForCausalLM``: embeddings, Mamba-2 blocks (RMSNorm + Mamba2Mixer,
    residual), norm_f, LM head; generate() decodes with a tfcore.RecurrentState holding each
    layer's "conv" (B, conv_dim, conv_kernel - 1) and "ssm" (B, heads, head_dim, state_size)."""

    model_types = ("mamba2",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, L, V = (cfg.require(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
        H, P, G, N = (cfg.require(k) for k in ("num_heads", "head_dim", "n_groups", "state_size"))
        act = cfg.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise CheckpointError(
                f"config.json: Mamba2ForCausalLM with hidden_act={act!r} is not supported (silu)"
            )
        if not cfg.get("rms_norm", True):
            raise CheckpointError("config.json: Mamba2ForCausalLM with rms_norm=False is not supported")
        Di, K = H * P, cfg.get("conv_kernel", 4)
        Dc = Di + 2 * G * N
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        use_bias, use_conv_bias = cfg.get("use_bias", False), cfg.get("use_conv_bias", True)
        limit = cfg.get("time_step_limit") or (0.0, float("inf"))
        self.vocab_size, self.hidden_size, self.num_layers = V, C, L
        self.embeddings = _C.Embedding(w.get("backbone.embeddings.weight", (V, C)))
        self.layers = []
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(f"backbone.layers.{i}.mixer.{key}", shape, matrix=len(shape) == 2)

            mixer = Mamba2Mixer(
                num_heads=H,
                head_dim=P,
                n_groups=G,
                in_proj_weight=g("in_proj.weight", Di + Dc + H, C),
                in_proj_bias=g("in_proj.bias", Di + Dc + H) if use_bias else None,
                conv1d_weight=g("conv1d.weight", Dc, 1, K),
                conv1d_bias=g("conv1d.bias", Dc) if use_conv_bias else None,
                dt_bias=g("dt_bias", H),
                A_log=g("A_log", H),
                D=g("D", H),
                norm_weight=g("norm.weight", Di),
                out_proj_weight=g("out_proj.weight", C, Di),
                out_proj_bias=g("out_proj.bias", C) if use_bias else None,
                norm_eps=eps,
                time_step_limit=limit,
                dtype=w.dtype,
            )
            norm = _C.RMSNorm(w.get(f"backbone.layers.{i}.norm.weight", (C,)), eps=eps)
            self.layers.append((norm, mixer))
            w.release()
        self.norm_f = _C.RMSNorm(w.get("backbone.norm_f.weight", (C,)), eps=eps)
        head = w.get("lm_head.weight", (V, C), optional=True, matrix=True)
        if head is None or cfg.get("tie_word_embeddings", False):
            head = self.embeddings.weight
        self.lm_head = _C.Linear(head, dtype=w.dtype)
        self.generation_defaults = {k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}
