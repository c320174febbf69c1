"""T5: T5EncoderModel, T5Model and T5ForConditionalGeneration from Hugging Face checkpoints.

Pre-norm blocks with RMSNorm (T5LayerNorm), no biases and no 1/sqrt(d) attention scaling;
a bucketed relative position bias (bidirectional in the encoder, causal in the decoder)
computed inside the attention kernel from the first block's table, which HF shares with
every layer of the stack. v1.0 checkpoints use a ReLU feed-forward and an LM head tied to
the embeddings with outputs scaled by d_model**-0.5; v1.1 (``feed_forward_proj:
"gated-gelu"``) a gated tanh-GELU feed-forward and an untied head without scaling.

The encoder-decoder machinery (``EncoderDecoderCache``, the decoder pass, generation that
encodes once and projects every decoder layer's cross-attention keys and values once) is
shared with the other encoder-decoder families in ``seq2seq.py``.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .. import _C
from ..config import Config
from ..generation import read_generation_defaults
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .registry import register
from .seq2seq import (
    EncoderDecoderCache,  # noqa: F401  (its home before seq2seq.py: models.t5.EncoderDecoderCache)
    EncoderDecoderMixin,
    Seq2SeqGenerationMixin,
    Seq2SeqStack,
)

__all__ = ["T5EncoderModel", "T5Model", "T5ForConditionalGeneration"]


def feed_forward_kind(cfg: Config):
    """(activation, gated) from feed_forward_proj, as HF's T5Config: "relu", "gelu",
    "gated-gelu" (-> gelu_new, the tanh approximation), "gated-silu", ..."""
    proj = cfg.get("feed_forward_proj", "relu")
    parts = proj.split("-") if isinstance(proj, str) else []
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise CheckpointError(f"config.json: feed_forward_proj={proj!r} is not 'ACT' or 'gated-ACT'")
    act, gated = parts[-1], len(parts) == 2
    if proj == "gated-gelu":
        act = "gelu_new"
    return act, gated


class T5Stack(Seq2SeqStack):
    """The encoder or the decoder: blocks sharing one relative-position table (or, with
    bias_per_layer, each block its own: UMT5), final norm."""

    def __init__(
        self,
        cfg: Config,
        w: Weights,
        prefix: str,
        num_layers: int,
        decoder: bool,
        bias_per_layer: bool = False,
    ):
        C, H, D = cfg.require("d_model"), cfg.require("num_heads"), cfg.require("d_kv")
        F = cfg.require("d_ff")
        buckets = cfg.get("relative_attention_num_buckets", 32)
        distance = cfg.get("relative_attention_max_distance", 128)
        eps = float(cfg.get("layer_norm_epsilon", 1e-6))
        act, gated = feed_forward_kind(cfg)
        self.decoder = decoder
        # HF: only block 0 owns relative_attention_bias; its (buckets, H) table serves every layer
        table = w.get(f"{prefix}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", (buckets, H))
        self.layers: List[_C.TransformerBlock] = []
        ff = 2 if decoder else 1  # index of the feed-forward sub-layer in HF's block.layer list
        for i in w.layer_range(num_layers):

            def g(key, *shape):
                return w.get(f"{prefix}.block.{i}.layer.{key}", shape, matrix=len(shape) == 2)

            if bias_per_layer and i:
                table = g("0.SelfAttention.relative_attention_bias.weight", buckets, H)

            def attention(kind, **kw):
                return _C.MultiHeadAttention(
                    C,
                    H,
                    head_dim=D,
                    q_weight=g(f"{kind}.q.weight", H * D, C),
                    k_weight=g(f"{kind}.k.weight", H * D, C),
                    v_weight=g(f"{kind}.v.weight", H * D, C),
                    o_weight=g(f"{kind}.o.weight", C, H * D),
                    scale=1.0,
                    dtype=w.dtype,
                    **kw,
                )

            attn = attention(
                "0.SelfAttention",
                is_causal=decoder,
                relative_attention_bias=table,
                relative_attention_num_buckets=buckets,
                relative_attention_max_distance=distance,
            )
            dense = f"{ff}.DenseReluDense"
            if gated:
                ffn = _C.FeedForward(
                    g(f"{dense}.wi_1.weight", F, C),
                    g(f"{dense}.wo.weight", C, F),
                    gate_weight=g(f"{dense}.wi_0.weight", F, C),
                    activation=act,
                    dtype=w.dtype,
                )
            else:
                ffn = _C.FeedForward(
                    g(f"{dense}.wi.weight", F, C),
                    g(f"{dense}.wo.weight", C, F),
                    activation=act,
                    dtype=w.dtype,
                )
            n1 = _C.RMSNorm(g("0.layer_norm.weight", C), eps=eps)
            n2 = _C.RMSNorm(g(f"{ff}.layer_norm.weight", C), eps=eps)
            cross = {}
            if decoder:
                cross = dict(
                    cross_attention=attention("1.EncDecAttention", is_cross_attention=True),
                    norm_cross=_C.RMSNorm(g("1.layer_norm.weight", C), eps=eps),
                )
            self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True, **cross))
            w.release()
        self.final_norm = _C.RMSNorm(w.get(f"{prefix}.final_layer_norm.weight", (C,)), eps=eps)


class _T5Base(EncoderDecoderMixin, PreTrainedModel):
    """Shared embeddings and the encoder; subclasses add the decoder and head."""

    model_types = ("t5",)
    base_prefixes = ("",)
    with_decoder = True
    relative_bias_per_layer = False  # UMT5: every self-attention has its own bias table
    # tied copies of shared.weight some checkpoints store; an unused table HF ignores too
    ignore_keys = (
        "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight",
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
    )

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, V = cfg.require("d_model"), cfg.require("vocab_size")
        for key in ("relative_attention_num_buckets", "relative_attention_max_distance"):
            if cfg.get(key) is not None:
                cfg.require(key)
        self.hidden_size, self.vocab_size = C, V
        shared = "shared.weight" if w.has("shared.weight") else "encoder.embed_tokens.weight"
        self.shared = _C.Embedding(w.get(shared, (V, C)))
        self.encoder = T5Stack(
            cfg,
            w,
            "encoder",
            cfg.require("num_layers"),
            decoder=False,
            bias_per_layer=self.relative_bias_per_layer,
        )
        if self.with_decoder:
            L = cfg.get("num_decoder_layers") or cfg.require("num_layers")
            self.decoder = T5Stack(
                cfg, w, "decoder", L, decoder=True, bias_per_layer=self.relative_bias_per_layer
            )
            self.generation_defaults = {
                k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "decoder_start_token_id")
            }

    def _after_load(self, directory) -> None:
        if self.with_decoder:
            self.generation_defaults.update(
                read_generation_defaults(
                    directory, ("eos_token_id", "pad_token_id", "decoder_start_token_id")
                )
            )

    def encode(
        self,
        input_ids,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        """Encoder pass: (last hidden state, padding mask or None, hidden states, attentions)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        mask = padding_mask(attention_mask, B, T)
        h, hidden, attns, _ = self.encoder(
            self.shared(ids),
            mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        return h, mask, hidden, attns

    # -- decoder side (T5Model and T5ForConditionalGeneration): seq2seq.EncoderDecoderMixin
    full_cache_reason = "T5's relative position bias needs the full decoder cache"

    def embed_decoder(self, ids: np.ndarray, past: int) -> np.ndarray:
        """Decoder inputs: the shared embeddings (positions enter through the relative bias)."""
        return self.shared(ids)


@register("encoder")
class T5EncoderModel(_T5Base):
    """``transformers.T5EncoderModel``: the encoder stack (decoder tensors are ignored)."""

    with_decoder = False
    ignore_keys = _T5Base.ignore_keys + ("decoder.", "lm_head.")

    def forward(
        self,
        input_ids,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' T5EncoderModel."""
        h, _, hidden, attns = self.encode(input_ids, attention_mask, output_hidden_states, output_attentions)
        return ModelOutput(last_hidden_state=h, hidden_states=hidden, attentions=attns)


@register("base")
class T5Model(_T5Base):
    """``transformers.T5Model``: encoder and decoder, the decoder's last hidden state."""

    ignore_keys = _T5Base.ignore_keys + ("lm_head.",)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' T5Model. encoder_outputs (an
        earlier output, a tuple or the array) skips the encoder; past_key_values is an
        EncoderDecoderCache that the decoder extends in place."""
        h, extra = self._seq2seq(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        return ModelOutput(last_hidden_state=h, **extra)


@register("seq2seq-lm")
class T5ForConditionalGeneration(_T5Base, Seq2SeqGenerationMixin):
    """``transformers.T5ForConditionalGeneration``: logits over the vocabulary, generate()."""

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, V = self.hidden_size, self.vocab_size
        # transformers 5 writes scale_decoder_outputs; older configs say tie_word_embeddings
        # (v1.0: tied head, outputs scaled by d_model**-0.5; v1.1: untied, unscaled)
        scale = cfg.get("scale_decoder_outputs")
        if scale is None:
            scale = cfg.get("tie_word_embeddings", True) is not False
        self.output_scale = float(C) ** -0.5 if scale else None
        head = w.get("lm_head.weight", (V, C), optional=True, matrix=True)
        self.lm_head = _C.Linear(head if head is not None else self.shared.weight, dtype=w.dtype)

    def logits(self, h: np.ndarray) -> np.ndarray:
        """LM head on decoder hidden states (B, T, C), with v1.0's d_model**-0.5 scaling."""
        if self.output_scale is not None:
            h = h * np.float32(self.output_scale)
        return self.lm_head(h)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' T5ForConditionalGeneration
        (encoder_outputs and past_key_values as T5Model); logits_to_keep=k computes the head
        on the last k decoder positions only (0 = all)."""
        h, extra = self._seq2seq(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        return self._lm_output(h, extra, logits_to_keep)
