"""Task heads on the encoder families, named like their Hugging Face classes: sequence
classification, token classification (NER) and extractive question answering for RoBERTa,
XLM-RoBERTa, CamemBERT, DistilBERT, BigBird and Longformer, and token classification and
question answering for BERT (``BertForSequenceClassification`` lives in bert.py).

Each class is its encoder (built with HF's ``add_pooling_layer=False`` where HF does, under
the attribute HF names it: ``model.roberta``, ``model.distilbert``, ...) plus one small head:

================================  ==================================================================
head                              computation (h = last_hidden_state, (B, T, C))
================================  ==================================================================
RoBERTa-style sequence classifier ``out_proj(tanh(dense(h[:, 0])))``  (keys ``classifier.dense``,
                                  ``classifier.out_proj``; BigBird: ``hidden_act`` instead of tanh)
DistilBERT sequence classifier    ``classifier(relu(pre_classifier(h[:, 0])))``
token classifier                  ``classifier(h)`` -> logits (B, T, num_labels)
question answering                ``qa_outputs(h)`` -> (B, T, 2) split into start_logits, end_logits
================================  ==================================================================

Labels: ``model.id2label`` / ``model.label2id`` (int keys) from config.json as HF's
``config.id2label`` (``LABEL_i`` when the checkpoint names none)."""

from __future__ import annotations

from typing import Optional, Type

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids
from .bert import BertModel, DistilBertModel, RobertaModel, XLMRobertaModel
from .big_bird import BigBirdModel
from .encoder import hidden_act, label_maps
from .longformer import LongformerModel
from .registry import register

__all__ = [
    "BertForTokenClassification",
    "BertForQuestionAnswering",
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "RobertaForQuestionAnswering",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
    "CamembertModel",
    "CamembertForSequenceClassification",
    "CamembertForTokenClassification",
    "CamembertForQuestionAnswering",
    "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "LongformerForSequenceClassification",
    "LongformerForTokenClassification",
    "LongformerForQuestionAnswering",
]

_PADDING_NOTE = (
    " With padding in attention_mask and padding_free=True (the default) the encoder runs on the"
    " real tokens only: per-token outputs at padded positions are the head applied to a zero"
    " hidden state (its bias), not HF's values there; padding_free=False computes them like HF."
)


# ---------------------------------------------------------------------------------------------
# heads: built from the checkpoint after the encoder, applied to its output
# ---------------------------------------------------------------------------------------------


class _Head:
    """The part of a task class after the encoder: _build(config, weights, C) reads the head's
    tensors, _apply(out) maps the encoder's ModelOutput to the task's output fields."""

    def _build(self, config: Config, weights: Weights, C: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, out: ModelOutput) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


class _ClassificationHeadOverFirstToken(_Head):
    """RoBERTa's ``RobertaClassificationHead`` (Longformer's, BigBird's with the config's
    hidden_act): out_proj(act(dense(h[:, 0]))) -> logits (B, num_labels)."""

    head_activation = "tanh"

    def _build(self, config: Config, weights: Weights, C: int) -> None:
        act = hidden_act(config) if self.head_activation == "hidden_act" else self.head_activation
        n = self.num_labels
        self.classifier_dense = _C.Linear(
            weights.get("classifier.dense.weight", (C, C), matrix=True),
            weights.get("classifier.dense.bias", (C,)),
            act,
            dtype=weights.dtype,
        )
        self.classifier_out = _C.Linear(
            weights.get("classifier.out_proj.weight", (n, C), matrix=True),
            weights.get("classifier.out_proj.bias", (n,)),
            dtype=weights.dtype,
        )

    def _apply(self, out: ModelOutput) -> dict:
        first = np.ascontiguousarray(out.last_hidden_state[:, 0])  # (B, C)
        return dict(logits=self.classifier_out(self.classifier_dense(first)))


