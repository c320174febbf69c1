"""SegFormer: SegformerModel, SegformerForImageClassification and
SegformerForSemanticSegmentation from Hugging Face checkpoints.

The encoder (Mix Transformer) is PVT v2's with SegFormer's checkpoint names: the same
mix_transformer.MixBlock (efficient self-attention on a strided-conv-reduced map, Mix-FFN
with a depthwise conv); its LayerNorms use torch's default eps 1e-5 (HF builds them without
config.layer_norm_eps).

All-MLP decoder (HF's SegformerDecodeHead), logits at the first stage's resolution:

    d_i = Linear_i(x_i)                 each stage's map (h_i, w_i, C_i) -> (h_i, w_i, D)
    u_i = bilinear(d_i) to (h_0, w_0)   align_corners=False
    y   = ReLU(BN(Fuse(cat(u_3, u_2, u_1, u_0))))       1x1 conv 4D -> D, no bias
    logits = Classifier(y)              1x1 conv D -> labels

Linear_i, the bilinear resize and Fuse are all linear and the resize's weights sum to 1, so
Fuse_i Linear_i is folded at load into one (D, C_i) matrix per stage (float64) and the
resize runs on the C_i-channel maps: y = ReLU(BN(sum_i W_i bilinear(x_i) + b)), one GEMM of
K = sum C_i (SegFormer-b2: 1024) instead of the 4D = 3072 of HF's fuse, with BatchNorm folded
into it too. The resized maps are written into their slice of one (B, h0, w0, sum C_i)
buffer (the concatenation is not a separate copy).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .pvt_v2 import PvtV2Model
from .registry import register
from .vision import add_image_classifier

__all__ = ["SegformerModel", "SegformerForImageClassification", "SegformerForSemanticSegmentation"]


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 weights of torch's bilinear interpolation along one axis
    (align_corners=False, no antialias): source (i + 0.5) n_in / n_out - 0.5, clamped at 0."""
    w = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        w[i, i0] += 1.0 - t
        w[i, i1] += t
    return w.astype(np.float32)


def resize_bilinear(x: np.ndarray, height: int, width: int, out: np.ndarray) -> None:
    """x (B, h, w, C) channels last -> out (B, height, width, C) (a view is fine), torch's
    bilinear interpolation with align_corners=False."""
    B, h, w, C = x.shape
    if (h, w) == (height, width):  # torch's identity at scale 1
        out[...] = x
        return
    rows = np.matmul(bilinear_matrix(h, height), x.reshape(B, h, w * C))  # (B, height, w*C)
    out[...] = np.matmul(bilinear_matrix(w, width), rows.reshape(B * height, w, C)).reshape(
        B, height, width, C
    )


@register("base")
class SegformerModel(PvtV2Model):
    """``transformers.SegformerModel``: the Mix Transformer encoder (overlapping patch
    embeddings, efficient self-attention, Mix-FFN); last_hidden_state (B, C, h, w)."""

    model_types = ("segformer",)
    base_prefixes = ("", "segformer.")
    KEYS = {
        "embed": "encoder.patch_embeddings.{s}.proj",
        "embed_norm": "encoder.patch_embeddings.{s}.layer_norm",
        "block": "encoder.block.{s}.{i}.",
        "stage_norm": "encoder.layer_norm.{s}",
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "out": "attention.output.dense",
        "sr": "attention.self.sr",
        "sr_norm": "attention.self.layer_norm",
    }
    layer_norm_eps = 1e-5
    flat_attentions = True  # HF's SegformerModel lists every block's attention in one tuple

    def __init__(self, config: Config, weights: Weights):
        if config.get("reshape_last_stage", True) is False:
            raise CheckpointError(
                "config.json: reshape_last_stage=false (the last stage as (B, h*w, C) tokens) is not "
                "supported by tfcore's SegFormer; only the default true"
            )
        super().__init__(config, weights)


class _SegformerHead(PreTrainedModel):
    """A head over SegformerModel loaded from the "segformer." prefix."""

    model_types = ("segformer",)
    base_prefixes = ("",)
    ignore_keys = ("num_batches_tracked",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("segformer.", ""), self.ignore_keys, weights.dtype)
        self.segformer = SegformerModel(config, base)
        weights.used |= base.used
        self.num_labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)


