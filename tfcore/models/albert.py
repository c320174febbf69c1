"""ALBERT encoders from Hugging Face checkpoints: factorised embeddings (width
``embedding_size``, mapped to ``hidden_size`` by ``embedding_hidden_mapping_in``) and
cross-layer parameter sharing — ``num_hidden_groups`` groups of ``inner_group_num`` layers,
layer i running group ``int(i / (num_hidden_layers / num_hidden_groups))`` as HF computes it.

Each group's TransformerBlocks are built (and their weights packed) once; the stack holds the
same block objects several times, so a 12-layer ALBERT-base keeps one layer's weights in
memory, as the checkpoint does. The blocks are stateless, so running one object at several
depths is safe (also from several threads).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, Weights
from .bert import BertModel
from .encoder import EncoderStack, hidden_act, layer_norm_eps
from .encoder_heads import _BertArgs, _Head, _QuestionAnsweringHead, _TokenClassificationHead
from .registry import register

__all__ = [
    "AlbertModel",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertForQuestionAnswering",
]

# Checkpoint names of one HF AlbertLayer's tensors (under
# encoder.albert_layer_groups.{g}.albert_layers.{j}.)
ALBERT_LAYER_KEYS = dict(
    q="attention.query",
    k="attention.key",
    v="attention.value",
    o="attention.dense",
    n1="attention.LayerNorm",
    up="ffn",
    down="ffn_output",
    n2="full_layer_layer_norm",
)


class AlbertStack(EncoderStack):
    """embedding_hidden_mapping_in, then the shared blocks in HF's group order."""

    def __init__(self, layers: List[_C.TransformerBlock], mapping_in: _C.Linear):
        super().__init__(layers)
        self.mapping_in = mapping_in

    def __call__(self, h, mask, output_hidden_states, output_attentions, padding_free=True):
        return super().__call__(
            self.mapping_in(h), mask, output_hidden_states, output_attentions, padding_free
        )


def _positive_int(cfg: Config, key: str, default: int) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise CheckpointError(f"config.json: {key} must be a positive integer, got {v!r}")
    return v


@register("base")
class AlbertModel(BertModel):
    """``transformers.AlbertModel``: embeddings of width embedding_size, the shared layer
    groups, and the tanh pooler over the first token (tensor ``pooler``)."""

    model_types = ("albert",)
    base_prefixes = ("", "albert.")

    def _init_embeddings(self, cfg: Config, w: Weights, C: int, V: int, P: int, types: int) -> None:
        E = _positive_int(cfg, "embedding_size", 128)
        super()._init_embeddings(cfg, w, E, V, P, types)
        self.hidden_size, self.embedding_size = C, E

    def _build_encoder(self, cfg: Config, w: Weights, C: int) -> EncoderStack:
        L = _positive_int(cfg, "num_hidden_layers", 12)
        G = _positive_int(cfg, "num_hidden_groups", 1)
        inner = _positive_int(cfg, "inner_group_num", 1)
        if G > L:
            raise CheckpointError(f"config.json: num_hidden_groups={G} exceeds num_hidden_layers={L}")
        E = self.embedding_size
        mapping_in = _C.Linear(
            w.get("encoder.embedding_hidden_mapping_in.weight", (C, E), matrix=True),
            w.get("encoder.embedding_hidden_mapping_in.bias", (C,)),
            dtype=w.dtype,
        )
        groups = [
            EncoderStack.from_keys(
                w,
                f"encoder.albert_layer_groups.{g}.albert_layers",
                ALBERT_LAYER_KEYS,
                C,
                cfg.require("num_attention_heads"),
                cfg.require("intermediate_size"),
                inner,
                layer_norm_eps(cfg),
                hidden_act(cfg, default="gelu_new"),
            ).layers
            for g in range(G)
        ]
        self.group_of_layer = [int(i / (L / G)) for i in range(L)]  # HF's float arithmetic
        return AlbertStack([block for g in self.group_of_layer for block in groups[g]], mapping_in)

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights, add_pooling_layer=False)
        self.pooler = self._build_pooler(weights, self.hidden_size, "pooler") if add_pooling_layer else None


class _AlbertArgs(_BertArgs):
    encoder_class = AlbertModel
    encoder_attr = "albert"


class _PooledClassificationHead(_Head):
    """ALBERT's sequence classifier: classifier(pooler_output) -> logits (B, num_labels)."""

    head_uses_pooler = True

    def _build(self, config: Config, weights: Weights, C: int) -> None:
        if self._encoder.pooler is None:
            raise CheckpointError(f"{type(self).__name__} needs the pooler weights (albert.pooler)")
        n = self.num_labels
        self.classifier = _C.Linear(
            weights.get("classifier.weight", (n, C), matrix=True),
            weights.get("classifier.bias", (n,)),
            dtype=weights.dtype,
        )

    def _apply(self, out: ModelOutput) -> dict:
        return dict(logits=self.classifier(np.ascontiguousarray(out.pooler_output)))


@register("sequence-classification")
class AlbertForSequenceClassification(_PooledClassificationHead, _AlbertArgs):
    """``transformers.AlbertForSequenceClassification``: classifier over the pooled first token."""

    model_types = ("albert",)


@register("token-classification")
class AlbertForTokenClassification(_TokenClassificationHead, _AlbertArgs):
    """``transformers.AlbertForTokenClassification``: classifier(h) -> (B, T, num_labels)."""

    model_types = ("albert",)


@register("question-answering")
class AlbertForQuestionAnswering(_QuestionAnsweringHead, _AlbertArgs):
    """``transformers.AlbertForQuestionAnswering``: start_logits, end_logits (B, T)."""

    model_types = ("albert",)