class _DistilBertClassificationHead(_Head):
    """``DistilBertForSequenceClassification``: classifier(relu(pre_classifier(h[:, 0])))."""

    def _build(self, config: Config, weights: Weights, C: int) -> None:
        n = self.num_labels
        self.pre_classifier = _C.Linear(
            weights.get("pre_classifier.weight", (C, C), matrix=True),
            weights.get("pre_classifier.bias", (C,)),
            "relu",
            dtype=weights.dtype,
        )
        self.classifier = _C.Linear(
            weights.get("classifier.weight", (n, C), matrix=True),
            weights.get("classifier.bias", (n,)),
            dtype=weights.dtype,
        )

    def _apply(self, out: ModelOutput) -> dict:
        first = np.ascontiguousarray(out.last_hidden_state[:, 0])  # (B, C)
        return dict(logits=self.classifier(self.pre_classifier(first)))


class _TokenClassificationHead(_Head):
    """``*ForTokenClassification``: classifier(h) -> logits (B, T, num_labels)."""

    def _build(self, config: Config, weights: Weights, C: int) -> None:
        n = self.num_labels
        self.classifier = _C.Linear(
            weights.get("classifier.weight", (n, C), matrix=True),
            weights.get("classifier.bias", (n,)),
            dtype=weights.dtype,
        )

    def _apply(self, out: ModelOutput) -> dict:
        return dict(logits=self.classifier(out.last_hidden_state))


class _QuestionAnsweringHead(_Head):
    """``*ForQuestionAnswering``: qa_outputs(h) (B, T, 2) -> start_logits, end_logits (B, T)."""

    def _build(self, config: Config, weights: Weights, C: int) -> None:
        if self.num_labels != 2:
            raise CheckpointError(
                f"config.json: {type(self).__name__} needs num_labels=2 (start and end logits), "
                f"got {self.num_labels}"
            )
        self.qa_outputs = _C.Linear(
            weights.get("qa_outputs.weight", (2, C), matrix=True),
            weights.get("qa_outputs.bias", (2,)),
            dtype=weights.dtype,
        )

    def _apply(self, out: ModelOutput) -> dict:
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return dict(
            start_logits=np.ascontiguousarray(logits[..., 0]), end_logits=np.ascontiguousarray(logits[..., 1])
        )


# ---------------------------------------------------------------------------------------------
# encoders with a head: how the encoder is built and called (its arguments differ per family)
# ---------------------------------------------------------------------------------------------


class _EncoderWithHead(PreTrainedModel):
    """An encoder of class ``encoder_class`` saved under ``encoder_attr + "."`` (HF's
    attribute name) followed by a _Head mixed in by the concrete class."""

    encoder_class: Type[PreTrainedModel]
    encoder_attr: str = ""
    encoder_has_pooler = True  # the encoder takes add_pooling_layer (built without it)
    head_uses_pooler = False  # the head reads pooler_output (the encoder keeps its pooler)
    base_prefixes = ("",)
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, (self.encoder_attr + ".", ""), self.ignore_keys, weights.dtype)
        kwargs = (
            dict(add_pooling_layer=False) if self.encoder_has_pooler and not self.head_uses_pooler else {}
        )
        encoder = self.encoder_class(config, base, **kwargs)
        weights.used |= base.used
        setattr(self, self.encoder_attr, encoder)
        self.id2label, self.label2id = label_maps(config)
        self.num_labels = len(self.id2label)
        self._build(config, weights, encoder.hidden_size)

    @property
    def _encoder(self) -> PreTrainedModel:
        return getattr(self, self.encoder_attr)

    def _output(self, out: ModelOutput) -> ModelOutput:
        fields = self._apply(out)
        for key in ("hidden_states", "attentions", "global_attentions"):
            fields[key] = out.get(key)
        return ModelOutput(**fields)


class _BertArgs(_EncoderWithHead):
    """Encoders called with BERT's arguments (BERT, RoBERTa, XLM-R, CamemBERT, BigBird)."""

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        padding_free: bool = True,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the transformers class of the same name
        (``logits``, or ``start_logits`` and ``end_logits``; ``hidden_states``, ``attentions``)."""
        out = self._encoder(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            output_hidden_states,
            output_attentions,
            padding_free,
        )
        return self._output(out)

    forward.__doc__ += _PADDING_NOTE


class _DistilBertArgs(_EncoderWithHead):
    """DistilBERT: no token types, no position_ids argument, no pooler."""

    encoder_class = DistilBertModel
    encoder_attr = "distilbert"
    encoder_has_pooler = False

    def forward(
        self,
        input_ids,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        padding_free: bool = True,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the transformers class of the same name
        (``logits``, or ``start_logits`` and ``end_logits``; ``hidden_states``, ``attentions``)."""
        out = self._encoder(input_ids, attention_mask, output_hidden_states, output_attentions, padding_free)
        return self._output(out)

    forward.__doc__ += _PADDING_NOTE


