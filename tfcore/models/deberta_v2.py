"""DeBERTa-v2 / DeBERTa-v3 (``transformers.DebertaV2Model`` and its sequence and token
classifiers): a post-norm BERT-style encoder whose self-attention adds *disentangled*
relative-position terms to the content score.

Per layer and head, with shared relative embeddings R (2 span, C) (``encoder.rel_embeddings``,
LayerNorm'ed when ``norm_rel_ebd`` says ``layer_norm``) projected to Kr and Qr (the layer's
key/query projections with ``share_att_key``, else ``pos_key_proj`` / ``pos_query_proj``):

    score(i, j) = (q_i . k_j + q_i . Kr[p] + k_j . Qr[p]) / sqrt(D * (1 + #pos_att_type))
    p = clamp(bucket(i - j) + span, 0, 2 span - 1)

with HF's log buckets (``position_buckets``, ``max_relative_positions``). Kr and Qr depend on
no input and are projected once at load. The fused attention kernel
(``scaled_dot_product_attention(..., disentangled_positions=(Kr, Qr, index))``) multiplies
them itself: per block of 64 queries the c2p rows Q Krᵀ (P, 64), per head the p2c rows
K Qrᵀ (S, P), both small GEMMs into per-thread buffers that stay in cache, then gathers
c2p[i, p] + p2c[j, p] per query and key. Neither a (B, H, L, L) nor a (B, H, L, P) tensor is
built; only the positions an input of length L can reach (P <= 2 span) are multiplied.

Matching Hugging Face (eval mode):
  * padding: HF multiplies the embeddings by the mask and masks with m_i m_j, so a padded query
    row attends uniformly to everything; here padded keys are hidden from every query, which
    gives the same values at real tokens (padded positions' outputs differ from HF's).
  * ``conv_kernel_size`` > 0 (DeBERTa-v2-xlarge's convolution after the first layer),
    ``attention_head_size`` != hidden_size / heads and ``z_steps`` > 1 are refused.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .encoder import hidden_act, label_maps, layer_norm_eps
from .registry import register

__all__ = [
    "DebertaV2Model",
    "DebertaV2ForSequenceClassification",
    "DebertaV2ForTokenClassification",
    "DebertaV2ForQuestionAnswering",
    "DebertaV2ForMaskedLM",
]

_LAYER = "encoder.layer.{}."


def _pos_att_type(cfg: Config) -> Tuple[str, ...]:
    """config.pos_att_type as HF normalises it: a list, or a "p2c|c2p" string."""
    raw = cfg.get("pos_att_type", None)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [x.strip() for x in raw.lower().split("|")]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(x, str) for x in raw):
        raise CheckpointError(f"config.json: pos_att_type must be a list of 'c2p'/'p2c', got {raw!r}")
    bad = [x for x in raw if x not in ("c2p", "p2c")]
    if bad:
        raise CheckpointError(f"config.json: pos_att_type holds {bad}, expected 'c2p' and/or 'p2c'")
    return tuple(raw)


class _DisentangledLayer:
    """One DeBERTa layer: a tfcore.TransformerBlock (fused QKV, output projection, norms and
    feed-forward as BERT's) plus the layer's projected relative embeddings, Kr and Qr as
    (H, 2 span, D) float32 (None when unused)."""

    def __init__(self, block, pos_key: Optional[np.ndarray], pos_query: Optional[np.ndarray]):
        self.block = block
        self.pos_key = pos_key
        self.pos_query = pos_query


@register("base")
class DebertaV2Model(PreTrainedModel):
    """``transformers.DebertaV2Model`` (DeBERTa-v2 and -v3 encoders)."""

    model_types = ("deberta-v2",)
    base_prefixes = ("", "deberta.")
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, V = int(cfg.require("hidden_size")), int(cfg.require("vocab_size"))
        H, F, N = (
            int(cfg.require("num_attention_heads")),
            int(cfg.require("intermediate_size")),
            int(cfg.require("num_hidden_layers")),
        )
        if C % H:
            raise CheckpointError(f"config.json: hidden size {C} is not divisible by {H} heads")
        D = C // H
        if int(cfg.get("attention_head_size", D)) != D:
            raise CheckpointError(
                f"config.json: attention_head_size={cfg.get('attention_head_size')} differs from "
                f"hidden_size / num_attention_heads = {D}; tfcore supports the standard head size"
            )
        if int(cfg.get("conv_kernel_size", 0) or 0) > 0:
            raise CheckpointError(
                "config.json: conv_kernel_size > 0 (DeBERTa-v2's convolution layer, in "
                "deberta-v2-xlarge/xxlarge) is not supported"
            )
        if int(cfg.get("z_steps", 0) or 0) > 1:
            raise CheckpointError("config.json: z_steps > 1 (enhanced mask decoder reuse) is not supported")
        eps = layer_norm_eps(cfg, default=1e-7)
        self.hidden_size, self.vocab_size, self.num_heads, self.head_dim = C, V, H, D
        self.max_positions = int(cfg.get("max_position_embeddings", 512))
        self.pad_token_id = int(cfg.get("pad_token_id", 0) or 0)

        # --- embeddings
        E = int(cfg.get("embedding_size", C) or C)
        self.word_embeddings = np.ascontiguousarray(w.get("embeddings.word_embeddings.weight", (V, E)))
        self.position_embeddings = (
            w.get("embeddings.position_embeddings.weight", (self.max_positions, E))
            if cfg.get("position_biased_input", True)
            else None
        )
        types = int(cfg.get("type_vocab_size", 0) or 0)
        self.type_vocab_size = types
        self.token_type_embeddings = (
            w.get("embeddings.token_type_embeddings.weight", (types, E)) if types > 0 else None
        )
        self.embed_proj = (
            _C.Linear(w.get("embeddings.embed_proj.weight", (C, E), matrix=True), None, dtype=w.dtype)
            if E != C
            else None
        )
        self.embeddings_norm = _C.LayerNorm(
            w.get("embeddings.LayerNorm.weight", (C,)), w.get("embeddings.LayerNorm.bias", (C,)), eps=eps
        )

        # --- relative attention settings (HF's DisentangledSelfAttention)
        self.pos_att_type = _pos_att_type(cfg)
        self.relative_attention = bool(cfg.get("relative_attention", False))
        scale_factor = 1 + len(self.pos_att_type)
        # HF: scores / sqrt(D * scale_factor), with the sqrt taken in float32
        self.score_scale = float(np.sqrt(np.float32(D) * np.float32(scale_factor), dtype=np.float32))
        self.position_buckets = int(cfg.get("position_buckets", -1))
        self.max_relative_positions = int(cfg.get("max_relative_positions", -1))
        if self.max_relative_positions < 1:
            self.max_relative_positions = self.max_positions
        self.span = self.position_buckets if self.position_buckets > 0 else self.max_relative_positions
        share = bool(cfg.get("share_att_key", False))
        rel = None
        if self.relative_attention:
            # checks the bucket configuration (raises TfcoreValueError naming it)
            _C.deberta_relative_index(
                1,
                1,
                position_buckets=self.position_buckets,
                max_relative_positions=self.max_relative_positions,
            )
            rel = w.get("encoder.rel_embeddings.weight", (2 * self.span, C))
            norm_rel = [x.strip() for x in str(cfg.get("norm_rel_ebd", "none")).lower().split("|")]
            if "layer_norm" in norm_rel:
                rel = _C.LayerNorm(
                    w.get("encoder.LayerNorm.weight", (C,)), w.get("encoder.LayerNorm.bias", (C,)), eps=eps
                )(np.ascontiguousarray(rel))
            rel = np.ascontiguousarray(rel, dtype=np.float32)[None]  # (1, 2 span, C)

        # --- layers
        act = hidden_act(cfg)
        self.layers: List[_DisentangledLayer] = []
        for i in w.layer_range(N):
            p = _LAYER.format(i)

            def g(key, *shape):
                return w.get(p + key, shape, matrix=len(shape) == 2)

            attn = _C.MultiHeadAttention(
                C,
                H,
                q_weight=g("attention.self.query_proj.weight", C, C),
                q_bias=g("attention.self.query_proj.bias", C),
                k_weight=g("attention.self.key_proj.weight", C, C),
                k_bias=g("attention.self.key_proj.bias", C),
                v_weight=g("attention.self.value_proj.weight", C, C),
                v_bias=g("attention.self.value_proj.bias", C),
                o_weight=g("attention.output.dense.weight", C, C),
                o_bias=g("attention.output.dense.bias", C),
                dtype=w.dtype,
            )
            ffn = _C.FeedForward(
                g("intermediate.dense.weight", F, C),
                g("output.dense.weight", C, F),
                up_bias=g("intermediate.dense.bias", F),
                down_bias=g("output.dense.bias", C),
                activation=act,
                dtype=w.dtype,
            )
            n1 = _C.LayerNorm(
                g("attention.output.LayerNorm.weight", C), g("attention.output.LayerNorm.bias", C), eps=eps
            )
            n2 = _C.LayerNorm(g("output.LayerNorm.weight", C), g("output.LayerNorm.bias", C), eps=eps)
            block = _C.TransformerBlock(attn, ffn, n1, n2, norm_first=False)
            pos_key = pos_query = None
            if rel is not None and self.pos_att_type:
                if share:
                    proj = attn.qkv_proj(rel)[0]  # (2 span, 3C): [q | k | v]
                    qr, kr = proj[:, :C], proj[:, C : 2 * C]
                else:
                    qr = kr = None
                    if "c2p" in self.pos_att_type:
                        kr = _C.Linear(
                            g("attention.self.pos_key_proj.weight", C, C),
                            g("attention.self.pos_key_proj.bias", C),
                            dtype=w.dtype,
                        )(rel)[0]
                    if "p2c" in self.pos_att_type:
                        qr = _C.Linear(
                            g("attention.self.pos_query_proj.weight", C, C),
                            g("attention.self.pos_query_proj.bias", C),
                            dtype=w.dtype,
                        )(rel)[0]

                def heads(a):  # (2 span, C) -> (H, 2 span, D)
                    return np.ascontiguousarray(a.reshape(-1, H, D).transpose(1, 0, 2))

                if "c2p" in self.pos_att_type:
                    pos_key = heads(kr)
                if "p2c" in self.pos_att_type:
                    pos_query = heads(qr)
            self.layers.append(_DisentangledLayer(block, pos_key, pos_query))
            w.release()

    # ------------------------------------------------------------------------------ embeddings

    def embed(self, ids: np.ndarray, token_type_ids, position_ids, mask: Optional[np.ndarray]) -> np.ndarray:
        """DebertaV2Embeddings: word (+ position) (+ token type), embed_proj, LayerNorm, times
        the mask. ids (B, T) int64 -> (B, T, C) float32."""
        B, T = ids.shape
        x = self.word_embeddings[ids]
        if self.position_embeddings is not None:
            if position_ids is None:
                if T > self.max_positions:
                    raise _C.TfcoreValueError(
                        f"sequence length {T} exceeds max_position_embeddings={self.max_positions}"
                    )
                x = x + self.position_embeddings[None, :T]
            else:
                pos = check_ids("position_ids", position_ids, self.max_positions)
                if pos.shape not in ((B, T), (1, T)):
                    raise _C.TfcoreValueError(f"position_ids has shape {pos.shape}, expected {(B, T)}")
                x = x + self.position_embeddings[pos]
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                x = x + self.token_type_embeddings[0]
            else:
                tt = check_ids("token_type_ids", token_type_ids, self.type_vocab_size)
                if tt.shape != (B, T):
                    raise _C.TfcoreValueError(f"token_type_ids has shape {tt.shape}, expected {(B, T)}")
                x = x + self.token_type_embeddings[tt]
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        x = self.embeddings_norm(x)
        if mask is not None:
            x *= mask[:, :, None]
        return x

    # ------------------------------------------------------------------------------ layers

    def _layer(self, layer: _DisentangledLayer, x, key_mask, index, prange, want_weights, scratch):
        """One post-norm layer with disentangled attention: x (B, T, C) -> (B, T, C) (and the
        attention probabilities (B, H, T, T) when want_weights)."""
        B, T, C = x.shape
        H, D = self.num_heads, self.head_dim
        qkv, ctx, proj = scratch
        block = layer.block
        attn = block.attention
        attn.qkv_proj(x, out=qkv)  # (B, T, 3C) = [q heads | k heads | v heads]

        def heads(a, i):  # (B, H, T, D) view, no copy
            return a[..., i * C : (i + 1) * C].reshape(B, T, H, D).transpose(0, 2, 1, 3)

        q, k, v = heads(qkv, 0), heads(qkv, 1), heads(qkv, 2)
        dis = None
        if index is not None:  # the positions [lo, hi) this length reaches, (H, P, D) views
            lo, hi = prange
            kr = layer.pos_key[:, lo:hi] if layer.pos_key is not None else None
            qr = layer.pos_query[:, lo:hi] if layer.pos_query is not None else None
            dis = (kr, qr, index)
        res = _C.scaled_dot_product_attention(
            q,
            k,
            v,
            key_mask,
            scale=1.0 / self.score_scale,
            out=heads(ctx, 0),
            return_weights=want_weights,
            disentangled_positions=dis,
        )
        weights = res[1] if want_weights else None
        h = block.norm1(attn.o_proj(ctx, out=proj), x)  # LayerNorm(x + attention)
        return block.norm2(block.feed_forward(h, out=proj), h), weights  # LayerNorm(h + ffn(h))

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """HF arguments and outputs: ``last_hidden_state`` (B, T, C), ``hidden_states`` (the
        embeddings and each layer's output), ``attentions`` (B, H, T, T) per layer. With
        padding, values at padded positions differ from HF's (see the module docstring)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        mask = padding_mask(attention_mask, B, T)
        maskf = mask.astype(np.float32) if mask is not None else None
        h = self.embed(ids, token_type_ids, position_ids, maskf)
        key_mask = None
        if mask is not None:
            key_mask = np.where(mask, np.float32(0), np.float32(-np.inf)).astype(np.float32)[:, None, None, :]
        index, prange = None, None
        if self.relative_attention and self.pos_att_type:
            index = _C.deberta_relative_index(
                T,
                T,
                position_buckets=self.position_buckets,
                max_relative_positions=self.max_relative_positions,
            )
            lo, hi = int(index.min()), int(index.max()) + 1  # the positions this length reaches
            index = index - np.int32(lo)
            prange = (lo, hi)
        C = self.hidden_size
        scratch = (
            np.empty((B, T, 3 * C), np.float32),
            np.empty((B, T, C), np.float32),
            np.empty((B, T, C), np.float32),
        )
        hidden = [h] if output_hidden_states else None
        attns = [] if output_attentions else None
        for layer in self.layers:
            h, wts = self._layer(layer, h, key_mask, index, prange, output_attentions, scratch)
            if hidden is not None:
                hidden.append(h)
            if attns is not None:
                attns.append(wts)
        return ModelOutput(
            last_hidden_state=h,
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attns) if attns is not None else None,
        )


class _DebertaV2WithHead(PreTrainedModel):
    """DebertaV2Model under ``deberta.`` plus a head (built by _build_head)."""

    model_types = ("deberta-v2",)
    base_prefixes = ("",)
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("deberta.", ""), self.ignore_keys, weights.dtype)
        self.deberta = DebertaV2Model(config, base)
        weights.used |= base.used
        self.id2label, self.label2id = label_maps(config)
        self.num_labels = len(self.id2label)
        self._build_head(config, weights, self.deberta.hidden_size)

    def _build_head(self, config: Config, weights: Weights, C: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def _head(self, h: np.ndarray) -> dict:  # pragma: no cover
        """The head's output fields from the last hidden state (B, T, C)."""
        raise NotImplementedError

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """HF arguments and outputs of the transformers class of the same name (``logits``, or
        ``start_logits`` and ``end_logits``; ``hidden_states``, ``attentions``)."""
        out = self.deberta(
            input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions
        )
        return ModelOutput(
            **self._head(out.last_hidden_state),
            hidden_states=out.get("hidden_states"),
            attentions=out.get("attentions"),
        )


@register("sequence-classification")
class DebertaV2ForSequenceClassification(_DebertaV2WithHead):
    """``transformers.DebertaV2ForSequenceClassification``: ContextPooler (dense +
    ``pooler_hidden_act`` over the first token) and a linear classifier -> logits (B, num_labels)."""

    def _build_head(self, config: Config, weights: Weights, C: int) -> None:
        P = int(config.get("pooler_hidden_size", C) or C)
        self.pooler = _C.Linear(
            weights.get("pooler.dense.weight", (P, C), matrix=True),
            weights.get("pooler.dense.bias", (P,)),
            hidden_act(config, "pooler_hidden_act", "gelu"),
            dtype=weights.dtype,
        )
        self.classifier = _C.Linear(
            weights.get("classifier.weight", (self.num_labels, P), matrix=True),
            weights.get("classifier.bias", (self.num_labels,)),
            dtype=weights.dtype,
        )

    def _head(self, h: np.ndarray) -> dict:
        return dict(logits=self.classifier(self.pooler(np.ascontiguousarray(h[:, 0]))))


@register("token-classification")
class DebertaV2ForTokenClassification(_DebertaV2WithHead):
    """``transformers.DebertaV2ForTokenClassification``: classifier(h) -> logits (B, T, num_labels)."""

    def _build_head(self, config: Config, weights: Weights, C: int) -> None:
        self.classifier = _C.Linear(
            weights.get("classifier.weight", (self.num_labels, C), matrix=True),
            weights.get("classifier.bias", (self.num_labels,)),
            dtype=weights.dtype,
        )

    def _head(self, h: np.ndarray) -> dict:
        return dict(logits=self.classifier(h))


@register("question-answering")
class DebertaV2ForQuestionAnswering(_DebertaV2WithHead):
    """``transformers.DebertaV2ForQuestionAnswering``: qa_outputs(h) (B, T, 2) -> start_logits,
    end_logits (B, T)."""

    def _build_head(self, config: Config, weights: Weights, C: int) -> None:
        if self.num_labels != 2:
            raise CheckpointError(
                f"config.json: DebertaV2ForQuestionAnswering needs num_labels=2 (start and end "
                f"logits), got {self.num_labels}"
            )
        self.qa_outputs = _C.Linear(
            weights.get("qa_outputs.weight", (2, C), matrix=True),
            weights.get("qa_outputs.bias", (2,)),
            dtype=weights.dtype,
        )

    def _head(self, h: np.ndarray) -> dict:
        logits = self.qa_outputs(h)  # (B, T, 2)
        return dict(
            start_logits=np.ascontiguousarray(logits[..., 0]), end_logits=np.ascontiguousarray(logits[..., 1])
        )


@register("masked-lm")
class DebertaV2ForMaskedLM(_DebertaV2WithHead):
    """``transformers.DebertaV2ForMaskedLM``: logits (B, T, vocab_size). HF picks the head by
    ``config.legacy`` (default True): the legacy head ``cls.predictions`` (dense to
    embedding_size, act, LayerNorm, a decoder tied to the word embeddings unless the checkpoint
    stores its own) or ``lm_predictions.lm_head`` (dense, act, LayerNorm, then the word
    embeddings transposed plus a bias). The checkpoints' ``mask_predictions.*`` (replaced-token
    detection of DeBERTa-v3 pretraining) are ignored, as HF does."""

    ignore_keys = ("position_ids", "mask_predictions.")

    def _build_head(self, config: Config, weights: Weights, C: int) -> None:
        V = self.deberta.vocab_size
        E = int(self.deberta.word_embeddings.shape[1])
        eps = layer_norm_eps(config, default=1e-7)
        self.legacy = bool(config.get("legacy", True))
        p = "cls.predictions." if self.legacy else "lm_predictions.lm_head."
        if not self.legacy and E != C:
            raise CheckpointError(
                f"config.json: legacy=false multiplies hidden states (hidden_size={C}) with the word "
                f"embeddings (embedding_size={E}); they must be equal"
            )
        T = E if self.legacy else C
        dense = p + ("transform.dense." if self.legacy else "dense.")
        norm = p + ("transform.LayerNorm." if self.legacy else "LayerNorm.")
        self.transform = _C.Linear(
            weights.get(dense + "weight", (T, C), matrix=True),
            weights.get(dense + "bias", (T,)),
            hidden_act(config),
            dtype=weights.dtype,
        )
        self.transform_norm = _C.LayerNorm(
            weights.get(norm + "weight", (T,)), weights.get(norm + "bias", (T,)), eps=eps
        )
        decoder = (
            weights.get(p + "decoder.weight", (V, E), matrix=True, optional=True) if self.legacy else None
        )
        if decoder is None:
            if self.legacy and not config.get("tie_word_embeddings", True):
                raise CheckpointError(
                    "checkpoint: cls.predictions.decoder.weight is missing and tie_word_embeddings is false"
                )
            decoder = self.deberta.word_embeddings
        bias = weights.get(p + "bias", (V,), optional=self.legacy)
        if self.legacy:
            # the legacy head adds decoder.bias, which HF ties to cls.predictions.bias unless
            # tie_word_embeddings is false (then cls.predictions.bias is unused)
            decoder_bias = weights.get(p + "decoder.bias", (V,), optional=True)
            if decoder_bias is not None:
                bias = decoder_bias
            elif bias is None:
                raise CheckpointError("checkpoint: cls.predictions.decoder.bias is missing")
        self.decoder = _C.Linear(decoder, bias, dtype=weights.dtype)

    def _head(self, h: np.ndarray) -> dict:
        return dict(logits=self.decoder(self.transform_norm(self.transform(h))))
