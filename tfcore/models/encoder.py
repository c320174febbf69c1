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


def hidden_act(cfg: Config, key: str = "hidden_act", default: str = "gelu") -> str:
    """The activation name a config states under key (default if absent); raises CheckpointError
    if it is not a string."""
    act = cfg.get(key, default)
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
        cls,
        w: Weights,
        prefix: str,
        keys: dict,
        C: int,
        H: int,
        F: int,
        L: int,
        eps: float,
        act: str,
        attention_options: Optional[dict] = None,
        norm_first: bool = False,
    ) -> "EncoderStack":
        """L post-norm (norm_first: pre-norm) blocks whose tensors are named
        prefix.{i}.{keys[part]}.{weight,bias}; attention_options go to every MultiHeadAttention
        (e.g. MPNet's relative bias)."""
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
                **(attention_options or {}),
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
            layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=norm_first))
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


QUICK_GELU = 1.702


def layer_norm(w: Weights, key: str, C: int, eps: float) -> _C.LayerNorm:
    """The LayerNorm whose tensors are {key}.weight and {key}.bias, both (C,)."""
    return _C.LayerNorm(w.get(key + ".weight", (C,)), w.get(key + ".bias", (C,)), eps=eps)


def clip_mlp(w: Weights, prefix: str, C: int, F: int, act: str) -> _C.FeedForward:
    """CLIPMLP / SiglipMLP: {prefix}fc1 (F, C) and {prefix}fc2 (C, F) with biases around act.
    ``quick_gelu`` (x sigmoid(1.702 x)) is not a tfcore activation: it equals
    silu(1.702 x) / 1.702, so fc1 is scaled by 1.702 and fc2 by 1 / 1.702 at load."""

    def f32(a):  # a bf16 model's projection may come as uint16 bits: scaled in float32
        return _C.bfloat16_to_float32(a) if a.dtype == np.uint16 else a

    up_w, up_b = w.get(prefix + "fc1.weight", (F, C), matrix=True), w.get(prefix + "fc1.bias", (F,))
    down_w = w.get(prefix + "fc2.weight", (C, F), matrix=True)
    quick = act == "quick_gelu"
    if quick:
        up_w, up_b = (f32(up_w) * QUICK_GELU).astype(np.float32), (up_b * QUICK_GELU).astype(np.float32)
        down_w = (f32(down_w) / QUICK_GELU).astype(np.float32)
    return _C.FeedForward(
        up_w,
        down_w,
        up_bias=up_b,
        down_bias=w.get(prefix + "fc2.bias", (C,)),
        activation="silu" if quick else act,
        dtype=w.dtype,
    )


def pre_norm_stack(
    cfg: Config,
    w: Weights,
    prefix: str,
    causal: bool,
    default_act: str = "quick_gelu",
    default_eps: float = 1e-5,
) -> EncoderStack:
    """cfg.num_hidden_layers pre-norm blocks named {prefix}layers.{i}.* as CLIPEncoderLayer
    and SiglipEncoderLayer name them (self_attn.{q,k,v,out}_proj, layer_norm1/2, mlp: clip_mlp)."""
    C, H = cfg.require("hidden_size"), cfg.require("num_attention_heads")
    F, L = cfg.require("intermediate_size"), cfg.require("num_hidden_layers")
    eps = float(cfg.get("layer_norm_eps", default_eps))
    act = hidden_act(cfg, default=default_act)
    if C % H:
        raise CheckpointError(f"config.json: hidden_size={C} is not divisible by num_attention_heads={H}")
    layers = []
    for i in w.layer_range(L):

        def g(key, *shape):
            return w.get(f"{prefix}layers.{i}.{key}", shape, matrix=len(shape) == 2)

        attn = _C.MultiHeadAttention(
            C,
            H,
            q_weight=g("self_attn.q_proj.weight", C, C),
            q_bias=g("self_attn.q_proj.bias", C),
            k_weight=g("self_attn.k_proj.weight", C, C),
            k_bias=g("self_attn.k_proj.bias", C),
            v_weight=g("self_attn.v_proj.weight", C, C),
            v_bias=g("self_attn.v_proj.bias", C),
            o_weight=g("self_attn.out_proj.weight", C, C),
            o_bias=g("self_attn.out_proj.bias", C),
            is_causal=causal,
            dtype=w.dtype,
        )
        ffn = clip_mlp(w, f"{prefix}layers.{i}.mlp.", C, F, act)
        n1 = _C.LayerNorm(g("layer_norm1.weight", C), g("layer_norm1.bias", C), eps=eps)
        n2 = _C.LayerNorm(g("layer_norm2.weight", C), g("layer_norm2.bias", C), eps=eps)
        layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
        w.release()
    return EncoderStack(layers)
