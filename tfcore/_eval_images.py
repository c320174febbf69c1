"""Image helpers of ``tfcore.eval``: ``embed_images`` and ``zero_shot_classify`` over image
files, PIL images or arrays, with the model directory's ``preprocessor_config.json``
(:class:`tfcore.image.ImageProcessor`) and tokenizer."""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence

import numpy as np

from . import _C, text
from ._progress import progress
from .image import ImageProcessor, load_image

__all__ = ["embed_images", "zero_shot_classify"]


def _batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise _C.TfcoreValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return int(batch_size)


def _processor(model, processor) -> ImageProcessor:
    if processor is not None:
        return processor
    path = getattr(model, "name_or_path", None)
    if not path:
        raise _C.TfcoreValueError("pass processor= (the model was not loaded from a directory)")
    return ImageProcessor.from_pretrained(path)


def _images(images) -> List[Any]:
    if isinstance(images, (str, os.PathLike)) or not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise _C.TfcoreValueError("images is empty")
    return list(images)


def _features(model, pixel_values: np.ndarray) -> np.ndarray:
    if hasattr(model, "get_image_features"):
        return model.get_image_features(pixel_values)
    out = model(pixel_values)
    pooled = out.get("pooler_output")
    if pooled is None:
        raise _C.TfcoreValueError(f"{type(model).__name__} has no pooled image output to embed with")
    return pooled


def embed_images(
    model,
    images,
    *,
    processor: Optional[ImageProcessor] = None,
    batch_size: int = 32,
    normalize: bool = True,
    show_progress: Optional[bool] = None,
) -> np.ndarray:
    """(N, D) float32 image embeddings: ``get_image_features`` of a CLIP-style model (else the
    vision model's ``pooler_output``), unit length when normalize. images: file paths, PIL
    images or (H, W, 3) arrays (or one of them); processor defaults to the model directory's
    ``preprocessor_config.json``. Files are opened one batch at a time."""
    proc = _processor(model, processor)
    items, bs = _images(images), _batch_size(batch_size)
    out = []
    starts = range(0, len(items), bs)
    for s in progress(starts, total=len(starts), desc="embedding images", show=show_progress, unit="batch"):
        batch = [load_image(x) if isinstance(x, (str, os.PathLike)) else x for x in items[s : s + bs]]
        out.append(_features(model, proc(batch)["pixel_values"]))
    emb = np.concatenate(out).astype(np.float32)
    if normalize:
        emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return emb


def zero_shot_classify(
    model,
    images,
    labels: Sequence[str],
    *,
    template: str = "a photo of a {}.",
    tokenizer=None,
    processor: Optional[ImageProcessor] = None,
    batch_size: int = 32,
    show_progress: Optional[bool] = None,
) -> np.ndarray:
    """(N, len(labels)) float32 probabilities: softmax over labels of CLIP's scaled cosine
    similarity between each image and ``template.format(label)`` (as ``CLIPModel``'s
    ``logits_per_image.softmax(-1)``); for SigLIP the sigmoid of each (image, label) logit
    (``SiglipModel``'s ``logits_per_image.sigmoid()``: independent, rows need not sum to 1),
    the texts padded to max_length as SigLIP's processor does. The label texts are embedded once."""
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)) or not labels:
        raise _C.TfcoreValueError("labels must be a non-empty list of str")
    if not all(isinstance(x, str) and x for x in labels):
        raise _C.TfcoreTypeError("labels must be non-empty strings")
    if not isinstance(template, str) or "{}" not in template:
        raise _C.TfcoreValueError(f"template must be a str with a '{{}}' for the label, got {template!r}")
    if not hasattr(model, "get_text_features") or not hasattr(model, "logit_scale"):
        raise _C.TfcoreTypeError(
            f"zero-shot classification needs an image-text model (CLIPModel, SiglipModel), got {type(model).__name__}"
        )
    if tokenizer is None:
        path = getattr(model, "name_or_path", None)
        if not path:
            raise _C.TfcoreValueError("pass tokenizer= (the model was not loaded from a directory)")
        tokenizer = text.load_tokenizer(path)
    texts = [template.format(x) for x in labels]
    if hasattr(model, "tokenize_labels"):  # SigLIP: padded to max_length, no mask
        inputs = model.tokenize_labels(tokenizer, texts)
    else:
        enc = tokenizer.encode_batch(texts)
        inputs = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        }
    text_emb = model.get_text_features(**inputs)
    text_emb = text_emb / np.linalg.norm(text_emb, axis=-1, keepdims=True)
    img = embed_images(model, images, processor=processor, batch_size=batch_size, show_progress=show_progress)
    logits = (img @ text_emb.T).astype(np.float64) * np.exp(model.logit_scale)
    if hasattr(model, "logit_bias"):  # SigLIP: an independent sigmoid per (image, label)
        return (1 / (1 + np.exp(-(logits + model.logit_bias)))).astype(np.float32)
    logits -= logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)