class _LongformerArgs(_EncoderWithHead):
    """Longformer: global_attention_mask; the sequence classifier makes the first token
    global when none is given (as HF does)."""

    encoder_class = LongformerModel
    encoder_attr = "longformer"

    def _default_global_mask(self, input_ids) -> Optional[np.ndarray]:
        """The global_attention_mask used when none is given (None: no global tokens)."""
        return None

    def forward(
        self,
        input_ids,
        attention_mask=None,
        global_attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the transformers class of the same name
        (``logits``, or ``start_logits`` and ``end_logits``; ``hidden_states``, ``attentions``,
        ``global_attentions``). Padded positions are computed like HF."""
        if global_attention_mask is None:
            global_attention_mask = self._default_global_mask(input_ids)
        out = self._encoder(
            input_ids,
            attention_mask,
            global_attention_mask,
            token_type_ids,
            position_ids,
            output_hidden_states,
            output_attentions,
        )
        return self._output(out)


# ---------------------------------------------------------------------------------------------
# the public classes
# ---------------------------------------------------------------------------------------------


@register("token-classification")
class BertForTokenClassification(_TokenClassificationHead, _BertArgs):
    """``transformers.BertForTokenClassification``: per-token logits (NER)."""

    model_types = ("bert",)
    encoder_class, encoder_attr = BertModel, "bert"


@register("question-answering")
class BertForQuestionAnswering(_QuestionAnsweringHead, _BertArgs):
    """``transformers.BertForQuestionAnswering``: span start and end logits."""

    model_types = ("bert",)
    encoder_class, encoder_attr = BertModel, "bert"


@register("sequence-classification")
class RobertaForSequenceClassification(_ClassificationHeadOverFirstToken, _BertArgs):
    """``transformers.RobertaForSequenceClassification``: dense + tanh + out_proj over <s>."""

    model_types = ("roberta",)
    encoder_class, encoder_attr = RobertaModel, "roberta"


@register("token-classification")
class RobertaForTokenClassification(_TokenClassificationHead, _BertArgs):
    """``transformers.RobertaForTokenClassification``: per-token logits (NER)."""

    model_types = ("roberta",)
    encoder_class, encoder_attr = RobertaModel, "roberta"


@register("question-answering")
class RobertaForQuestionAnswering(_QuestionAnsweringHead, _BertArgs):
    """``transformers.RobertaForQuestionAnswering``: span start and end logits."""

    model_types = ("roberta",)
    encoder_class, encoder_attr = RobertaModel, "roberta"


@register("sequence-classification")
class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    """``transformers.XLMRobertaForSequenceClassification`` (RoBERTa's head)."""

    model_types = ("xlm-roberta",)
    encoder_class = XLMRobertaModel


@register("token-classification")
class XLMRobertaForTokenClassification(RobertaForTokenClassification):
    """``transformers.XLMRobertaForTokenClassification`` (RoBERTa's head)."""

    model_types = ("xlm-roberta",)
    encoder_class = XLMRobertaModel


@register("question-answering")
class XLMRobertaForQuestionAnswering(RobertaForQuestionAnswering):
    """``transformers.XLMRobertaForQuestionAnswering`` (RoBERTa's head)."""

    model_types = ("xlm-roberta",)
    encoder_class = XLMRobertaModel


@register("base")
class CamembertModel(RobertaModel):
    """``transformers.CamembertModel``: the RoBERTa architecture (HF's modeling_camembert is
    RoBERTa's code, "Copied from"), its own vocabulary."""

    model_types = ("camembert",)
    base_prefixes = ("", "roberta.")


@register("sequence-classification")
class CamembertForSequenceClassification(RobertaForSequenceClassification):
    """``transformers.CamembertForSequenceClassification`` (RoBERTa's head)."""

    model_types = ("camembert",)
    encoder_class = CamembertModel


@register("token-classification")
class CamembertForTokenClassification(RobertaForTokenClassification):
    """``transformers.CamembertForTokenClassification`` (RoBERTa's head)."""

    model_types = ("camembert",)
    encoder_class = CamembertModel


@register("question-answering")
class CamembertForQuestionAnswering(RobertaForQuestionAnswering):
    """``transformers.CamembertForQuestionAnswering`` (RoBERTa's head)."""

    model_types = ("camembert",)
    encoder_class = CamembertModel


@register("sequence-classification")
class DistilBertForSequenceClassification(_DistilBertClassificationHead, _DistilBertArgs):
    """``transformers.DistilBertForSequenceClassification``: pre_classifier + ReLU + classifier
    over the first token."""

    model_types = ("distilbert",)


@register("token-classification")
class DistilBertForTokenClassification(_TokenClassificationHead, _DistilBertArgs):
    """``transformers.DistilBertForTokenClassification``: per-token logits (NER)."""

    model_types = ("distilbert",)


@register("question-answering")
class DistilBertForQuestionAnswering(_QuestionAnsweringHead, _DistilBertArgs):
    """``transformers.DistilBertForQuestionAnswering``: span start and end logits."""

    model_types = ("distilbert",)


@register("sequence-classification")
class BigBirdForSequenceClassification(_ClassificationHeadOverFirstToken, _BertArgs):
    """``transformers.BigBirdForSequenceClassification``: dense + hidden_act + out_proj over
    the first token."""

    model_types = ("big_bird",)
    encoder_class, encoder_attr = BigBirdModel, "bert"
    head_activation = "hidden_act"
    ignore_keys = ("position_ids", "token_type_ids", "bert.pooler.")  # HF keeps an unused pooler


@register("token-classification")
class BigBirdForTokenClassification(_TokenClassificationHead, _BertArgs):
    """``transformers.BigBirdForTokenClassification``: per-token logits."""

    model_types = ("big_bird",)
    encoder_class, encoder_attr = BigBirdModel, "bert"
    ignore_keys = ("position_ids", "token_type_ids", "bert.pooler.")  # HF keeps an unused pooler


@register("sequence-classification")
class LongformerForSequenceClassification(_ClassificationHeadOverFirstToken, _LongformerArgs):
    """``transformers.LongformerForSequenceClassification``: dense + tanh + out_proj over <s>;
    <s> attends globally when no global_attention_mask is given (as HF)."""

    model_types = ("longformer",)

    def _default_global_mask(self, input_ids) -> np.ndarray:
        mask = np.zeros(check_ids("input_ids", input_ids).shape, np.int64)
        mask[:, 0] = 1  # HF: "Initializing global attention on CLS token"
        return mask


@register("token-classification")
class LongformerForTokenClassification(_TokenClassificationHead, _LongformerArgs):
    """``transformers.LongformerForTokenClassification``: per-token logits."""

    model_types = ("longformer",)


@register("question-answering")
class LongformerForQuestionAnswering(_QuestionAnsweringHead, _LongformerArgs):
    """``transformers.LongformerForQuestionAnswering``: span start and end logits; without a
    global_attention_mask the question tokens (before the first sep_token_id) are global, as HF."""

    model_types = ("longformer",)

    def _default_global_mask(self, input_ids) -> np.ndarray:
        """HF's _compute_global_attention_mask: the tokens before the first sep_token_id are
        global; like HF, every row must hold exactly three sep tokens (question </s></s> context </s>)."""
        ids = check_ids("input_ids", input_ids)
        sep = self.config.get("sep_token_id", 2)
        hits = ids == sep
        if not np.all(hits.sum(axis=1) == 3):
            raise _C.TfcoreValueError(
                f"LongformerForQuestionAnswering: without global_attention_mask every row of input_ids "
                f"must hold exactly three sep tokens ({sep}: question </s></s> context </s>), got "
                f"{hits.sum(axis=1).tolist()}; pass global_attention_mask (1 on the question tokens)"
            )
        question_end = hits.argmax(axis=1)[:, None]
        return (np.arange(ids.shape[1])[None] < question_end).astype(np.int64)
