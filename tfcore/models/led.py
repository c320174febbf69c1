"""LED (Longformer Encoder-Decoder, Beltagy et al. 2020): LEDModel and
LEDForConditionalGeneration from Hugging Face checkpoints.

BART's assembly (models/bart.py) whose encoder layers attend through a sliding window plus
global tokens (Longformer's attention, ``tfcore.functional.sliding_window_attention``, linear in
the input length) with the separate global projections (``query_global``, ``key_global``,
``value_global``); ``global_attention_mask`` marks the global tokens as in HF. The decoder is
BART's (post-norm, full self- and cross-attention). Learned positions have no offset and their
own table sizes (``max_encoder_position_embeddings``, ``max_decoder_position_embeddings``).

Unlike HF, the input is not padded to a multiple of ``attention_window``: the window is clipped
at the sequence ends instead, which gives the same outputs for every token (the padding HF adds
is masked out of every real token's attention).
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from .bart import BartForConditionalGeneration, BartModel
from .base import ModelOutput, Weights, check_ids, padding_mask
from .longformer import LongformerLayer, attention_windows, run_longformer_layers
from .registry import register

__all__ = ["LEDModel", "LEDForConditionalGeneration"]

# LongformerLayer.from_weights roles -> HF LEDEncoderLayer module names
LED_ENCODER_NAMES = dict(
    query="self_attn.longformer_self_attn.query",
    key="self_attn.longformer_self_attn.key",
    value="self_attn.longformer_self_attn.value",
    query_global="self_attn.longformer_self_attn.query_global",
    key_global="self_attn.longformer_self_attn.key_global",
    value_global="self_attn.longformer_self_attn.value_global",
    output="self_attn.output",
    norm1="self_attn_layer_norm",
    fc1="fc1",
    fc2="fc2",
    norm2="final_layer_norm",
)


class LEDEncoderStack:
    """Token embeddings + learned positions (row p for position p), layernorm_embedding, then
    post-norm Longformer layers (attention_window[i] tokens in total per layer)."""

    def __init__(self, model: "_LEDVariant", cfg: Config, w: Weights, prefix: str = "encoder"):
        C = model.hidden_size
        H = cfg.require("encoder_attention_heads")
        F = cfg.require("encoder_ffn_dim")
        L = cfg.require("encoder_layers")
        if C % H:
            raise _C.TfcoreValueError(
                f"config.json: d_model={C} is not a multiple of encoder_attention_heads={H}"
            )
        act = cfg.get("activation_function", "gelu")
        if not isinstance(act, str):
            raise _C.TfcoreValueError(f"config.json: activation_function must be a string, got {act!r}")
        eps = model.layer_norm_eps
        P = self.max_positions = model.positions_of(cfg, "encoder")
        self.positions = w.get(f"{prefix}.embed_positions.weight", (P, C))
        self.layernorm_embedding = _C.LayerNorm(
            w.get(f"{prefix}.layernorm_embedding.weight", (C,)),
            w.get(f"{prefix}.layernorm_embedding.bias", (C,)),
            eps=eps,
        )
        self.attention_window = attention_windows(cfg, L)
        self.layers = []
        for i in w.layer_range(L):
            self.layers.append(
                LongformerLayer.from_weights(
                    w, f"{prefix}.layers.{i}", LED_ENCODER_NAMES, C, H, F, eps, act, self.attention_window[i]
                )
            )
            w.release()

    def __call__(
        self,
        tokens: np.ndarray,
        attention_mask,
        global_attention_mask,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        """(B, T, C) token embeddings -> (last hidden state, hidden states, attentions,
        global attentions) as run_longformer_layers."""
        T = tokens.shape[1]
        if T > self.max_positions:
            raise _C.TfcoreValueError(
                f"the encoder has position embeddings for {self.max_positions} positions "
                f"(max_encoder_position_embeddings), got {T} tokens"
            )
        pos = np.ascontiguousarray(np.broadcast_to(self.positions[:T], tokens.shape))
        h = self.layernorm_embedding(tokens, pos)
        return run_longformer_layers(
            self.layers, h, attention_mask, global_attention_mask, output_hidden_states, output_attentions
        )


class _LEDVariant:
    model_types = ("led",)
    base_prefixes = ("led.", "")
    position_offset = 0
    full_cache_reason = "its decoder's learned positions need every past position in the cache"

    def positions_of(self, cfg: Config, side: str) -> int:
        """max_encoder_position_embeddings / max_decoder_position_embeddings."""
        return cfg.require(f"max_{side}_position_embeddings")

    def __init__(self, config: Config, weights: Weights):
        self._call = threading.local()  # the global_attention_mask of this thread's generate()
        super().__init__(config, weights)

    def _build_encoder(self, cfg: Config, w: Weights) -> LEDEncoderStack:
        return LEDEncoderStack(self, cfg, w)

    @property
    def encoder_position_limit(self) -> int:
        """Tokens the encoder reads at most (max_encoder_position_embeddings)."""
        return self.encoder.max_positions

    def encode_with_global(
        self,
        input_ids,
        attention_mask=None,
        global_attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        """Encoder pass: (last hidden state, padding mask or None, hidden states, attentions,
        global attentions)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        mask = padding_mask(attention_mask, B, T)
        h, hidden, attns, gattns = self.encoder(
            self._tokens(ids, self.encoder_embed),
            attention_mask,
            global_attention_mask,
            output_hidden_states,
            output_attentions,
        )
        return h, mask, hidden, attns, gattns

    def encode(
        self,
        input_ids,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        global_attention_mask=None,
    ):
        """Encoder pass: (last hidden state, padding mask or None, hidden states, attentions)."""
        return self.encode_with_global(
            input_ids, attention_mask, global_attention_mask, output_hidden_states, output_attentions
        )[:4]

    def _generation_encode(self, ids: np.ndarray, mask: np.ndarray):
        glob = getattr(self._call, "global_attention_mask", None)
        if glob is not None and glob.shape[0] != ids.shape[0] and ids.shape[0] % glob.shape[0] == 0:
            glob = np.repeat(glob, ids.shape[0] // glob.shape[0], axis=0)  # num_return_sequences
        enc, enc_mask, _, _, _ = self.encode_with_global(ids, mask, glob)
        return enc, enc_mask

    def _led_forward(
        self,
        input_ids,
        attention_mask,
        global_attention_mask,
        decoder_input_ids,
        decoder_attention_mask,
        encoder_outputs,
        past_key_values,
        use_cache,
        output_hidden_states,
        output_attentions,
    ):
        """BART's forward with the encoder run here (for global_attention_mask and the
        encoder's global attentions)."""
        enc_global = None
        if encoder_outputs is None and input_ids is not None:
            h, _, hidden, attns, enc_global = self.encode_with_global(
                input_ids, attention_mask, global_attention_mask, output_hidden_states, output_attentions
            )
            encoder_outputs = (h, hidden, attns)
            if decoder_input_ids is None:
                decoder_input_ids = self.default_decoder_input_ids(input_ids)
        elif isinstance(encoder_outputs, dict):
            enc_global = encoder_outputs.get("global_attentions")
        elif isinstance(encoder_outputs, (tuple, list)) and len(encoder_outputs) > 3:
            enc_global = encoder_outputs[3]
        h, extra = self._seq2seq(
            None,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        extra["encoder_global_attentions"] = enc_global
        return h, extra


@register("base")
class LEDModel(_LEDVariant, BartModel):
    """``transformers.LEDModel``: BartModel's arguments and outputs plus
    ``global_attention_mask`` (and ``encoder_global_attentions``)."""

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        global_attention_mask=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' LEDModel: as BartModel's, with
        global_attention_mask (B, T) 1 for the encoder tokens that attend to and are attended
        by every token. Encoder attentions are (B, H, T, G + attention_window + 1) and
        encoder_global_attentions (B, H, T', G) as HF (see LongformerModel)."""
        h, extra = self._led_forward(
            input_ids,
            attention_mask,
            global_attention_mask,
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
class LEDForConditionalGeneration(_LEDVariant, BartForConditionalGeneration):
    """``transformers.LEDForConditionalGeneration``: logits, generate() as BART's with
    ``global_attention_mask`` for the encoder."""

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        global_attention_mask=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' LEDForConditionalGeneration
        (LEDModel's, plus logits; logits_to_keep=k computes the head on the last k decoder
        positions only, 0 = all)."""
        h, extra = self._led_forward(
            input_ids,
            attention_mask,
            global_attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        return self._lm_output(h, extra, logits_to_keep)

    def generate(self, input_ids, attention_mask=None, global_attention_mask=None, **kwargs) -> np.ndarray:
        """``Seq2SeqGenerationMixin.generate`` (greedy, sampling, beam search, HF's constraints)
        with the encoder's global_attention_mask (B, T) as HF's LED generate takes it."""
        if global_attention_mask is not None:
            ids, glob = np.asarray(input_ids), np.asarray(global_attention_mask)
            if ids.ndim == 1 and glob.ndim == 1:  # one unbatched input, as generate() takes it
                ids, glob = ids[None], glob[None]
            if ids.ndim == 2:  # else generate() raises on input_ids
                self._call.global_attention_mask = padding_mask(
                    glob, *ids.shape, name="global_attention_mask", keep_all_true=True
                )
        try:
            return BartForConditionalGeneration.generate(self, input_ids, attention_mask, **kwargs)
        finally:
            self._call.__dict__.pop("global_attention_mask", None)
