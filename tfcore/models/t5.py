"""T5: T5EncoderModel, T5Model and T5ForConditionalGeneration from Hugging Face checkpoints.

Pre-norm blocks with RMSNorm (T5LayerNorm), no biases and no 1/sqrt(d) attention scaling;
a bucketed relative position bias (bidirectional in the encoder, causal in the decoder)
computed inside the attention kernel from the first block's table, which HF shares with
every layer of the stack. v1.0 checkpoints use a ReLU feed-forward and an LM head tied to
the embeddings with outputs scaled by d_model**-0.5; v1.1 (``feed_forward_proj:
"gated-gelu"``) a gated tanh-GELU feed-forward and an untied head without scaling.

Generation encodes the input once, projects every decoder layer's cross-attention keys and
values once (``EncoderDecoderCache``), and runs tfcore's greedy / sampling / beam search on
the decoder with a KVCache for its self-attention.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .. import _C
from ..config import Config
from ..generation import GenerationMixin, read_generation_defaults
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .registry import register

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


class EncoderDecoderCache:
    """past_key_values of an encoder-decoder model: the decoder's self-attention KVCache
    (extended in place by every call) and each decoder layer's cross-attention keys and
    values, (B, S, 2 * heads * d_kv) = [keys | values] per encoder position, projected from
    the encoder output on the first call and reused by the following ones."""

    def __init__(
        self, self_attention_cache: _C.KVCache, cross_attention_cache: Optional[List[np.ndarray]] = None
    ):
        self.self_attention_cache = self_attention_cache
        self.cross_attention_cache = cross_attention_cache

    def get_seq_length(self) -> int:
        """Decoder tokens seen so far."""
        return self.self_attention_cache.get_seq_length()

    def reorder(self, beam_idx) -> None:
        """Keep row beam_idx[i] as row i (beam search), in both caches."""
        idx = np.ascontiguousarray(beam_idx, dtype=np.int64)
        self.self_attention_cache.reorder(idx)
        if self.cross_attention_cache is not None and not np.array_equal(idx, np.arange(len(idx))):
            self.cross_attention_cache = [np.ascontiguousarray(kv[idx]) for kv in self.cross_attention_cache]

    def __repr__(self) -> str:
        cross = "none" if self.cross_attention_cache is None else f"{len(self.cross_attention_cache)} layers"
        return f"EncoderDecoderCache(self_attention_cache={self.self_attention_cache!r}, cross_attention={cross})"


class T5Stack:
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

    def cross_key_values(self, encoder_hidden_states: np.ndarray) -> List[np.ndarray]:
        """Every decoder layer's cross-attention [keys | values] (B, S, 2 * heads * d_kv) of
        the encoder output: the projections a generate() call computes once."""
        return [layer.cross_attention.kv_proj(encoder_hidden_states) for layer in self.layers]

    def __call__(
        self,
        h: np.ndarray,
        mask: Optional[np.ndarray],
        encoder_hidden_states=None,
        encoder_mask: Optional[np.ndarray] = None,
        cross_kv: Optional[Sequence[np.ndarray]] = None,
        cache: Optional[_C.KVCache] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        """(final hidden states, hidden states, self-attentions, cross-attentions); the tuples
        are None unless asked for. A decoder takes the encoder output or its projected
        cross_kv, the encoder's padding mask and optionally a KVCache."""
        hidden = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        crosses = [] if output_attentions and self.decoder else None
        for i, layer in enumerate(self.layers):
            kw = {}
            if self.decoder:
                kw["encoder_attention_mask"] = encoder_mask
                if cross_kv is not None:
                    kw["encoder_key_values"] = cross_kv[i]
                else:
                    kw["encoder_hidden_states"] = encoder_hidden_states
                if cache is not None:
                    kw.update(past_key_values=cache, layer_idx=i)
            if output_attentions:
                h, *weights = layer(h, mask, output_attentions=True, **kw)
                attentions.append(weights[0])
                if self.decoder:
                    crosses.append(weights[1])
            else:
                h = layer(h, mask, **kw)
            if output_hidden_states:
                hidden.append(h)
        h = self.final_norm(h)
        if output_hidden_states:
            hidden[-1] = h  # HF reports the last block's output after the final norm
        return (
            h,
            tuple(hidden) if hidden is not None else None,
            tuple(attentions) if attentions is not None else None,
            tuple(crosses) if crosses is not None else None,
        )


