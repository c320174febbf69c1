"""Vision transformers: ViTModel, DeiTModel (distillation token), Dinov2Model (layer scale)
and Dinov2WithRegistersModel (register tokens), from Hugging Face checkpoints.

The patch embedding is a convolution with stride = kernel = patch size, i.e. a GEMM over
non-overlapping patches: the image is cut into patch rows (im2col, one copy) and multiplied
by the conv weight as a tfcore.Linear. Layers are pre-norm tfcore.TransformerBlocks;
DINOv2's layer scale is folded into the output projections (diag(λ) W), so a layer is
still one C call.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .encoder import EncoderStack
from .registry import register
from .vision import check_pixel_values, pair, resize_grid

__all__ = ["ViTModel", "DeiTModel", "Dinov2Model", "Dinov2WithRegistersModel"]


def _scaled(weight: np.ndarray, bias: Optional[np.ndarray], scale: Optional[np.ndarray]):
    """Fold a layer scale λ into a projection: λ (W x + b) = (diag(λ) W) x + λ b."""
    if scale is None:
        return weight, bias
    if weight.dtype == np.uint16:  # bf16 bits (bfloat16 model): scale in float32
        weight = _C.bfloat16_to_float32(weight)
    return (
        (weight * scale[:, None]).astype(np.float32),
        None if bias is None else (bias * scale).astype(np.float32),
    )


class _VisionModel(PreTrainedModel):
    """Shared embedding/encoder logic; subclasses name their keys and extra tokens."""

    layer_keys = dict(
        norm1="layernorm_before",
        norm2="layernorm_after",
        up="intermediate.dense",
        down="output.dense",
        scale1=None,
        scale2=None,
    )
    n_prefix_tokens = 1  # tokens before the patches: CLS (+ distillation)
    always_interpolate = False  # DINOv2 resizes position embeddings for any image size
    antialias = False
    default_eps = 1e-12

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H = cfg.require("hidden_size"), cfg.require("num_attention_heads")
        F = cfg.get("intermediate_size") or int(C * cfg.get("mlp_ratio", 4))
        self.hidden_size, self.channels = C, int(cfg.get("num_channels", 3))
        self.patch = pair(cfg.get("patch_size", 16))
        if min(self.patch) <= 0:
            raise CheckpointError(f"config.json: patch_size must be positive, got {cfg.get('patch_size')!r}")
        self.image_size = pair(cfg.get("image_size", 224))
        eps = float(cfg.get("layer_norm_eps", self.default_eps))
        ph, pw = self.patch
        conv = w.get("embeddings.patch_embeddings.projection.weight", (C, self.channels, ph, pw))
        self.patch_embed = _C.Linear(
            np.ascontiguousarray(conv.reshape(C, -1)),
            w.get("embeddings.patch_embeddings.projection.bias", (C,)),
            dtype=w.dtype,
        )
        self.cls_token = w.get("embeddings.cls_token", (1, 1, C))
        self.extra_tokens = self._extra_tokens(w, C)
        pos = w.get("embeddings.position_embeddings")
        if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != C:
            raise CheckpointError(
                f"embeddings.position_embeddings has shape {pos.shape}, expected (1, N, {C})"
            )
        self.position_embeddings = pos[0]  # (prefix + patches, C)
        grid = self.position_embeddings.shape[0] - self.n_prefix_tokens
        side = int(round(grid**0.5))
        if side * side != grid:
            raise CheckpointError(f"position embeddings hold {grid} patch positions, not a square grid")
        self.grid = side
        self.encoder = self._build_encoder(cfg, w, C, H, F, eps)
        self.layernorm = _C.LayerNorm(w.get("layernorm.weight", (C,)), w.get("layernorm.bias", (C,)), eps=eps)
        self.pooler = None
        if add_pooling_layer and w.has("pooler.dense.weight"):
            self.pooler = _C.Linear(
                w.get("pooler.dense.weight", (C, C)),
                w.get("pooler.dense.bias", (C,)),
                cfg.get("pooler_act", "tanh"),
                dtype=w.dtype,
            )

    # -- pieces a family changes
    def _extra_tokens(self, w: Weights, C: int) -> Optional[np.ndarray]:
        return None

    def _mlp(self, g, C: int, F: int, act: str, down_scale=None) -> _C.FeedForward:
        k = self.layer_keys
        down_w, down_b = _scaled(g(k["down"] + ".weight", C, F), g(k["down"] + ".bias", C), down_scale)
        return _C.FeedForward(
            g(k["up"] + ".weight", F, C),
            down_w,
            up_bias=g(k["up"] + ".bias", F),
            down_bias=down_b,
            activation=act,
            dtype=self.dtype,
        )

    def _build_encoder(self, cfg: Config, w: Weights, C: int, H: int, F: int, eps: float) -> EncoderStack:
        k, act = self.layer_keys, cfg.get("hidden_act", "gelu")
        layers: List[_C.TransformerBlock] = []
        for i in w.layer_range(cfg.require("num_hidden_layers")):
            p = f"encoder.layer.{i}."

            def g(key, *shape, optional=False):
                return w.get(p + key, shape or None, optional=optional, matrix=len(shape) == 2)

            l1 = g(k["scale1"], C) if k["scale1"] else None
            l2 = g(k["scale2"], C) if k["scale2"] else None
            o_w, o_b = _scaled(
                g("attention.output.dense.weight", C, C), g("attention.output.dense.bias", C), l1
            )
            ffn = self._mlp(g, C, F, act, l2)
            attn = _C.MultiHeadAttention(
                C,
                H,
                q_weight=g("attention.attention.query.weight", C, C),
                q_bias=g("attention.attention.query.bias", C, optional=True),
                k_weight=g("attention.attention.key.weight", C, C),
                k_bias=g("attention.attention.key.bias", C, optional=True),
                v_weight=g("attention.attention.value.weight", C, C),
                v_bias=g("attention.attention.value.bias", C, optional=True),
                o_weight=o_w,
                o_bias=o_b,
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(g(k["norm1"] + ".weight", C), g(k["norm1"] + ".bias", C), eps=eps)
            n2 = _C.LayerNorm(g(k["norm2"] + ".weight", C), g(k["norm2"] + ".bias", C), eps=eps)
            layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
            w.release()
        return EncoderStack(layers)

    # -- forward
    def _patches(self, pixel_values) -> Tuple[np.ndarray, int, int]:
        x = check_pixel_values(pixel_values, self.channels)
        B, ch, Hh, Ww = x.shape
        ph, pw = self.patch
        nh, nw = Hh // ph, Ww // pw
        if nh == 0 or nw == 0:
            raise _C.TfcoreValueError(f"pixel_values {x.shape} holds no {ph}x{pw} patch")
        # (B, ch, nh*ph, nw*pw) -> (B, nh*nw, ch*ph*pw) in the conv weight's (c, ky, kx) order
        cols = x[:, :, : nh * ph, : nw * pw].reshape(B, ch, nh, ph, nw, pw).transpose(0, 2, 4, 1, 3, 5)
        cols = np.ascontiguousarray(cols).reshape(B, nh * nw, ch * ph * pw)
        return self.patch_embed(cols), nh, nw

    def _positions(self, nh: int, nw: int, interpolate: bool) -> np.ndarray:
        """(prefix + nh*nw, C) position embeddings for an nh x nw patch grid."""
        pos = self.position_embeddings
        if nh == nw == self.grid:
            return pos
        if not (interpolate or self.always_interpolate):
            ph, pw = self.patch
            raise _C.TfcoreValueError(
                f"input image size ({nh * ph}*{nw * pw}) doesn't match model ({self.image_size[0]}*{self.image_size[1]}); "
                "pass interpolate_pos_encoding=True to resize the position embeddings"
            )
        p = self.n_prefix_tokens
        grid = pos[p:].reshape(self.grid, self.grid, -1)
        resized = resize_grid(grid, nh, nw, antialias=self.antialias).reshape(nh * nw, -1)
        return np.concatenate([pos[:p], resized], axis=0)

    def _tokens(self, patches: np.ndarray, pos: np.ndarray) -> np.ndarray:
        B, N, C = patches.shape
        prefix = [np.broadcast_to(self.cls_token, (B, 1, C))]
        if self.extra_tokens is not None and self.extra_tokens_before_positions:
            prefix.append(np.broadcast_to(self.extra_tokens, (B,) + self.extra_tokens.shape[1:]))
        h = np.concatenate(prefix + [patches], axis=1)
        h += pos
        return h

    extra_tokens_before_positions = True

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> last_hidden_state (and pooler_output), as
        the transformers class of the same name."""
        patches, nh, nw = self._patches(pixel_values)
        h = np.ascontiguousarray(
            self._tokens(patches, self._positions(nh, nw, interpolate_pos_encoding)), dtype=np.float32
        )
        h, hidden, attns = self.encoder(h, None, output_hidden_states, output_attentions)
        last = self.layernorm(h)
        return ModelOutput(
            last_hidden_state=last, pooler_output=self._pool(last), hidden_states=hidden, attentions=attns
        )

    def _pool(self, last: np.ndarray) -> Optional[np.ndarray]:
        return self.pooler(np.ascontiguousarray(last[:, 0])) if self.pooler is not None else None


