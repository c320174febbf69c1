"""BEiT (``BeitModel``, ``BeitForImageClassification``) from Hugging Face checkpoints.

A ViT with three changes, each folded into tfcore's existing pieces:

    tokens  = [CLS | patch_embed(pixels)] (+ absolute positions if the config has them)
    h      += λ1 ⊙ o_proj(attention(LN1(h), bias = B_layer))      λ1 folded into o_proj
    h      += λ2 ⊙ fc2(gelu(fc1(LN2(h))))                           λ2 folded into fc2
    pooled  = LN(mean(h[:, 1:]))   (use_mean_pooling)   or  LN_final(h)[:, 0]

- the patch embedding is a kernel = stride convolution: tfcore.Conv2d on the channels-last
  image, which writes the (B, nh, nw, C) patch tokens directly;
- the relative position bias B (H, 1 + N, 1 + N) of each layer (or one shared by all) is
  gathered once per patch grid from the layer's table ((2 nh - 1)(2 nw - 1) + 3, H): one row
  per 2-D offset between patches plus three for CLS -> patch, patch -> CLS and CLS -> CLS,
  as HF's ``BeitRelativePositionBias`` does, and passed to the attention kernel as its
  additive ``bias`` (no (B, H, T, S) tensor: it broadcasts over the batch). For a grid other
  than the config's the table's offset part is resized bilinearly first, as HF does;
- the key projection has no bias (HF's ``k_proj``).

Checkpoint keys: transformers' current names (``layers.N.attention.q_proj``, ``mlp.fc1``) and
the older ones the hub's BEiT checkpoints use (``encoder.layer.N.attention.attention.query``,
``intermediate.dense``, ...).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .registry import register
from .vision import add_image_classifier, check_pixel_values, pair, resize_grid

__all__ = ["BeitModel", "BeitForImageClassification"]

# (current transformers name, older name) of each per-layer tensor
_LAYER_KEYS = {
    "q": ("attention.q_proj", "attention.attention.query"),
    "k": ("attention.k_proj", "attention.attention.key"),
    "v": ("attention.v_proj", "attention.attention.value"),
    "o": ("attention.o_proj", "attention.output.dense"),
    "fc1": ("mlp.fc1", "intermediate.dense"),
    "fc2": ("mlp.fc2", "output.dense"),
    "rel": ("relative_position_bias", "attention.attention.relative_position_bias"),
}


def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of torch's bilinear interpolate (align_corners=False): source
    index max(0, (i + 0.5) in / out - 0.5), the two neighbours weighted linearly."""
    w = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        w[i, i0] += 1.0 - t
        w[i, i1] += t
    return w


