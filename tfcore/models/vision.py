"""Helpers the vision families (vit.py, swin.py, swinv2.py, ...) share: the pixel_values check, the
(height, width) reading of config sizes, and bicubic resampling of position-embedding grids
matching ``torch.nn.functional.interpolate`` (mode="bicubic", align_corners=False), with and
without ``antialias`` — what ViT-family models use to run on image sizes other than the one
they were trained on — Swin's 2x2 patch-merging gather (merge_2x2), and the Linear classifier
of the ``*ForImageClassification`` heads (add_image_classifier)."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .. import _C
from ..config import Config
from .base import PreTrainedModel, Weights
from .encoder import label_maps


def check_pixel_values(x, channels: int) -> np.ndarray:
    """pixel_values as the vision models take them: a finite, non-empty float32 ndarray
    (batch, channels, height, width); raises TfcoreTypeError / TfcoreValueError otherwise."""
    if not isinstance(x, np.ndarray):
        raise _C.TfcoreTypeError(f"pixel_values must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise _C.TfcoreTypeError(f"pixel_values must have dtype float32, got {x.dtype}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise _C.TfcoreValueError(f"pixel_values must be (batch, {channels}, height, width), got {x.shape}")
    if x.size == 0:
        raise _C.TfcoreValueError(f"pixel_values is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise _C.TfcoreValueError("pixel_values contains NaN or Inf")
    return x


def pair(v) -> Tuple[int, int]:
    """A config size (patch_size, image_size) as (height, width): an int n means (n, n)."""
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _weights_plain(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of torch's upsample_bicubic2d: A = -0.75, 4 taps, source
    index (i + 0.5) * in/out - 0.5, out-of-range taps clamped to the border."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        real = (i + 0.5) * scale - 0.5
        base = math.floor(real)
        t = real - base
        for k, c in zip(range(-1, 3), _cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)):
            w[i, min(max(base + k, 0), n_in - 1)] += c
    return w


def _weights_antialias(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of torch's antialiased bicubic (PIL's filter, a = -0.5): the
    kernel widens by in/out when downsampling and each row's weights sum to 1."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / scale if scale > 1.0 else 1.0
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        taps = _cubic((np.arange(lo, hi) - center + 0.5) * inv, -0.5)
        total = taps.sum()
        w[i, lo:hi] = taps / total if total != 0 else taps
    return w


def resize_grid(grid: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    """grid (h, w, C) -> (height, width, C), float32, computed in float64."""
    h, w, _ = grid.shape
    make = _weights_antialias if antialias else _weights_plain
    wy, wx = make(h, height), make(w, width)
    out = np.einsum("yh,hwc->ywc", wy, grid.astype(np.float64))
    out = np.einsum("xw,ywc->yxc", wx, out)
    return out.astype(np.float32)


def merge_2x2(h: np.ndarray, dims: Tuple[int, int]) -> np.ndarray:
    """(B, Hh*Ww, C) tokens of an Hh x Ww map -> (B, ceil(Hh/2)*ceil(Ww/2), 4C): each 2x2
    neighbourhood in the order of Swin's patch merging (HF's SwinPatchMerging), zeros where
    an odd map is padded."""
    B, _, C = h.shape
    Hh, Ww = dims
    H2, W2 = (Hh + 1) // 2, (Ww + 1) // 2
    x = h.reshape(B, Hh, Ww, C)
    # rows of HF's torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]]):
    # merged[b, i, j, dx, dy] = x[b, 2i + dy, 2j + dx]; zeros where the map is padded
    merged = (np.zeros if Hh % 2 or Ww % 2 else np.empty)((B, H2, W2, 2, 2, C), np.float32)
    for dx in (0, 1):
        for dy in (0, 1):
            part = x[:, dy::2, dx::2]
            merged[:, : part.shape[1], : part.shape[2], dx, dy] = part
    return merged.reshape(B, H2 * W2, 4 * C)


def add_image_classifier(model: PreTrainedModel, config: Config, weights: Weights, features: int) -> None:
    """The head every ``*ForImageClassification`` puts over its pooled (B, features) vector:
    model.classifier, the Linear "classifier.weight" (num_labels, features) + "classifier.bias"
    in the checkpoint's dtype, and model.num_labels / id2label / label2id as HF's config gives
    them (config.json's id2label, else num_labels, default 2; a malformed id2label raises
    CheckpointError, as for the text heads)."""
    model.id2label, model.label2id = label_maps(config)
    n = len(model.id2label)
    model.classifier = _C.Linear(
        weights.get("classifier.weight", (n, features), matrix=True),
        weights.get("classifier.bias", (n,)),
        dtype=weights.dtype,
    )
    model.num_labels = n