@register("image-classification")
class SegformerForImageClassification(_SegformerHead):
    """``transformers.SegformerForImageClassification``: a Linear classifier over the mean of
    the last stage."""

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        add_image_classifier(self, config, weights, self.segformer.hidden_sizes[-1])

    def forward(self, pixel_values, output_hidden_states: bool = False, output_attentions: bool = False):
        """pixel_values (B, channels, H, W) float32 -> logits (B, num_labels)."""
        x, hidden, attentions = self.segformer._encode(pixel_values, output_hidden_states, output_attentions)
        B, h, w, C = x.shape
        return ModelOutput(
            logits=self.classifier(x.reshape(B, h * w, C).mean(axis=1, dtype=np.float32)),
            hidden_states=self.segformer._hidden_out(hidden),
            attentions=self.segformer._attentions_out(attentions),
        )


@register("semantic-segmentation")
class SegformerForSemanticSegmentation(_SegformerHead):
    """``transformers.SegformerForSemanticSegmentation``: the all-MLP decoder over every
    stage; logits (B, num_labels, h0, w0) at the first stage's resolution (H/4 x W/4 for
    stride 4), as HF returns them (upsample to the image yourself)."""

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        sizes: List[int] = self.segformer.hidden_sizes
        n = len(sizes)
        D = config.get("decoder_hidden_size", 256)
        fuse = weights.get("decode_head.linear_fuse.weight", (D, n * D, 1, 1)).reshape(D, n * D)
        fuse = fuse.astype(np.float64)
        parts, bias = [], np.zeros(D, np.float64)
        for i, C in enumerate(sizes):
            p = f"decode_head.linear_c.{i}.proj."
            proj = weights.get(p + "weight", (D, C)).astype(np.float64)
            # cat(u_{n-1}, ..., u_0): stage i's D channels are block n - 1 - i of fuse's input
            F_i = fuse[:, (n - 1 - i) * D : (n - i) * D]
            parts.append(F_i @ proj)
            bias += F_i @ weights.get(p + "bias", (D,)).astype(np.float64)
        bn = "decode_head.batch_norm."
        mean, var = (weights.get(bn + k, (D,)).astype(np.float64) for k in ("running_mean", "running_var"))
        gamma, beta = (weights.get(bn + k, (D,)).astype(np.float64) for k in ("weight", "bias"))
        scale = gamma / np.sqrt(var + 1e-5)  # nn.BatchNorm2d's default eps
        weight = np.concatenate(parts, axis=1) * scale[:, None]
        self.fuse = _C.Linear(
            weight.astype(np.float32),
            (scale * (bias - mean) + beta).astype(np.float32),
            activation="relu",
            dtype=weights.dtype,
        )
        self.classifier = _C.Linear(
            weights.get("decode_head.classifier.weight", (self.num_labels, D, 1, 1)).reshape(
                self.num_labels, D
            ),
            weights.get("decode_head.classifier.bias", (self.num_labels,)),
            dtype=weights.dtype,
        )
        self.decoder_hidden_size = D

    def forward(self, pixel_values, output_hidden_states: bool = False, output_attentions: bool = False):
        """pixel_values (B, channels, H, W) float32 -> logits (B, num_labels, h0, w0)."""
        maps: List[np.ndarray] = []
        _, hidden, attentions = self.segformer._encode(
            pixel_values, output_hidden_states, output_attentions, stage_maps=maps
        )
        B, h0, w0, _ = maps[0].shape
        total = sum(m.shape[3] for m in maps)
        cat = np.empty((B, h0, w0, total), np.float32)
        off = 0
        for m in maps:
            C = m.shape[3]
            resize_bilinear(m, h0, w0, cat[..., off : off + C])
            off += C
        y = self.fuse(cat.reshape(B, h0 * w0, total))
        logits = self.classifier(y).reshape(B, h0, w0, self.num_labels)
        return ModelOutput(
            logits=np.ascontiguousarray(logits.transpose(0, 3, 1, 2)),
            hidden_states=self.segformer._hidden_out(hidden),
            attentions=self.segformer._attentions_out(attentions),
        )
