"""Swin Transformer V2: Swinv2Model and Swinv2ForImageClassification from Hugging Face
checkpoints.

SwinModel's patch embedding, stages, padding and pooling, with V2's layer:

    h = h + layernorm_before(WindowAttention(h))   res-post-norm: the norm is on the branch
    h = h + layernorm_after(FeedForward(h))

Attention is scaled cosine attention: softmax(cos(q, k) * exp(min(logit_scale, log 100)) +
16 sigmoid(cpb)) per head, where cpb is the continuous position bias MLP (2 -> 512 -> heads,
ReLU) over the log-spaced relative coordinates of the window. The MLP's output depends on the
window only, so it runs ONCE at load into the ((2 w - 1)^2, heads) bias table the Swin window
kernel (tfcore.functional.window_attention) reads by relative position. q and k are
L2-normalised per head after the fused QKV GEMM (the key has no bias), the per-head logit
scale folded into q, and the kernel runs with scale 1 and a shifted-window mask of -200
(transformers adds its -100 mask twice; it matters here, where logits reach +-100). Padding tokens (zeros before the
projection) get the normalised projection of the zero vector, as in HF.

Windows are sized when the model is built, as HF's Swinv2Layer does: each stage's window is
min(window_size, the stage's height at config image_size), unshifted when the height is not
larger than the window; other image sizes run with those windows (padding to multiples).
The patch merging is V2's: Linear(4C, 2C) then LayerNorm(2C).
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..functional import window_attention
from ..safetensors import CheckpointError
from .base import Weights
from .registry import register
from .swin import SwinForImageClassification, SwinModel
from .vision import merge_2x2

__all__ = ["Swinv2Model", "Swinv2ForImageClassification"]

CPB_HIDDEN = 512  # the continuous position bias MLP's width (fixed in HF's Swinv2SelfAttention)


def cpb_bias_table(
    w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, window: int, pretrained_window: int
) -> np.ndarray:
    """((2 window - 1)^2, heads) float32: 16 sigmoid(MLP(log-spaced relative coordinates)),
    rows in Swin's relative-position order (dh + window - 1) (2 window - 1) + dw + window - 1.
    Computed in float64."""
    r = np.arange(-(window - 1), window, dtype=np.float64)
    coords = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1)  # (2w-1, 2w-1, 2): (dh, dw)
    if pretrained_window > 0:
        coords /= pretrained_window - 1
    elif window > 1:
        coords /= window - 1
    coords *= 8
    coords = np.sign(coords) * np.log2(np.abs(coords) + 1.0) / math.log2(8)
    hidden = np.maximum(coords.reshape(-1, 2) @ w1.astype(np.float64).T + b1, 0.0)
    out = hidden @ w2.astype(np.float64).T  # ((2w-1)^2, heads)
    return (16.0 / (1.0 + np.exp(-out))).astype(np.float32)


class _PatchMergingV2:
    """HF's Swinv2PatchMerging: 2x2 neighbours -> Linear(4C, 2C, no bias) -> LayerNorm(2C)."""

    def __init__(self, norm: _C.LayerNorm, reduction: _C.Linear):
        self.norm, self.reduction = norm, reduction

    def __call__(self, h: np.ndarray, dims: Tuple[int, int]) -> np.ndarray:
        out = self.reduction(merge_2x2(h, dims))
        return self.norm(out, out=out)


class Swinv2Layer:
    """HF's Swinv2Layer on a (B, Hh, Ww, C) map: scaled cosine window attention and the MLP,
    each followed by its LayerNorm before the residual add."""

    def __init__(
        self,
        qkv: _C.Linear,
        o_proj: _C.Linear,
        mlp: _C.FeedForward,
        norm_before: _C.LayerNorm,
        norm_after: _C.LayerNorm,
        num_heads: int,
        window_size: int,
        shift_size: int,
        logit_scale: np.ndarray,
        bias_table: np.ndarray,
        qkv_bias: np.ndarray,
    ):
        self.qkv, self.o_proj, self.mlp = qkv, o_proj, mlp
        self.norm_before, self.norm_after = norm_before, norm_after
        self.num_heads, self.window_size, self.shift_size = num_heads, window_size, shift_size
        self.head_scale = logit_scale.astype(np.float32).reshape(num_heads, 1)  # exp(clamped logit_scale)
        self.bias_table = bias_table
        D = qkv_bias.shape[0] // (3 * num_heads)
        self.pad_qkv = self._normalise(qkv_bias.reshape(1, 3, num_heads, D).copy())[0]

    def _normalise(self, qkv: np.ndarray) -> np.ndarray:
        """In place on (..., 3, H, D): q -> q / |q| * scale_h, k -> k / |k| (HF's F.normalize, eps 1e-12)."""
        q, k = qkv[..., 0, :, :], qkv[..., 1, :, :]
        q *= self.head_scale / np.maximum(np.sqrt(np.einsum("...hd,...hd->...h", q, q))[..., None], 1e-12)
        k /= np.maximum(np.sqrt(np.einsum("...hd,...hd->...h", k, k))[..., None], 1e-12)
        return qkv

    def __call__(self, x: np.ndarray, output_attentions: bool = False, always_partition: bool = False):
        B, Hh, Ww, C = x.shape
        h = x.reshape(B, Hh * Ww, C)
        qkv = self._normalise(self.qkv(h).reshape(B, Hh, Ww, 3, self.num_heads, -1))
        res = window_attention(
            qkv,
            self.window_size,
            self.shift_size,
            relative_position_bias_table=self.bias_table,
            pad_qkv=self.pad_qkv,
            scale=1.0,
            output_attentions=output_attentions,
            mask_value=-200.0,  # transformers' Swinv2SelfAttention adds its -100 mask twice
        )
        a, weights = res if output_attentions else (res, None)
        attn = self.o_proj(a.reshape(B, Hh * Ww, C))
        h = h + self.norm_before(attn, out=attn)
        up = self.mlp(h)
        h += self.norm_after(up, out=up)
        out = h.reshape(B, Hh, Ww, C)
        return (out, weights) if output_attentions else out