@register("base")
class ViTModel(_VisionModel):
    """``transformers.ViTModel``."""

    model_types = ("vit",)
    base_prefixes = ("", "vit.")


@register("base")
class DeiTModel(_VisionModel):
    """``transformers.DeiTModel``: CLS and distillation tokens before the patches."""

    model_types = ("deit",)
    base_prefixes = ("", "deit.")
    n_prefix_tokens = 2

    def _extra_tokens(self, w: Weights, C: int) -> np.ndarray:
        return w.get("embeddings.distillation_token", (1, 1, C))


@register("base")
class Dinov2Model(_VisionModel):
    """``transformers.Dinov2Model``: layer scale, optional SwiGLU MLP, pooled output is the
    normalised CLS token; position embeddings are resized for any image size."""

    model_types = ("dinov2",)
    base_prefixes = ("", "dinov2.")
    ignore_keys = ("mask_token",)
    layer_keys = dict(
        norm1="norm1",
        norm2="norm2",
        up="mlp.fc1",
        down="mlp.fc2",
        scale1="layer_scale1.lambda1",
        scale2="layer_scale2.lambda1",
    )
    always_interpolate = True
    default_eps = 1e-6

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights, add_pooling_layer=False)

    def _mlp(self, g, C: int, F: int, act: str, down_scale=None) -> _C.FeedForward:
        if not self.config.get("use_swiglu_ffn", False):
            return super()._mlp(g, C, F, act, down_scale)
        # Dinov2SwiGLUFFN: hidden = int(2/3 * F) rounded up to a multiple of 8;
        # weights_in holds [gate; up] stacked, output = weights_out(silu(gate) * up)
        hidden = (int(F * 2 / 3) + 7) // 8 * 8
        w_in, b_in = g("mlp.weights_in.weight", 2 * hidden, C), g("mlp.weights_in.bias", 2 * hidden)
        down_w, down_b = _scaled(
            g("mlp.weights_out.weight", C, hidden), g("mlp.weights_out.bias", C), down_scale
        )
        return _C.FeedForward(
            np.ascontiguousarray(w_in[hidden:]),
            down_w,
            up_bias=np.ascontiguousarray(b_in[hidden:]),
            down_bias=down_b,
            gate_weight=np.ascontiguousarray(w_in[:hidden]),
            gate_bias=np.ascontiguousarray(b_in[:hidden]),
            activation="silu",
            dtype=self.dtype,
        )

    def _pool(self, last: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(last[:, 0])


@register("base")
class Dinov2WithRegistersModel(Dinov2Model):
    """``transformers.Dinov2WithRegistersModel``: register tokens inserted after CLS, after
    the position embeddings are added (registers have none); antialiased resizing."""

    model_types = ("dinov2_with_registers",)
    base_prefixes = ("", "dinov2_with_registers.")
    antialias = True
    extra_tokens_before_positions = False

    def _extra_tokens(self, w: Weights, C: int) -> np.ndarray:
        n = int(self.config.get("num_register_tokens", 4))
        return w.get("embeddings.register_tokens", (1, n, C))

    def _tokens(self, patches: np.ndarray, pos: np.ndarray) -> np.ndarray:
        h = super()._tokens(patches, pos)  # [CLS | patches] + positions
        B = h.shape[0]
        regs = np.broadcast_to(self.extra_tokens, (B,) + self.extra_tokens.shape[1:])
        return np.concatenate([h[:, :1], regs, h[:, 1:]], axis=1)