def relative_position_index(nh: int, nw: int) -> np.ndarray:
    """(1 + N, 1 + N) rows of the bias table for an nh x nw patch grid (N = nh nw), as HF's
    ``generate_relative_position_index``: patch i -> patch j reads the row of their offset
    (dy + nh - 1) (2 nw - 1) + (dx + nw - 1); the last three rows are CLS -> patch,
    patch -> CLS and CLS -> CLS."""
    D = (2 * nh - 1) * (2 * nw - 1) + 3
    ys, xs = np.meshgrid(np.arange(nh), np.arange(nw), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + nh - 1
    dx = xs[:, None] - xs[None, :] + nw - 1
    index = np.empty((nh * nw + 1,) * 2, np.int64)
    index[1:, 1:] = dy * (2 * nw - 1) + dx
    index[0, :] = D - 3
    index[:, 0] = D - 2
    index[0, 0] = D - 1
    return index


class RelativePositionBias:
    """One BEiT bias table (D, H) -> the attention bias (1, H, 1 + N, 1 + N) of a patch grid,
    cached per grid."""

    def __init__(self, table: np.ndarray, window: Tuple[int, int]):
        self.table = np.asarray(table, np.float32)
        self.window = window
        self.cache: Dict[Tuple[int, int], np.ndarray] = {}

    def __call__(self, nh: int, nw: int) -> np.ndarray:
        got = self.cache.get((nh, nw))
        if got is not None:
            return got
        wh, ww = self.window
        table = self.table
        if (nh, nw) != (wh, ww):
            # HF: the offset part viewed as (2 ww - 1, 2 wh - 1, H) (width first, as written
            # there) and resized bilinearly to (2 nh - 1, 2 nw - 1); the 3 CLS rows kept
            old_a, old_b = 2 * ww - 1, 2 * wh - 1
            sub = table[:-3].astype(np.float64).reshape(old_a, old_b, -1)
            sub = np.einsum("ya,abh,xb->yxh", _bilinear(old_a, 2 * nh - 1), sub, _bilinear(old_b, 2 * nw - 1))
            table = np.concatenate([sub.reshape(-1, table.shape[1]).astype(np.float32), table[-3:]])
        bias = table[relative_position_index(nh, nw)]  # (1 + N, 1 + N, H)
        bias = np.ascontiguousarray(bias.transpose(2, 0, 1))[None]
        if len(self.cache) < 8:
            self.cache[(nh, nw)] = bias
        return bias


@register("base")
class BeitModel(PreTrainedModel):
    """``transformers.BeitModel``: pixel_values (B, 3, H, W) -> last_hidden_state
    (B, 1 + nh nw, C) and pooler_output (B, C)."""

    model_types = ("beit",)
    base_prefixes = ("", "beit.")
    ignore_keys = (
        "relative_position_index",
        "mask_token",
        "lm_head.",
        "decode_head.",
        "auxiliary_head.",
        "fpn",
    )

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H = cfg.require("hidden_size"), cfg.require("num_attention_heads")
        F = cfg.require("intermediate_size")
        eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.hidden_size, self.channels = C, int(cfg.get("num_channels", 3))
        self.patch = pair(cfg.get("patch_size", 16))
        if min(self.patch) <= 0:
            raise CheckpointError(f"config.json: patch_size must be positive, got {cfg.get('patch_size')!r}")
        image = pair(cfg.get("image_size", 224))
        self.window = (image[0] // self.patch[0], image[1] // self.patch[1])
        if min(self.window) <= 0:
            raise CheckpointError(f"config.json: image_size {image} holds no {self.patch} patch")
        ph, pw = self.patch
        self.patch_embed = _C.Conv2d(
            w.get("embeddings.patch_embeddings.projection.weight", (C, self.channels, ph, pw)),
            w.get("embeddings.patch_embeddings.projection.bias", (C,)),
            stride=self.patch,
            dtype=w.dtype,
        )
        self.cls_token = w.get("embeddings.cls_token", (1, 1, C))
        self.position_embeddings = None
        if cfg.get("use_absolute_position_embeddings", False):
            pos = w.get("embeddings.position_embeddings")
            if pos.shape != (1, self.window[0] * self.window[1] + 1, C):
                raise CheckpointError(
                    f"embeddings.position_embeddings has shape {pos.shape}, expected "
                    f"(1, {self.window[0] * self.window[1] + 1}, {C})"
                )
            self.position_embeddings = pos[0]
        D = (2 * self.window[0] - 1) * (2 * self.window[1] - 1) + 3
        self.shared_bias = None
        if cfg.get("use_shared_relative_position_bias", False):
            key = self._first(w, "relative_position_bias.relative_position_bias_table", "encoder.")
            self.shared_bias = RelativePositionBias(w.get(key, (D, H)), self.window)
        layer_scale = float(cfg.get("layer_scale_init_value", 0.1)) > 0
        layers: List[_C.TransformerBlock] = []
        self.layer_bias: List[Optional[RelativePositionBias]] = []
        act = cfg.get("hidden_act", "gelu")
        for i in w.layer_range(cfg.require("num_hidden_layers")):
            p = self._layer_prefix(w, i)

            def g(name, kind, *shape, optional=False):
                for k in _LAYER_KEYS[name]:
                    if w.has(f"{p}{k}.{kind}"):
                        return w.get(f"{p}{k}.{kind}", shape, matrix=len(shape) == 2)
                if optional:
                    return None
                return w.get(f"{p}{_LAYER_KEYS[name][0]}.{kind}", shape)  # raises: names the key

            l1 = w.get(p + "lambda_1", (C,)) if layer_scale else None
            l2 = w.get(p + "lambda_2", (C,)) if layer_scale else None
            o_w, o_b = _scaled(g("o", "weight", C, C), g("o", "bias", C), l1)
            d_w, d_b = _scaled(g("fc2", "weight", C, F), g("fc2", "bias", C), l2)
            qkv_bias = {}
            q_b, v_b = g("q", "bias", C, optional=True), g("v", "bias", C, optional=True)
            if q_b is not None or v_b is not None:  # the key has no bias: zeros in the fused GEMM
                zeros = np.zeros(C, np.float32)
                qkv_bias = dict(
                    q_bias=zeros if q_b is None else q_b, k_bias=zeros, v_bias=zeros if v_b is None else v_b
                )
            attn = _C.MultiHeadAttention(
                C,
                H,
                q_weight=g("q", "weight", C, C),
                k_weight=g("k", "weight", C, C),
                v_weight=g("v", "weight", C, C),
                **qkv_bias,
                o_weight=o_w,
                o_bias=o_b,
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("fc1", "weight", F, C),
                d_w,
                up_bias=g("fc1", "bias", F),
                down_bias=d_b,
                activation=act,
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(
                w.get(p + "layernorm_before.weight", (C,)), w.get(p + "layernorm_before.bias", (C,)), eps=eps
            )
            n2 = _C.LayerNorm(
                w.get(p + "layernorm_after.weight", (C,)), w.get(p + "layernorm_after.bias", (C,)), eps=eps
            )
            layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
            table = (
                g("rel", "relative_position_bias_table", D, H, optional=True)
                if cfg.get("use_relative_position_bias", False)
                else None
            )
            if cfg.get("use_relative_position_bias", False) and table is None:
                raise CheckpointError(
                    f"{w.ckpt.directory}: checkpoint is missing layer {i}'s relative_position_bias_table"
                )
            self.layer_bias.append(RelativePositionBias(table, self.window) if table is not None else None)
            w.release()
        self.layers = layers
        self.use_mean_pooling = bool(cfg.get("use_mean_pooling", True))
        self.layernorm = None  # Identity with mean pooling
        if not self.use_mean_pooling:
            self.layernorm = _C.LayerNorm(
                w.get("layernorm.weight", (C,)), w.get("layernorm.bias", (C,)), eps=eps
            )
        self.pool_norm = None
        if self.use_mean_pooling:
            self.pool_norm = _C.LayerNorm(
                w.get("pooler.layernorm.weight", (C,)), w.get("pooler.layernorm.bias", (C,)), eps=eps
            )

    @staticmethod
    def _layer_prefix(w: Weights, i: int) -> str:
        for p in (f"layers.{i}.", f"encoder.layer.{i}."):
            if w.has(p + "layernorm_before.weight"):
                return p
        return f"layers.{i}."

    @staticmethod
    def _first(w: Weights, key: str, legacy_prefix: str) -> str:
        return key if w.has(key) else legacy_prefix + key

    def _embed(self, pixel_values) -> Tuple[np.ndarray, int, int]:
        x = check_pixel_values(pixel_values, self.channels)
        B, _, Hh, Ww = x.shape
        ph, pw = self.patch
        nh, nw = Hh // ph, Ww // pw
        if nh == 0 or nw == 0:
            raise _C.TfcoreValueError(f"pixel_values {x.shape} holds no {ph}x{pw} patch")
        patches = self.patch_embed(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), channels_last=True)
        C = self.hidden_size
        h = np.empty((B, 1 + nh * nw, C), np.float32)
        h[:, 0] = self.cls_token[0, 0]
        h[:, 1:] = patches.reshape(B, nh * nw, C)
        if self.position_embeddings is not None:
            pos = self.position_embeddings
            if nh * nw + 1 != pos.shape[0] or Hh != Ww:  # HF resizes in these cases (bicubic)
                grid = pos[1:].reshape(self.window[0], self.window[1], C)
                pos = np.concatenate([pos[:1], resize_grid(grid, nh, nw).reshape(nh * nw, C)])
            h += pos
        return h, nh, nw

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> last_hidden_state (B, 1 + N, C),
        pooler_output (B, C), optional hidden_states / attentions, as transformers' BeitModel.
        Any image size: the patch grid is H // patch x W // patch and the biases and
        absolute positions are resized to it as HF does (interpolate_pos_encoding is accepted
        for HF's signature; the resizing does not depend on it)."""
        h, nh, nw = self._embed(pixel_values)
        shared = self.shared_bias(nh, nw) if self.shared_bias is not None else None
        hidden = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer, rel in zip(self.layers, self.layer_bias):
            bias = shared
            if rel is not None:
                bias = rel(nh, nw) if bias is None else bias + rel(nh, nw)
            if output_attentions:
                h, a = layer(h, bias=bias, output_attentions=True)
                attentions.append(a)
            else:
                h = layer(h, bias=bias)
            if output_hidden_states:
                hidden.append(h)
        last = self.layernorm(h) if self.layernorm is not None else h
        if self.use_mean_pooling:
            pooled = self.pool_norm(np.ascontiguousarray(last[:, 1:].mean(axis=1, dtype=np.float32)))
        else:
            pooled = np.ascontiguousarray(last[:, 0])
        return ModelOutput(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )


def _scaled(weight: np.ndarray, bias: Optional[np.ndarray], scale: Optional[np.ndarray]):
    """Fold a layer scale λ into a projection: λ (W x + b) = (diag(λ) W) x + λ b."""
    if scale is None:
        return weight, bias
    if weight.dtype == np.uint16:  # bf16 bits (bfloat16 model): scaled in float32
        weight = _C.bfloat16_to_float32(weight)
    return (weight * scale[:, None]).astype(np.float32), None if bias is None else (bias * scale).astype(
        np.float32
    )


@register("image-classification")
class BeitForImageClassification(PreTrainedModel):
    """``transformers.BeitForImageClassification``: a Linear classifier over BeitModel's
    pooler_output (mean of the patch tokens, normalised, with use_mean_pooling)."""

    model_types = ("beit",)
    ignore_keys = BeitModel.ignore_keys

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("beit.", ""), self.ignore_keys, weights.dtype)
        self.beit = BeitModel(config, base)
        weights.used |= base.used
        add_image_classifier(self, config, weights, self.beit.hidden_size)

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> logits (B, num_labels), plus BeitModel's
        optional hidden_states and attentions."""
        out = self.beit(
            pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        return ModelOutput(
            logits=self.classifier(out.pooler_output),
            hidden_states=out.get("hidden_states"),
            attentions=out.get("attentions"),
        )