@register("base")
class Swinv2Model(SwinModel):
    """``transformers.Swinv2Model``: SwinModel's structure with scaled cosine attention, the
    continuous position bias (evaluated at load), res-post-norm and V2's patch merging."""

    model_types = ("swinv2",)
    base_prefixes = ("", "swinv2.")
    ignore_keys = ("relative_position_index", "relative_coords_table", "mask_token")

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        pws = config.get("pretrained_window_sizes") or [0] * len(config.get("depths") or [])
        if not isinstance(pws, (list, tuple)) or not all(isinstance(v, int) and v >= 0 for v in pws):
            raise CheckpointError(f"config.json: pretrained_window_sizes must be a list of ints, got {pws!r}")
        self._pretrained_windows = list(pws)
        image, patch = config.get("image_size", 224), config.get("patch_size", 4)
        image = (image, image) if isinstance(image, int) else tuple(image)
        patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
        self._grid = (image[0] // patch[0], image[1] // patch[1])  # HF's patch_grid: whole patches
        super().__init__(config, weights, add_pooling_layer)

    @staticmethod
    def _downsample(w: Weights, p: str, C: int) -> _PatchMergingV2:
        return _PatchMergingV2(
            _C.LayerNorm(w.get(p + "norm.weight", (2 * C,)), w.get(p + "norm.bias", (2 * C,))),
            _C.Linear(w.get(p + "reduction.weight", (2 * C, 4 * C), matrix=True), dtype=w.dtype),
        )

    def _layer(
        self, w: Weights, p: str, C: int, H: int, index: int, eps: float, mlp_ratio: float, act: str, bar
    ) -> Swinv2Layer:
        s = self._stage
        ws = int(self.window_size)
        # HF's Swinv2Layer._compute_window_shift on the stage resolution at config image_size
        # (it keeps the height axis's values for both axes)
        res_h = self._grid[0] // 2**s
        window = min(res_h, ws)
        shift = 0 if res_h <= window else (ws // 2 if index % 2 else 0)
        if window < 1:
            raise CheckpointError(
                f"config.json: stage {s} has no rows at image_size (patch grid {self._grid})"
            )
        F = int(mlp_ratio * C)
        a = p + "attention.self."

        def g(key, *shape, optional=False):
            return w.get(key, shape, optional=optional, matrix=len(shape) == 2)

        qb = g(a + "query.bias", C, optional=True)
        vb = g(a + "value.bias", C, optional=True)
        if (qb is None) != (vb is None):
            raise CheckpointError(f"{p}: one of the query/value biases is missing")
        qkv_bias = (
            np.concatenate([qb, np.zeros(C, np.float32), vb])
            if qb is not None
            else np.zeros(3 * C, np.float32)
        )
        parts = [g(a + n + ".weight", C, C) for n in ("query", "key", "value")]
        if len({x.dtype for x in parts}) > 1:
            parts = [_C.bfloat16_to_float32(x) if x.dtype == np.uint16 else x for x in parts]
        qkv = _C.Linear(np.concatenate(parts), qkv_bias, dtype=w.dtype)
        scale = g(a + "logit_scale", H, 1, 1).reshape(H)
        table = cpb_bias_table(
            g(a + "continuous_position_bias_mlp.0.weight", CPB_HIDDEN, 2),
            g(a + "continuous_position_bias_mlp.0.bias", CPB_HIDDEN),
            g(a + "continuous_position_bias_mlp.2.weight", H, CPB_HIDDEN),
            window,
            self._pretrained_windows[s] if s < len(self._pretrained_windows) else 0,
        )
        layer = Swinv2Layer(
            qkv,
            _C.Linear(
                g(p + "attention.output.dense.weight", C, C),
                g(p + "attention.output.dense.bias", C),
                dtype=w.dtype,
            ),
            _C.FeedForward(
                g(p + "intermediate.dense.weight", F, C),
                g(p + "output.dense.weight", C, F),
                up_bias=g(p + "intermediate.dense.bias", F),
                down_bias=g(p + "output.dense.bias", C),
                activation=act,
                dtype=w.dtype,
            ),
            _C.LayerNorm(g(p + "layernorm_before.weight", C), g(p + "layernorm_before.bias", C), eps=eps),
            _C.LayerNorm(g(p + "layernorm_after.weight", C), g(p + "layernorm_after.bias", C), eps=eps),
            H,
            window,
            shift,
            np.exp(np.minimum(scale.astype(np.float64), math.log(100.0))),
            table,
            qkv_bias,
        )
        w.release()
        next(bar, None)
        return layer


@register("image-classification")
class Swinv2ForImageClassification(SwinForImageClassification):
    """``transformers.Swinv2ForImageClassification``: a Linear classifier over Swinv2Model's
    mean-pooled output."""

    model_types = ("swinv2",)
    ignore_keys = Swinv2Model.ignore_keys
    base_model, base_prefix = Swinv2Model, "swinv2."