class _T5Base(PreTrainedModel):
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

    # -- decoder side (T5Model and T5ForConditionalGeneration)
    def new_cache(
        self,
        batch_size: int,
        capacity: int = 256,
        policy: str = "full",
        budget: Optional[int] = None,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> _C.KVCache:
        """A KVCache for the decoder's self-attention (policy "full" only: the relative
        position bias needs every past position)."""
        if policy != "full":
            raise _C.TfcoreValueError(
                f"cache_policy={policy!r} is not supported by {type(self).__name__}: "
                "T5's relative position bias needs the full decoder cache"
            )
        attn = self.decoder.layers[0].attention
        return _C.KVCache(
            len(self.decoder.layers),
            batch_size,
            attn.num_key_value_heads,
            attn.head_dim,
            capacity=max(int(capacity), 1),
            dtype=dtype,
        )

    def _encoder_output(
        self, input_ids, attention_mask, encoder_outputs, output_hidden_states, output_attentions
    ):
        if encoder_outputs is None:
            if input_ids is None:
                raise _C.TfcoreValueError("give input_ids or encoder_outputs")
            h, mask, hidden, attns = self.encode(
                input_ids, attention_mask, output_hidden_states, output_attentions
            )
            return h, mask, hidden, attns
        if isinstance(encoder_outputs, dict):
            h = encoder_outputs.get("last_hidden_state")
            hidden, attns = encoder_outputs.get("hidden_states"), encoder_outputs.get("attentions")
        elif isinstance(encoder_outputs, (tuple, list)):
            h = encoder_outputs[0] if encoder_outputs else None
            hidden = encoder_outputs[1] if len(encoder_outputs) > 1 else None
            attns = encoder_outputs[2] if len(encoder_outputs) > 2 else None
        else:
            h, hidden, attns = encoder_outputs, None, None
        h = np.asarray(h) if h is not None else None
        if h is None or h.ndim != 3 or h.shape[2] != self.hidden_size or h.dtype != np.float32:
            raise _C.TfcoreValueError(
                f"encoder_outputs must hold a float32 (batch, seq_len, {self.hidden_size}) "
                f"last_hidden_state, got {None if h is None else (h.shape, h.dtype)}"
            )
        mask = padding_mask(attention_mask, h.shape[0], h.shape[1], "(batch, encoder seq_len)")
        return np.ascontiguousarray(h), mask, hidden, attns

    def decode(
        self,
        decoder_input_ids,
        decoder_attention_mask=None,
        encoder_hidden_states=None,
        encoder_mask: Optional[np.ndarray] = None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        """Decoder pass: (last hidden state, cache or None, hidden states, self-, cross-attentions).
        past_key_values: an EncoderDecoderCache (or None; use_cache=True starts one)."""
        ids = check_ids("decoder_input_ids", decoder_input_ids, self.vocab_size)
        B, T = ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = EncoderDecoderCache(self.new_cache(B, T))
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise _C.TfcoreTypeError(
                f"past_key_values must be a tfcore.models.t5.EncoderDecoderCache "
                f"(from a previous call or EncoderDecoderCache(model.new_cache(batch))), "
                f"got {type(cache).__name__}"
            )
        cross_kv = None
        if cache is not None:
            if cache.cross_attention_cache is None:
                if encoder_hidden_states is None:
                    raise _C.TfcoreValueError("the first call with a cache needs the encoder output")
                cache.cross_attention_cache = self.decoder.cross_key_values(encoder_hidden_states)
            cross_kv = cache.cross_attention_cache
            if cross_kv[0].shape[0] != B:
                raise _C.TfcoreValueError(
                    f"past_key_values holds cross-attention for batch {cross_kv[0].shape[0]}, "
                    f"decoder_input_ids has batch {B}"
                )
        elif encoder_hidden_states is None:
            raise _C.TfcoreValueError("the decoder needs encoder_outputs (or input_ids to encode)")
        elif encoder_hidden_states.shape[0] != B:
            raise _C.TfcoreValueError(
                f"encoder output has batch {encoder_hidden_states.shape[0]}, decoder_input_ids has batch {B}"
            )
        past = cache.get_seq_length() if cache is not None else 0
        mask = padding_mask(decoder_attention_mask, B, past + T, "(batch, past + new)")
        h, hidden, attns, crosses = self.decoder(
            self.shared(ids),
            mask,
            encoder_hidden_states,
            encoder_mask,
            cross_kv,
            cache.self_attention_cache if cache is not None else None,
            output_hidden_states,
            output_attentions,
        )
        return h, cache, hidden, attns, crosses

    def _seq2seq(
        self,
        input_ids,
        attention_mask,
        decoder_input_ids,
        decoder_attention_mask,
        encoder_outputs,
        past_key_values,
        use_cache,
        output_hidden_states,
        output_attentions,
    ):
        enc, enc_mask, enc_hidden, enc_attns = self._encoder_output(
            input_ids, attention_mask, encoder_outputs, output_hidden_states, output_attentions
        )
        if decoder_input_ids is None:
            raise _C.TfcoreValueError(
                "decoder_input_ids is required (T5 starts from decoder_start_token_id, "
                f"{self.generation_defaults.get('decoder_start_token_id')})"
            )
        h, cache, hidden, attns, crosses = self.decode(
            decoder_input_ids,
            decoder_attention_mask,
            enc,
            enc_mask,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        extra = dict(
            past_key_values=cache,
            decoder_hidden_states=hidden,
            decoder_attentions=attns,
            cross_attentions=crosses,
            encoder_last_hidden_state=enc,
            encoder_hidden_states=enc_hidden,
            encoder_attentions=enc_attns,
        )
        return h, extra


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
class T5ForConditionalGeneration(_T5Base, GenerationMixin):
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
        if logits_to_keep:
            h = np.ascontiguousarray(h[:, -logits_to_keep:])
        return ModelOutput(logits=self.logits(h), **extra)

    def _generation_start(
        self, ids: np.ndarray, mask: np.ndarray, copies: int, decoder_start_token_id: Optional[int]
    ):
        """Encode once, project the cross-attention keys/values once (repeated for beams),
        and decode from decoder_start_token_id."""
        start = decoder_start_token_id
        if start is None:
            start = self.generation_defaults.get("decoder_start_token_id")
        if start is None:
            start = self.generation_defaults.get("pad_token_id")
        if start is None or not 0 <= int(start) < self.vocab_size:
            raise _C.TfcoreValueError(
                f"decoder_start_token_id must be a token id in [0, {self.vocab_size}), got {start}"
            )
        enc, enc_mask, _, _ = self.encode(ids, mask)
        if copies > 1:
            enc = np.repeat(enc, copies, axis=0)
            enc_mask = np.repeat(enc_mask, copies, axis=0) if enc_mask is not None else None
        cross_kv = self.decoder.cross_key_values(enc)
        B = ids.shape[0]

        def step(step_ids, step_mask, positions, cache):
            """Decoder on the new tokens against the cached self-attention and the projected
            encoder; the LM head on the last position only."""
            h, _, _, _ = self.decoder(self.shared(step_ids), None, None, enc_mask, cross_kv, cache)
            return self.logits(np.ascontiguousarray(h[:, -1:]))[:, -1, :]

        return np.full((B, 1), int(start), np.int64), np.ones((B, 1), np.int64), step
