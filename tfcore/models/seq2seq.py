"""What every encoder-decoder family (T5, BART, mBART, Marian, Pegasus, Whisper, ...) shares:
the decoder's caches, the encoder/decoder passes with Hugging Face's arguments, and the start
of generation.

- ``EncoderDecoderCache``: past_key_values of an encoder-decoder, the decoder's self-attention
  KVCache (extended in place by every call) and each decoder layer's cross-attention keys and
  values, projected once from the encoder output.
- ``Seq2SeqStack``: an encoder or decoder stack of ``_C.TransformerBlock`` s run one after the
  other (decoder blocks with cross-attention), with an optional final norm. A family builds the
  blocks; the loop, the hidden-state / attention collection and the cross K/V projection are
  here.
- ``EncoderDecoderMixin``: ``new_cache``, ``decode`` and the forward shared by ``XModel`` and
  ``XForConditionalGeneration`` (encoder_outputs to skip the encoder, past_key_values).
- ``Seq2SeqGenerationMixin``: generate() for those models. The encoder runs once, every decoder
  layer's cross-attention keys and values are projected once (shared by an input's beams), and
  GenerationMixin's greedy / sampling / beam loops drive the decoder from
  decoder_start_token_id with a KVCache for its self-attention.

A family provides: ``encode(ids, mask, output_hidden_states, output_attentions)`` ->
(hidden, mask, hidden states, attentions); ``self.decoder`` (a Seq2SeqStack);
``embed_decoder(ids, past)`` -> (B, T, C) decoder inputs for tokens at positions past.. ;
``logits(h)`` for the LM head; ``hidden_size``, ``vocab_size``, ``generation_defaults``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .. import _C
from ..generation import GenerationMixin
from .base import ModelOutput, check_ids, padding_mask

__all__ = ["EncoderDecoderCache", "Seq2SeqStack", "EncoderDecoderMixin", "Seq2SeqGenerationMixin"]


class EncoderDecoderCache:
    """past_key_values of an encoder-decoder model: the decoder's self-attention KVCache
    (extended in place by every call) and each decoder layer's cross-attention keys and
    values, (B, S, 2 * heads * head_dim) = [keys | values] per encoder position, projected from
    the encoder output on the first call and reused by the following ones."""

    def __init__(
        self, self_attention_cache: _C.KVCache, cross_attention_cache: Optional[List[np.ndarray]] = None
    ):
        if not isinstance(self_attention_cache, _C.KVCache):
            raise _C.TfcoreTypeError(
                "self_attention_cache must be a tfcore.KVCache (model.new_cache(batch)), "
                f"got {type(self_attention_cache).__name__}"
            )
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


class Seq2SeqStack:
    """Blocks run in order, then final_norm (or none). Decoder stacks (decoder=True) hold
    blocks with cross-attention. A family's constructor fills ``layers`` and ``final_norm``."""

    layers: List[_C.TransformerBlock]
    final_norm = None
    decoder = False

    def cross_key_values(self, encoder_hidden_states: np.ndarray) -> List[np.ndarray]:
        """Every decoder layer's cross-attention [keys | values] (B, S, 2 * heads * head_dim) of
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
        if self.final_norm is not None:
            h = self.final_norm(h)
            if output_hidden_states:
                hidden[-1] = h  # HF reports the last block's output after the final norm
        return (
            h,
            tuple(hidden) if hidden is not None else None,
            tuple(attentions) if attentions is not None else None,
            tuple(crosses) if crosses is not None else None,
        )


class EncoderDecoderMixin:
    """The decoder side of an encoder-decoder PreTrainedModel (see the module docstring for
    what the family provides)."""

    # why new_cache refuses bounded cache policies, completed by the family
    full_cache_reason = "its decoder needs every past position"

    def default_decoder_input_ids(self, input_ids) -> Optional[np.ndarray]:
        """decoder_input_ids when a forward call gives none (BART: input_ids shifted right);
        None makes the call raise, as T5 does."""
        return None

    def new_cache(
        self,
        batch_size: int,
        capacity: int = 256,
        policy: str = "full",
        budget: Optional[int] = None,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> _C.KVCache:
        """A KVCache for the decoder's self-attention (policy "full" only)."""
        if policy != "full":
            raise _C.TfcoreValueError(
                f"cache_policy={policy!r} is not supported by {type(self).__name__}: {self.full_cache_reason}"
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
                f"past_key_values must be a tfcore.models.seq2seq.EncoderDecoderCache "
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
            self.embed_decoder(ids, past),
            mask,
            encoder_hidden_states,
            encoder_mask,
            cross_kv,
            cache.self_attention_cache if cache is not None else None,
            output_hidden_states,
            output_attentions,
        )
        return h, cache, hidden, attns, crosses

    def _lm_output(self, h: np.ndarray, extra: dict, logits_to_keep: int) -> ModelOutput:
        """The ...ForConditionalGeneration output: the head on the decoder's hidden states
        (the last logits_to_keep positions only when > 0) and the other outputs."""
        if logits_to_keep:
            h = np.ascontiguousarray(h[:, -logits_to_keep:])
        return ModelOutput(logits=self.logits(h), **extra)

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
        if decoder_input_ids is None and input_ids is not None:
            decoder_input_ids = self.default_decoder_input_ids(input_ids)
        if decoder_input_ids is None:
            raise _C.TfcoreValueError(
                f"decoder_input_ids is required ({type(self).__name__} starts from "
                f"decoder_start_token_id, {self.generation_defaults.get('decoder_start_token_id')})"
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


class Seq2SeqGenerationMixin(GenerationMixin):
    """generate() for an EncoderDecoderMixin model with a logits(h) LM head."""

    def _length_counted_before_new_tokens(self, prompt_len: int) -> int:
        """HF's max_length counts decoder tokens: the start token, not the encoder's input."""
        return 1

    def _check_generation_length(self, prompt_len: int, max_new_tokens: int, cache_policy: str) -> None:
        """With position_limit (learned or tabled positions): the encoder reads prompt_len
        positions, the decoder max_new_tokens (its start token and every new one but the last)."""
        limit = getattr(self, "position_limit", None)
        if limit is None:
            return
        enc_limit = getattr(self, "encoder_position_limit", limit)  # LED's encoder reads more
        if prompt_len > enc_limit:
            raise _C.TfcoreValueError(
                f"{type(self).__name__} has position embeddings for {enc_limit} positions: input_ids has "
                f"{prompt_len} tokens (truncate the input to at most {enc_limit})"
            )
        if max_new_tokens > limit:
            raise _C.TfcoreValueError(
                f"{type(self).__name__}'s decoder has position embeddings for {limit} positions: "
                f"max_new_tokens={max_new_tokens} would go past them (at most {limit})"
            )

    def decoder_start(self, decoder_start_token_id: Optional[int]) -> int:
        """The token decoding starts from: the argument, else the checkpoint's
        decoder_start_token_id, else its pad_token_id (as HF)."""
        start = decoder_start_token_id
        if start is None:
            start = self.generation_defaults.get("decoder_start_token_id")
        if start is None:
            start = self.generation_defaults.get("pad_token_id")
        if start is None or not 0 <= int(start) < self.vocab_size:
            raise _C.TfcoreValueError(
                f"decoder_start_token_id must be a token id in [0, {self.vocab_size}), got {start}"
            )
        return int(start)

    def _generation_encode(self, ids: np.ndarray, mask: np.ndarray):
        """(encoder output, padding mask or None) of a generate() call's input_ids (LED adds
        the call's global_attention_mask)."""
        enc, enc_mask, _, _ = self.encode(ids, mask)
        return enc, enc_mask

    def _generation_start(
        self, ids: np.ndarray, mask: np.ndarray, copies: int, decoder_start_token_id: Optional[int]
    ):
        """Encode once, project the cross-attention keys/values once (shared by an input's beams),
        and decode from decoder_start_token_id."""
        start = self.decoder_start(decoder_start_token_id)
        enc, enc_mask = self._generation_encode(ids, mask)
        # projected once per input row and shared by its beams (the attention layers take
        # encoder_key_values with one row per `copies` consecutive decoder rows): a quarter of
        # the projection at 4 beams, and each step reads the encoder keys/values once per
        # input instead of once per beam
        cross_kv = self.decoder.cross_key_values(enc)
        B = ids.shape[0]

        def step(step_ids, step_mask, positions, cache):
            """Decoder on the new tokens against the cached self-attention and the projected
            encoder; the LM head on the last position only."""
            x = self.embed_decoder(step_ids, cache.get_seq_length())
            h, _, _, _ = self.decoder(x, None, None, enc_mask, cross_kv, cache)
            return self.logits(np.ascontiguousarray(h[:, -1:]))[:, -1, :]

        return np.full((B, 1), start, np.int64), np.ones((B, 1), np.int64), step
