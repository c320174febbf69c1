"""Swin Transformer: SwinModel and SwinForImageClassification from Hugging Face checkpoints.

Tokens stay in image order, (B, Hh*Ww, C), from the patch embedding to the pooler. A layer
(HF's SwinLayer) is one C call, tfcore.SwinLayer:

    h = h + WindowAttention(layernorm_before(h))   qkv GEMM, window kernel, output GEMM + residual
    h = h + FeedForward(layernorm_after(h))        GELU and the residual fused into the GEMMs

The cyclic shift, the padding to multiples of the window, the window partition and its
reverse are indexing inside the window kernel (tfcore.WindowAttention): HF's torch.roll,
pad, window_partition and window_reverse copies have no counterpart here.

Patch embedding: the stride = kernel = patch convolution is a GEMM over non-overlapping
patches; the image is cut into patch rows (one im2col copy, zero-filled where HF's
maybe_pad pads the image) and multiplied by the conv weight as a tfcore.Linear.
Patch merging: one gather copy puts each 2x2 neighbourhood in HF's order into a row of
4C (zero-filled where HF pads odd maps), LayerNorm(4C) runs in place on it, then the
4C -> 2C Linear. The copy is the one data movement merging needs: the GEMM wants each
row's 4C inputs contiguous, and they come from two image rows.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .registry import register
from .vision import add_image_classifier, check_pixel_values, merge_2x2, pair, resize_grid

__all__ = ["SwinModel", "SwinForImageClassification"]

# Checkpoint names of a layer's tensors: HF's save_pretrained writes the classic names
# (left); transformers 5 modules use the right ones, accepted too.
_LAYER_KEYS = {
    "q": ("attention.self.query", "attention.q_proj"),
    "k": ("attention.self.key", "attention.k_proj"),
    "v": ("attention.self.value", "attention.v_proj"),
    "o": ("attention.output.dense", "attention.o_proj"),
    "table": (
        "attention.self.relative_position_bias_table",
        "attention.relative_position_bias.relative_position_bias_table",
    ),
    "fc1": ("intermediate.dense", "mlp.fc1"),
    "fc2": ("output.dense", "mlp.fc2"),
}


def _cat(parts: List[np.ndarray]) -> np.ndarray:
    """Stack projection weights (or biases) along the output axis; bf16 bits stay bits
    unless the parts disagree, then everything is float32."""
    if len({p.dtype for p in parts}) > 1:
        parts = [_C.bfloat16_to_float32(p) if p.dtype == np.uint16 else p for p in parts]
    return np.concatenate(parts, axis=0)


def _table_window(table: np.ndarray, key: str) -> int:
    """Window side w of a ((2 w - 1)^2, heads) relative-position bias table."""
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0] or side % 2 == 0:
        raise CheckpointError(f"{key} has {table.shape[0]} rows, not (2 w - 1)^2 for a window side w")
    return (side + 1) // 2


class _PatchMerging:
    """HF's SwinPatchMerging: 2x2 neighbours -> LayerNorm(4C) -> Linear(4C, 2C, no bias)."""

    def __init__(self, norm: _C.LayerNorm, reduction: _C.Linear):
        self.norm, self.reduction = norm, reduction

    def __call__(self, h: np.ndarray, dims: Tuple[int, int]) -> np.ndarray:
        rows = merge_2x2(h, dims)
        return self.reduction(self.norm(rows, out=rows))


class _SwinStage:
    def __init__(self, layers: List[_C.SwinLayer], downsample: Optional[_PatchMerging]):
        self.layers, self.downsample = layers, downsample


