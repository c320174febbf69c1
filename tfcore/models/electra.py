"""ELECTRA encoders from Hugging Face checkpoints: ElectraModel (BERT layers behind
embeddings of their own width, projected to the hidden size when it differs) with the
replaced-token-detection head (ElectraForPreTraining, the discriminator) and the task heads.

Tensor names are HF's (``electra.embeddings.*``, ``electra.embeddings_project``,
``electra.encoder.layer.{i}.*`` as BERT's). The sequence classifier is RoBERTa's
``out_proj(act(dense(h[:, 0])))`` with GELU (erf) as HF's ElectraClassificationHead has it
regardless of ``hidden_act``; the discriminator is ``dense_prediction(act(dense(h)))`` with the
config's ``hidden_act``, one logit per token.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from .base import ModelOutput, Weights
from .bert import BertModel
from .encoder import hidden_act
from .encoder_heads import (
    _BertArgs,
    _ClassificationHeadOverFirstToken,
    _Head,
    _QuestionAnsweringHead,
    _TokenClassificationHead,
)
from .registry import register

__all__ = [
    "ElectraModel",
    "ElectraForPreTraining",
    "ElectraForSequenceClassification",
    "ElectraForTokenClassification",
    "ElectraForQuestionAnswering",
]


@register("base")
class ElectraModel(BertModel):
    """``transformers.ElectraModel``: word/position/token-type embeddings of width
    ``embedding_size`` (+ LayerNorm), ``embeddings_project`` to ``hidden_size`` when the two
    differ, then BERT's post-norm layers; no pooler (``pooler_output`` is None)."""

    model_types = ("electra",)
    base_prefixes = ("", "electra.")

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights, add_pooling_layer=False)

    def _init_embeddings(self, cfg: Config, w: Weights, C: int, V: int, P: int, types: int) -> None:
        E = cfg.get("embedding_size", C)
        super()._init_embeddings(cfg, w, E, V, P, types)
        self.hidden_size, self.embedding_size = C, E
        self.embeddings_project = None
        if w.has("embeddings_project.weight") or E != C:
            self.embeddings_project = _C.Linear(
                w.get("embeddings_project.weight", (C, E), matrix=True),
                w.get("embeddings_project.bias", (C,)),
                dtype=w.dtype,
            )

    def embed(self, input_ids, token_type_ids=None, position_ids=None) -> np.ndarray:
        """BERT's embeddings at width embedding_size, projected to hidden_size: (B, T) -> (B, T, C)."""
        h = super().embed(input_ids, token_type_ids, position_ids)
        return self.embeddings_project(h) if self.embeddings_project is not None else h


class _ElectraArgs(_BertArgs):
    encoder_class = ElectraModel
    encoder_attr = "electra"
    encoder_has_pooler = False


class _DiscriminatorHead(_Head):
    """``ElectraDiscriminatorPredictions``: dense_prediction(act(dense(h))) -> logits (B, T),
    one replaced-token score per position."""

    def _build(self, config: Config, weights: Weights, C: int) -> None:
        p = "discriminator_predictions."
        self.dense = _C.Linear(
            weights.get(p + "dense.weight", (C, C), matrix=True),
            weights.get(p + "dense.bias", (C,)),
            hidden_act(config),
            dtype=weights.dtype,
        )
        self.dense_prediction = _C.Linear(
            weights.get(p + "dense_prediction.weight", (1, C), matrix=True),
            weights.get(p + "dense_prediction.bias", (1,)),
            dtype=weights.dtype,
        )

    def _apply(self, out: ModelOutput) -> dict:
        return dict(
            logits=np.ascontiguousarray(self.dense_prediction(self.dense(out.last_hidden_state))[..., 0])
        )


class ElectraForPreTraining(_DiscriminatorHead, _ElectraArgs):
    """``transformers.ElectraForPreTraining`` (the discriminator): ``logits`` (B, T), positive
    where the model thinks a token was replaced."""

    model_types = ("electra",)


@register("sequence-classification")
class ElectraForSequenceClassification(_ClassificationHeadOverFirstToken, _ElectraArgs):
    """``transformers.ElectraForSequenceClassification``: out_proj(gelu(dense(h[:, 0])))."""

    model_types = ("electra",)
    head_activation = "gelu"


@register("token-classification")
class ElectraForTokenClassification(_TokenClassificationHead, _ElectraArgs):
    """``transformers.ElectraForTokenClassification``: classifier(h) -> (B, T, num_labels)."""

    model_types = ("electra",)


@register("question-answering")
class ElectraForQuestionAnswering(_QuestionAnsweringHead, _ElectraArgs):
    """``transformers.ElectraForQuestionAnswering``: start_logits, end_logits (B, T)."""

    model_types = ("electra",)
