"""BERT-style encoders: BertModel (+ MaskedLM and SequenceClassification heads),
RobertaModel, XLMRobertaModel and DistilBertModel, from Hugging Face checkpoints.

Every layer is a tfcore.TransformerBlock (post-norm), so a forward pass is one C call per
layer with the GIL released; the embeddings are a gather plus a fused add + LayerNorm.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .encoder import BERT_LAYER_KEYS, EncoderStack, hidden_act, label_maps, layer_norm_eps
from .registry import register

__all__ = [
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "RobertaModel",
    "XLMRobertaModel",
    "DistilBertModel",
]

DISTILBERT_LAYER_KEYS = dict(
    q="attention.q_lin",
    k="attention.k_lin",
    v="attention.v_lin",
    o="attention.out_lin",
    n1="sa_layer_norm",
    up="ffn.lin1",
    down="ffn.lin2",
    n2="output_layer_norm",
)


@register("base")
class BertModel(PreTrainedModel):
    """``transformers.BertModel``: embeddings, encoder, tanh pooler over [CLS]."""

    model_types = ("bert",)
    base_prefixes = ("", "bert.")
    ignore_keys = ("position_ids",)  # a buffer some checkpoints store

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, V = cfg.require("hidden_size"), cfg.require("vocab_size")
        P = cfg.require("max_position_embeddings")
        types = cfg.get("type_vocab_size", 2)
        pet = cfg.get("position_embedding_type", "absolute")
        if pet not in (None, "absolute"):
            raise CheckpointError(
                f"config.json: position_embedding_type={pet!r} is not supported (absolute only)"
            )
        self._init_embeddings(cfg, w, C, V, P, types)
        self.encoder = self._build_encoder(cfg, w, C)
        self.pooler = self._build_pooler(w, C, "pooler.dense") if add_pooling_layer else None

    def _build_encoder(self, cfg: Config, w: Weights, C: int) -> EncoderStack:
        """The layer stack (BERT's per-layer tensors; ALBERT and MPNet build theirs)."""
        return EncoderStack.from_keys(
            w,
            "encoder.layer",
            BERT_LAYER_KEYS,
            C,
            cfg.require("num_attention_heads"),
            cfg.require("intermediate_size"),
            cfg.require("num_hidden_layers"),
            layer_norm_eps(cfg),
            hidden_act(cfg),
        )

    @staticmethod
    def _build_pooler(w: Weights, C: int, key: str):
        """tanh(dense(h[:, 0])) from {key}.weight / .bias, or None if the checkpoint has none."""
        if not w.has(key + ".weight"):
            return None
        return _C.Linear(w.get(key + ".weight", (C, C)), w.get(key + ".bias", (C,)), "tanh", dtype=w.dtype)

    def _init_embeddings(self, cfg: Config, w: Weights, C: int, V: int, P: int, types: int) -> None:
        """Word, absolute position and token-type tables and the embedding LayerNorm."""
        self.hidden_size, self.vocab_size, self.max_positions = C, V, P
        self.word_embeddings = _C.Embedding(w.get("embeddings.word_embeddings.weight", (V, C)))
        self.position_embeddings = w.get("embeddings.position_embeddings.weight", (P, C))
        self.token_type_embeddings = (
            w.get("embeddings.token_type_embeddings.weight", (types, C)) if types else None
        )
        self.embeddings_norm = _C.LayerNorm(
            w.get("embeddings.LayerNorm.weight", (C,)),
            w.get("embeddings.LayerNorm.bias", (C,)),
            eps=layer_norm_eps(cfg),
        )

    def _position_ids(self, input_ids: np.ndarray, position_ids) -> np.ndarray:
        B, T = input_ids.shape
        if position_ids is None:
            return np.broadcast_to(np.arange(T, dtype=np.int64), (B, T))
        return check_ids("position_ids", position_ids, self.max_positions)

    def embed(self, input_ids, token_type_ids=None, position_ids=None) -> np.ndarray:
        """Word + position + token-type embeddings, LayerNorm: (B, T) ids -> (B, T, C)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        if T > self.max_positions:
            raise _C.TfcoreValueError(
                f"sequence length {T} exceeds max_position_embeddings={self.max_positions}: "
                f"truncate the input (text.load_tokenizer(dir, max_length={self.max_positions}), "
                f"tfcore.eval.embed(..., max_length={self.max_positions}))"
            )
        pos = self._position_ids(ids, position_ids)
        if pos.shape != (B, T):
            raise _C.TfcoreValueError(f"position_ids has shape {pos.shape}, expected {(B, T)}")
        extra = self.position_embeddings[pos]  # (B, T, C)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                extra += self.token_type_embeddings[0]
            else:
                tt = check_ids("token_type_ids", token_type_ids, self.token_type_embeddings.shape[0])
                if tt.shape != (B, T):
                    raise _C.TfcoreValueError(f"token_type_ids has shape {tt.shape}, expected {(B, T)}")
                extra += self.token_type_embeddings[tt]
        h = self.word_embeddings(ids)
        return self.embeddings_norm(h, extra, out=h)  # LayerNorm(word + position + token type)

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
        """HF arguments. With padding in attention_mask and padding_free=True (the default),
        the layers run on the real tokens only and padded positions of the outputs are zeros;
        padding_free=False computes them like HF (output_attentions implies it)."""
        h = self.embed(input_ids, token_type_ids, position_ids)
        B, T, _ = h.shape
        mask = padding_mask(attention_mask, B, T)
        h, hidden, attns = self.encoder(h, mask, output_hidden_states, output_attentions, padding_free)
        pooled = self.pooler(np.ascontiguousarray(h[:, 0])) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=h, pooler_output=pooled, hidden_states=hidden, attentions=attns)


@register("masked-lm")
class BertForMaskedLM(PreTrainedModel):
    """``transformers.BertForMaskedLM``: logits over the vocabulary (decoder tied to the
    word embeddings unless the checkpoint stores its own)."""

    model_types = ("bert",)
    base_prefixes = ("",)
    ignore_keys = ("position_ids", "cls.seq_relationship", "pooler.")

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("bert.", ""), self.ignore_keys, weights.dtype)
        self.bert = BertModel(config, base, add_pooling_layer=False)
        weights.used |= base.used
        C, V = self.bert.hidden_size, self.bert.vocab_size
        p = "cls.predictions."
        self.transform = _C.Linear(
            weights.get(p + "transform.dense.weight", (C, C)),
            weights.get(p + "transform.dense.bias", (C,)),
            hidden_act(config),
            dtype=weights.dtype,
        )
        self.transform_norm = _C.LayerNorm(
            weights.get(p + "transform.LayerNorm.weight", (C,)),
            weights.get(p + "transform.LayerNorm.bias", (C,)),
            eps=layer_norm_eps(config),
        )
        decoder = weights.get(p + "decoder.weight", (V, C), optional=True)
        if decoder is None:
            decoder = self.bert.word_embeddings.weight
        bias = weights.get(p + "bias", (V,), optional=True)
        if bias is None:
            bias = weights.get(p + "decoder.bias", (V,))
        weights.get(p + "decoder.bias", (V,), optional=True)  # same tensor as cls.predictions.bias
        self.decoder = _C.Linear(decoder, bias, dtype=weights.dtype)

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
        """Hugging Face arguments and outputs of the transformers class of the same name; padded
        batches run padding-free (padded positions of per-token outputs are zeros) unless
        padding_free=False."""
        out = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            output_hidden_states,
            output_attentions,
            padding_free,
        )
        h = self.transform_norm(self.transform(out.last_hidden_state))
        return ModelOutput(
            logits=self.decoder(h), hidden_states=out.get("hidden_states"), attentions=out.get("attentions")
        )


@register("sequence-classification")
class BertForSequenceClassification(PreTrainedModel):
    """``transformers.BertForSequenceClassification``: classifier over the pooled [CLS];
    labels in ``model.id2label`` / ``model.label2id``."""

    model_types = ("bert",)
    base_prefixes = ("",)
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("bert.", ""), self.ignore_keys, weights.dtype)
        self.bert = BertModel(config, base)
        weights.used |= base.used
        if self.bert.pooler is None:
            raise CheckpointError(
                "BertForSequenceClassification needs the pooler weights (bert.pooler.dense)"
            )
        C = self.bert.hidden_size
        self.id2label, self.label2id = label_maps(config)
        labels = len(self.id2label)
        self.classifier = _C.Linear(
            weights.get("classifier.weight", (labels, C)),
            weights.get("classifier.bias", (labels,)),
            dtype=weights.dtype,
        )
        self.num_labels = labels

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
        """Hugging Face arguments and outputs of the transformers class of the same name; padded
        batches run padding-free (padded positions of per-token outputs are zeros) unless
        padding_free=False."""
        out = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            output_hidden_states,
            output_attentions,
            padding_free,
        )
        return ModelOutput(
            logits=self.classifier(out.pooler_output),
            hidden_states=out.get("hidden_states"),
            attentions=out.get("attentions"),
        )


@register("base")
class RobertaModel(BertModel):
    """``transformers.RobertaModel``: BERT with positions counted from padding_idx + 1 over
    the non-pad tokens (``create_position_ids_from_input_ids``)."""

    model_types = ("roberta",)
    base_prefixes = ("", "roberta.")

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights, add_pooling_layer)
        self.padding_idx = int(config.get("pad_token_id", 1))

    def _position_ids(self, input_ids: np.ndarray, position_ids) -> np.ndarray:
        if position_ids is not None:
            return super()._position_ids(input_ids, position_ids)
        real = (input_ids != self.padding_idx).astype(np.int64)
        pos = np.cumsum(real, axis=1) * real + self.padding_idx
        if pos.max() >= self.max_positions:
            raise _C.TfcoreValueError(
                f"sequence too long: position {pos.max()} >= max_position_embeddings={self.max_positions}"
            )
        return pos


@register("base")
class XLMRobertaModel(RobertaModel):
    """``transformers.XLMRobertaModel`` (RoBERTa architecture, its own vocabulary)."""

    model_types = ("xlm-roberta",)
    base_prefixes = ("", "roberta.")


@register("base")
class DistilBertModel(PreTrainedModel):
    """``transformers.DistilBertModel``: no token types, no pooler, its own key names."""

    model_types = ("distilbert",)
    base_prefixes = ("", "distilbert.")
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H, F = cfg.require("dim"), cfg.require("n_heads"), cfg.require("hidden_dim")
        V, P, L = cfg.require("vocab_size"), cfg.require("max_position_embeddings"), cfg.require("n_layers")
        self.hidden_size, self.vocab_size, self.max_positions = C, V, P
        self.word_embeddings = _C.Embedding(w.get("embeddings.word_embeddings.weight", (V, C)))
        self.position_embeddings = w.get("embeddings.position_embeddings.weight", (P, C))
        self.embeddings_norm = _C.LayerNorm(
            w.get("embeddings.LayerNorm.weight", (C,)), w.get("embeddings.LayerNorm.bias", (C,)), eps=1e-12
        )
        self.encoder = EncoderStack.from_keys(
            w, "transformer.layer", DISTILBERT_LAYER_KEYS, C, H, F, L, 1e-12, hidden_act(cfg, "activation")
        )

    def forward(
        self,
        input_ids,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        padding_free: bool = True,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the transformers class of the same name; padded
        batches run padding-free (padded positions of per-token outputs are zeros) unless
        padding_free=False."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        if T > self.max_positions:
            raise _C.TfcoreValueError(
                f"sequence length {T} exceeds max_position_embeddings={self.max_positions}: "
                f"truncate the input (text.load_tokenizer(dir, max_length={self.max_positions}), "
                f"tfcore.eval.embed(..., max_length={self.max_positions}))"
            )
        h = self.word_embeddings(ids)
        h = self.embeddings_norm(
            h, np.ascontiguousarray(np.broadcast_to(self.position_embeddings[:T], h.shape)), out=h
        )
        mask = padding_mask(attention_mask, B, T)
        h, hidden, attns = self.encoder(h, mask, output_hidden_states, output_attentions, padding_free)
        return ModelOutput(last_hidden_state=h, hidden_states=hidden, attentions=attns)