@register("base")
class SwinModel(PreTrainedModel):
    """``transformers.SwinModel``: patch embedding, stages of (shifted) window attention
    layers with patch merging between them, final LayerNorm, mean-pooled output.

    Window clipping follows HF's SwinLayer: a stage whose map has min(height, width) <=
    window_size attends over windows of side min(height, width) without shift. Older HF
    versions clipped when the model was built and stored a smaller bias table; such
    checkpoints load too (the table's size sets that layer's window, unshifted). When the
    clipped window is smaller than the table's (transformers 5 raises there), the bias is
    read from the table at the same relative offsets."""

    model_types = ("swin",)
    base_prefixes = ("", "swin.")
    ignore_keys = ("relative_position_index", "mask_token")

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights)
        cfg, w = config, weights
        C0 = cfg.require("embed_dim")
        depths, heads = cfg.get("depths"), cfg.get("num_heads")
        if (
            not isinstance(depths, list)
            or not isinstance(heads, list)
            or len(depths) != len(heads)
            or not depths
            or not all(isinstance(v, int) and v > 0 for v in depths + heads)
        ):
            raise CheckpointError(
                f"config.json: depths {depths!r} and num_heads {heads!r} must be lists of "
                "positive ints of the same length"
            )
        self.channels = int(cfg.get("num_channels", 3))
        self.patch = pair(cfg.get("patch_size", 4))
        if min(self.patch) <= 0:
            raise CheckpointError(f"config.json: patch_size must be positive, got {cfg.get('patch_size')!r}")
        self.image_size = pair(cfg.get("image_size", 224))
        self.window_size = cfg.require("window_size")
        eps = float(cfg.get("layer_norm_eps", 1e-5))
        mlp_ratio = float(cfg.get("mlp_ratio", 4.0))
        act = cfg.get("hidden_act", "gelu")
        ph, pw = self.patch
        conv = w.get("embeddings.patch_embeddings.projection.weight", (C0, self.channels, ph, pw))
        self.patch_embed = _C.Linear(
            np.ascontiguousarray(conv.reshape(C0, -1)),
            w.get("embeddings.patch_embeddings.projection.bias", (C0,)),
            dtype=w.dtype,
        )
        # HF's SwinEmbeddings.norm and SwinPatchMerging.norm are nn.LayerNorm(dim): eps 1e-5,
        # not layer_norm_eps
        self.embed_norm = _C.LayerNorm(
            w.get("embeddings.norm.weight", (C0,)), w.get("embeddings.norm.bias", (C0,))
        )
        self.position_embeddings = None
        if cfg.get("use_absolute_embeddings", False):
            pos = w.get("embeddings.position_embeddings")
            if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != C0:
                raise CheckpointError(
                    f"embeddings.position_embeddings has shape {pos.shape}, expected (1, N, {C0})"
                )
            self.position_embeddings = pos[0]
        self.stages: List[_SwinStage] = []
        n_layers = sum(depths)
        bar = iter(w.layer_range(n_layers))
        for s, (depth, H) in enumerate(zip(depths, heads)):
            C = C0 * 2**s
            if C % H:
                raise CheckpointError(f"config.json: stage {s} width {C} is not divisible by {H} heads")
            self._stage = s  # read by a subclass's _layer (SwinV2 sizes its windows per stage)
            layers = [
                self._layer(w, f"encoder.layers.{s}.blocks.{i}.", C, H, i, eps, mlp_ratio, act, bar)
                for i in range(depth)
            ]
            down = None
            if s < len(depths) - 1:
                down = self._downsample(w, f"encoder.layers.{s}.downsample.", C)
            self.stages.append(_SwinStage(layers, down))
        for _ in bar:  # finish the progress bar
            pass
        self.num_features = C0 * 2 ** (len(depths) - 1)
        F = self.num_features
        self.layernorm = _C.LayerNorm(w.get("layernorm.weight", (F,)), w.get("layernorm.bias", (F,)), eps=eps)
        self.add_pooling_layer = add_pooling_layer

    @staticmethod
    def _downsample(w: Weights, p: str, C: int) -> _PatchMerging:
        return _PatchMerging(
            _C.LayerNorm(w.get(p + "norm.weight", (4 * C,)), w.get(p + "norm.bias", (4 * C,))),
            _C.Linear(w.get(p + "reduction.weight", (2 * C, 4 * C), matrix=True), dtype=w.dtype),
        )

    def _layer(
        self, w: Weights, p: str, C: int, H: int, index: int, eps: float, mlp_ratio: float, act: str, bar
    ) -> _C.SwinLayer:
        new = w.has(p + _LAYER_KEYS["q"][1] + ".weight")
        key = {k: p + v[1 if new else 0] for k, v in _LAYER_KEYS.items()}
        F = int(mlp_ratio * C)

        def g(name, kind, *shape, optional=False):
            return w.get(f"{key[name]}.{kind}", shape, optional=optional, matrix=len(shape) == 2)

        biases = [g(n, "bias", C, optional=True) for n in "qkv"]
        if any(b is None for b in biases) and not all(b is None for b in biases):
            raise CheckpointError(f"{p}: some of the query/key/value biases are missing")
        table = w.get(key["table"])
        tw = _table_window(table, key["table"])
        if table.shape[1] != H:
            raise CheckpointError(f"{key['table']} has shape {table.shape}, expected (rows, {H} heads)")
        ws = self.window_size
        # a table smaller than the configured window: built by an older HF that clipped the
        # window to the stage resolution (and dropped the shift) when the model was made
        window, shift = (ws, ws // 2 if index % 2 else 0) if tw >= ws else (tw, 0)
        attention = _C.WindowAttention(
            C,
            H,
            window,
            shift_size=shift,
            qkv_weight=_cat([g(n, "weight", C, C) for n in "qkv"]),
            qkv_bias=None if biases[0] is None else np.concatenate(biases),
            o_weight=g("o", "weight", C, C),
            o_bias=g("o", "bias", C),
            relative_position_bias_table=table,
            dtype=w.dtype,
        )
        mlp = _C.FeedForward(
            g("fc1", "weight", F, C),
            g("fc2", "weight", C, F),
            up_bias=g("fc1", "bias", F),
            down_bias=g("fc2", "bias", C),
            activation=act,
            dtype=w.dtype,
        )
        n1 = _C.LayerNorm(
            w.get(p + "layernorm_before.weight", (C,)), w.get(p + "layernorm_before.bias", (C,)), eps=eps
        )
        n2 = _C.LayerNorm(
            w.get(p + "layernorm_after.weight", (C,)), w.get(p + "layernorm_after.bias", (C,)), eps=eps
        )
        w.release()
        next(bar, None)
        return _C.SwinLayer(attention, mlp, n1, n2)

    # -- forward
    def _patches(self, pixel_values) -> Tuple[np.ndarray, int, int]:
        """pixel_values (B, ch, H, W) -> patch embeddings (B, nh*nw, C0), nh, nw; the image is
        zero-padded to multiples of the patch like HF's SwinPatchEmbeddings.maybe_pad."""
        x = check_pixel_values(pixel_values, self.channels)
        B, ch, Hh, Ww = x.shape
        ph, pw = self.patch
        nh, nw = -(-Hh // ph), -(-Ww // pw)
        fh, fw = Hh // ph, Ww // pw  # whole patches
        rh, rw = Hh - fh * ph, Ww - fw * pw  # rows / columns of the last, padded patch
        # cols (B, nh, nw, ch, ph, pw) in the conv weight's (c, ky, kx) order, written through
        # its (B, ch, nh, ph, nw, pw) view: one copy of the image, zeros where HF pads
        cols = (np.zeros if rh or rw else np.empty)((B, nh, nw, ch, ph, pw), np.float32)
        view = cols.transpose(0, 3, 1, 4, 2, 5)
        view[:, :, :fh, :, :fw] = x[:, :, : fh * ph, : fw * pw].reshape(B, ch, fh, ph, fw, pw)
        if rw:
            view[:, :, :fh, :, fw, :rw] = x[:, :, : fh * ph, fw * pw :].reshape(B, ch, fh, ph, rw)
        if rh:
            view[:, :, fh, :rh, :fw] = x[:, :, fh * ph :, : fw * pw].reshape(B, ch, rh, fw, pw)
        if rh and rw:
            view[:, :, fh, :rh, fw, :rw] = x[:, :, fh * ph :, fw * pw :]
        return self.patch_embed(cols.reshape(B, nh * nw, ch * ph * pw)), nh, nw

    def _positions(self, Hh: int, Ww: int, nh: int, nw: int, interpolate: bool) -> np.ndarray:
        """(nh*nw, C0) absolute position embeddings, resized like HF's interpolate_pos_encoding."""
        pos = self.position_embeddings
        if not interpolate or (pos.shape[0] == nh * nw and Hh == Ww):
            if pos.shape[0] != nh * nw:
                raise _C.TfcoreValueError(
                    f"the image gives {nh}x{nw} patches but the model has {pos.shape[0]} position embeddings; "
                    "pass interpolate_pos_encoding=True to resize them"
                )
            return pos
        side = math.isqrt(pos.shape[0])
        th, tw = Hh // self.patch[0], Ww // self.patch[1]
        if side * side != pos.shape[0] or (th, tw) != (nh, nw):
            raise _C.TfcoreValueError(
                f"cannot resize {pos.shape[0]} position embeddings to a {nh}x{nw} patch grid "
                "(HF resizes a square grid to whole patches only)"
            )
        return resize_grid(pos.reshape(side, side, -1), nh, nw).reshape(nh * nw, -1)

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
        always_partition: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> last_hidden_state (B, tokens, C),
        pooler_output (B, C), and with output_hidden_states the embeddings and each stage's
        output as hidden_states (B, tokens, C) and reshaped_hidden_states (B, C, h, w); with
        output_attentions the last layer's window attentions of each stage, (B nW, heads,
        N, N) — as the transformers class of the same name."""
        h, nh, nw = self._patches(pixel_values)
        h = self.embed_norm(h, out=h)
        if self.position_embeddings is not None:
            h += self._positions(
                pixel_values.shape[2], pixel_values.shape[3], nh, nw, interpolate_pos_encoding
            )
        dims = (nh, nw)
        hidden = [h] if output_hidden_states else None
        reshaped = [self._spatial(h, dims)] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for stage in self.stages:
            weights = None
            B, _, C = h.shape
            x = h.reshape(B, *dims, C)
            for layer in stage.layers:
                x = layer(x, output_attentions=output_attentions, always_partition=always_partition)
                if output_attentions:
                    x, weights = x
            h = x.reshape(B, -1, C)
            if stage.downsample is not None:
                h = stage.downsample(h, dims)
                dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
            if output_hidden_states:
                hidden.append(h)
                reshaped.append(self._spatial(h, dims))
            if output_attentions:
                attentions.append(weights)
        last = self.layernorm(h)
        pooled = last.mean(axis=1, dtype=np.float32) if self.add_pooling_layer else None
        return ModelOutput(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
            reshaped_hidden_states=tuple(reshaped) if reshaped is not None else None,
        )

    @staticmethod
    def _spatial(h: np.ndarray, dims: Tuple[int, int]) -> np.ndarray:
        B, _, C = h.shape
        return np.ascontiguousarray(h.reshape(B, *dims, C).transpose(0, 3, 1, 2))


@register("image-classification")
class SwinForImageClassification(PreTrainedModel):
    """``transformers.SwinForImageClassification``: a Linear classifier over SwinModel's
    mean-pooled output."""

    model_types = ("swin",)
    base_prefixes = ("",)
    ignore_keys = SwinModel.ignore_keys
    base_model, base_prefix = SwinModel, "swin."  # the backbone class and its checkpoint prefix

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, (self.base_prefix, ""), self.ignore_keys, weights.dtype)
        self.swin = self.base_model(config, base)
        weights.used |= base.used
        add_image_classifier(self, config, weights, self.swin.num_features)

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> logits (B, num_labels), plus SwinModel's
        optional hidden_states, attentions and reshaped_hidden_states."""
        out = self.swin(
            pixel_values,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            interpolate_pos_encoding=interpolate_pos_encoding,
        )
        return ModelOutput(
            logits=self.classifier(out.pooler_output),
            hidden_states=out.get("hidden_states"),
            attentions=out.get("attentions"),
            reshaped_hidden_states=out.get("reshaped_hidden_states"),
        )
