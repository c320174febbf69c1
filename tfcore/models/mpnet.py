"""MPNet encoders from Hugging Face checkpoints (the backbone of sentence-transformers'
``all-mpnet-base-v2``): RoBERTa-style embeddings without token types, BERT-style post-norm
layers, and a bucketed relative position bias shared by every layer.

The bias is T5's bidirectional bucketing (32 buckets, max distance 128 — HF's MPNet computes
the buckets with those constants whatever ``relative_attention_num_buckets`` says, and reads
the first 32 rows of its table), added to the scaled scores inside the attention kernel: no
(H, L, L) tensor is built. Positions for the embeddings count from padding_idx + 1 = 2 over
the non-pad tokens, as HF's ``create_position_ids_from_input_ids`` with MPNet's fixed
padding_idx 1.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, Weights
from .encoder import EncoderStack, hidden_act, layer_norm_eps
from .encoder_heads import (
    _PADDING_NOTE,
    RobertaModel,
    _ClassificationHeadOverFirstToken,
    _EncoderWithHead,
    _QuestionAnsweringHead,
    _TokenClassificationHead,
)
from .registry import register

__all__ = [
    "MPNetModel",
    "MPNetForSequenceClassification",
    "MPNetForTokenClassification",
    "MPNetForQuestionAnswering",
]

MPNET_LAYER_KEYS = dict(
    q="attention.attn.q",
    k="attention.attn.k",
    v="attention.attn.v",
    o="attention.attn.o",
    n1="attention.LayerNorm",
    up="intermediate.dense",
    down="output.dense",
    n2="output.LayerNorm",
)

# HF's MPNetEncoder.compute_position_bias / relative_position_bucket defaults
BUCKETS, MAX_DISTANCE = 32, 128


@register("base")
class MPNetModel(RobertaModel):
    """``transformers.MPNetModel``: embeddings (word + position, LayerNorm), post-norm layers
    with the shared relative position bias, tanh pooler over the first token."""

    model_types = ("mpnet",)
    base_prefixes = ("", "mpnet.")

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights, add_pooling_layer)
        self.padding_idx = 1  # HF's MPNetEmbeddings fixes it (not config.pad_token_id)

    def _init_embeddings(self, cfg: Config, w: Weights, C: int, V: int, P: int, types: int) -> None:
        super()._init_embeddings(cfg, w, C, V, P, 0)  # MPNet has no token types

    def _build_encoder(self, cfg: Config, w: Weights, C: int) -> EncoderStack:
        H = cfg.require("num_attention_heads")
        n = cfg.get("relative_attention_num_buckets", BUCKETS)
        if isinstance(n, bool) or not isinstance(n, int) or n < BUCKETS:
            raise CheckpointError(
                f"config.json: relative_attention_num_buckets must be an integer >= {BUCKETS} "
                f"(MPNet looks up {BUCKETS} buckets), got {n!r}"
            )
        table = w.get("encoder.relative_attention_bias.weight", (n, H))
        return EncoderStack.from_keys(
            w,
            "encoder.layer",
            MPNET_LAYER_KEYS,
            C,
            H,
            cfg.require("intermediate_size"),
            cfg.require("num_hidden_layers"),
            layer_norm_eps(cfg),
            hidden_act(cfg),
            attention_options=dict(
                relative_attention_bias=np.ascontiguousarray(table[:BUCKETS], dtype=np.float32),
                relative_attention_num_buckets=BUCKETS,
                relative_attention_max_distance=MAX_DISTANCE,
            ),
        )

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        padding_free: bool = True,
    ) -> ModelOutput:
        """HF arguments (MPNet takes no token_type_ids). With padding in attention_mask and
        padding_free=True (the default), the layers run on the real tokens only and padded
        positions of the outputs are zeros; padding_free=False computes them like HF."""
        return super().forward(
            input_ids,
            attention_mask,
            None,
            position_ids,
            output_hidden_states,
            output_attentions,
            padding_free,
        )


class _MPNetArgs(_EncoderWithHead):
    encoder_class = MPNetModel
    encoder_attr = "mpnet"

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        padding_free: bool = True,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the transformers class of the same name
        (``logits``, or ``start_logits`` and ``end_logits``; ``hidden_states``, ``attentions``)."""
        out = self._encoder(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions, padding_free
        )
        return self._output(out)

    forward.__doc__ += _PADDING_NOTE


@register("sequence-classification")
class MPNetForSequenceClassification(_ClassificationHeadOverFirstToken, _MPNetArgs):
    """``transformers.MPNetForSequenceClassification``: out_proj(tanh(dense(h[:, 0])))."""

    model_types = ("mpnet",)


@register("token-classification")
class MPNetForTokenClassification(_TokenClassificationHead, _MPNetArgs):
    """``transformers.MPNetForTokenClassification``: classifier(h) -> (B, T, num_labels)."""

    model_types = ("mpnet",)


@register("question-answering")
class MPNetForQuestionAnswering(_QuestionAnsweringHead, _MPNetArgs):
    """``transformers.MPNetForQuestionAnswering``: start_logits, end_logits (B, T)."""

    model_types = ("mpnet",)
