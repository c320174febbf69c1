"""Helpers the encoder families share: the post-norm TransformerBlock stack (with HF's
optional outputs and the padding-free path), BERT's per-layer checkpoint key names, and the
config readers for LayerNorm epsilon and activation name."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import Weights


def layer_norm_eps(cfg: Config, key: str = "layer_norm_eps", default: float = 1e-12) -> float:
    """The LayerNorm epsilon a config states under key (BERT's default 1e-12 if absent)."""
    return float(cfg.get(key, default))


def hidden_act(cfg: Config, key: str = "hidden_act") -> str:
    """The activation name a config states under key ("gelu" if absent); raises CheckpointError
    if it is not a string."""
    act = cfg.get(key, "gelu")
    if not isinstance(act, str):
        raise CheckpointError(f"config.json: {key} must be a string, got {act!r}")
    return act


def label_maps(cfg: Config) -> Tuple[Dict[int, str], Dict[str, int]]:
    """(id2label, label2id) of a classification checkpoint, as HF's config exposes them (int
    ids): config.json's id2label (keys "0", "1", ...), else num_labels (default 2) labels named
    LABEL_i. Raises CheckpointError on a malformed id2label."""
    raw = cfg.get("id2label")
    if raw:
        if not isinstance(raw, dict):
            raise CheckpointError(f"config.json: id2label must be a mapping, got {type(raw).__name__}")
        try:
            id2label = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise CheckpointError(
                f"config.json: id2label keys must be integers, got {list(raw)[:5]}"
            ) from None
        if sorted(id2label) != list(range(len(id2label))):
            raise CheckpointError(
                f"config.json: id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)}"
            )
    else:
        n = cfg.get("num_labels", 2)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CheckpointError(f"config.json: num_labels must be a positive integer, got {n!r}")
        id2label = {i: f"LABEL_{i}" for i in range(n)}
    return id2label, {v: k for k, v in id2label.items()}


# Checkpoint names of one HF BertLayer's tensors, shared by the BERT-derived encoders
# (BERT, RoBERTa, XLM-R, BigBird): EncoderStack.from_keys(w, "encoder.layer", BERT_LAYER_KEYS, ...)
BERT_LAYER_KEYS = dict(
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    o="attention.output.dense",
    n1="attention.output.LayerNorm",
    up="intermediate.dense",
    down="output.dense",
    n2="output.LayerNorm",
)


class EncoderStack:
    """A stack of TransformerBlocks run in order, collecting HF's optional outputs."""

    def __init__(self, layers: List[_C.TransformerBlock]):
        self.layers = layers

    @classmethod
    def from_keys(
        cls, w: Weights, prefix: str, keys: dict, C: int, H: int, F: int, L: int, eps: float, act: str
    ) -> "EncoderStack":
        """L post-norm blocks whose tensors are named prefix.{i}.{keys[part]}.{weight,bias}."""
        if C % H:
            raise CheckpointError(f"config.json: hidden size {C} is not divisible by {H} heads")
        layers: List[_C.TransformerBlock] = []
        for i in w.layer_range(L):

            def g(part, kind, *shape):
                return w.get(f"{prefix}.{i}.{keys[part]}.{kind}", shape, matrix=len(shape) == 2)

            attn = _C.MultiHeadAttention(
                C,
                H,
                q_weight=g("q", "weight", C, C),
                q_bias=g("q", "bias", C),
                k_weight=g("k", "weight", C, C),
                k_bias=g("k", "bias", C),
                v_weight=g("v", "weight", C, C),
                v_bias=g("v", "bias", C),
                o_weight=g("o", "weight", C, C),
                o_bias=g("o", "bias", C),
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("up", "weight", F, C),
                g("down", "weight", C, F),
                up_bias=g("up", "bias", F),
                down_bias=g("down", "bias", C),
                activation=act,
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(g("n1", "weight", C), g("n1", "bias", C), eps=eps)
            n2 = _C.LayerNorm(g("n2", "weight", C), g("n2", "bias", C), eps=eps)
            layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=False))
            w.release()
        return cls(layers)

    def __call__(
        self,
        h: np.ndarray,
        mask: Optional[np.ndarray],
        output_hidden_states: bool,
        output_attentions: bool,
        padding_free: bool = True,
    ):
        if mask is not None and padding_free and not output_attentions:
            return self._packed(h, mask, output_hidden_states)
        hidden = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            if output_attentions:
                h, a = layer(h, mask, output_attentions=True)
                attentions.append(a)
            else:
                h = layer(h, mask)
            if output_hidden_states:
                hidden.append(h)
        return (
            h,
            (tuple(hidden) if hidden is not None else None),
            (tuple(attentions) if attentions is not None else None),
        )

    def _packed(self, h: np.ndarray, mask: np.ndarray, output_hidden_states: bool):
        """Padding-free (ByteTransformer): the real tokens of all sequences back to back,
        GEMMs over those rows only, attention within each sequence. Masked attention over a
        sequence equals attention over its real tokens, so outputs at real positions are
        those of the padded path; padded positions come back as zeros."""
        B, T, C = h.shape
        lengths = mask.sum(axis=1)
        cu = np.concatenate([[0], np.cumsum(lengths[lengths > 0])]).astype(np.int64)
        x = np.ascontiguousarray(h[mask])[None]  # (1, N, C)

        def unpack(packed):
            full = np.zeros((B, T, C), np.float32)
            full[mask] = packed[0]
            return full

        hidden = [h] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, cu_seqlens=cu)
            if output_hidden_states:
                hidden.append(unpack(x))
        return unpack(x), (tuple(hidden) if hidden is not None else None), None
