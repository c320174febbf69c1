"""BART: BartModel and BartForConditionalGeneration from Hugging Face checkpoints.

Post-norm encoder and decoder blocks (LayerNorm after each residual, like the original
Transformer) with biased projections and 1/sqrt(head_dim) attention scaling. Token embeddings
(shared by encoder, decoder and the LM head) are multiplied by sqrt(d_model) when
``scale_embedding``; learned position embeddings are stored with an offset of 2 (row
``position + 2``); ``layernorm_embedding`` normalises their sum before the first block. The LM
head adds ``final_logits_bias``.

The same assembly, switched by class attributes, serves the families HF derives from BART
(mBART and Pegasus: pre-norm with final layer norms; Marian and Pegasus: sinusoidal positions).
Caches, the decoder pass and generation are ``seq2seq.py``'s.
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np

from .. import _C
from ..config import Config
from ..generation import read_generation_defaults
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .registry import register
from .seq2seq import EncoderDecoderMixin, Seq2SeqGenerationMixin, Seq2SeqStack

__all__ = ["BartModel", "BartForConditionalGeneration"]

# generation settings a BART-style checkpoint may state (config.json or generation_config.json)
GENERATION_KEYS = (
    "eos_token_id",
    "pad_token_id",
    "bos_token_id",
    "decoder_start_token_id",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "no_repeat_ngram_size",
    "min_length",
)


def sinusoidal_positions(num_positions: int, dim: int) -> np.ndarray:
    """(num_positions, dim) float32 table of Marian / Pegasus: row p is [sin(p * f_j) | cos(p * f_j)]
    with f_j = 10000 ** (-2j / dim) for j < ceil(dim / 2) (sin takes the first ceil(dim/2) columns;
    HF's MarianSinusoidalPositionalEmbedding, computed in float64 then rounded)."""
    j = np.arange(dim // 2 + dim % 2, dtype=np.float64)
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    angle = pos / np.power(10000.0, 2 * j / dim)
    sentinel = dim // 2 if dim % 2 == 0 else (dim // 2) + 1
    out = np.zeros((num_positions, dim), np.float64)
    out[:, :sentinel] = np.sin(angle[:, :sentinel])
    out[:, sentinel:] = np.cos(angle[:, : dim - sentinel])
    return out.astype(np.float32)


class BartStack(Seq2SeqStack):
    """Encoder or decoder: token embeddings (scaled) + positions, optional layernorm_embedding,
    the blocks, an optional final layer norm."""

    def __init__(self, model: "_BartBase", cfg: Config, w: Weights, prefix: str, decoder: bool):
        side = "decoder" if decoder else "encoder"
        C = model.hidden_size
        H = cfg.require(f"{side}_attention_heads")
        F = cfg.require(f"{side}_ffn_dim")
        L = cfg.require(f"{side}_layers")
        if C % H:
            raise _C.TfcoreValueError(
                f"config.json: d_model={C} is not a multiple of {side}_attention_heads={H}"
            )
        act = cfg.get("activation_function", "gelu")
        if not isinstance(act, str):
            raise _C.TfcoreValueError(f"config.json: activation_function must be a string, got {act!r}")
        eps = model.layer_norm_eps
        self.decoder = decoder
        P = self.max_positions = model.positions_of(cfg, side)
        if model.sinusoidal:  # the stored table if the checkpoint has one (HF loads it), else computed
            stored = w.get(f"{prefix}.embed_positions.weight", (P, C), optional=True)
            self.positions = stored if stored is not None else sinusoidal_positions(P, C)
        else:
            off = model.position_offset
            self.positions = w.get(f"{prefix}.embed_positions.weight", (P + off, C))[off:]
        self.layernorm_embedding = None
        if model.has_layernorm_embedding:
            self.layernorm_embedding = _C.LayerNorm(
                w.get(f"{prefix}.layernorm_embedding.weight", (C,)),
                w.get(f"{prefix}.layernorm_embedding.bias", (C,)),
                eps=eps,
            )
        self.layers: List[_C.TransformerBlock] = []
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(f"{prefix}.layers.{i}.{key}", shape, matrix=len(shape) == 2)

            def attention(kind, **kw):
                return _C.MultiHeadAttention(
                    C,
                    H,
                    q_weight=g(f"{kind}.q_proj.weight", C, C),
                    q_bias=g(f"{kind}.q_proj.bias", C),
                    k_weight=g(f"{kind}.k_proj.weight", C, C),
                    k_bias=g(f"{kind}.k_proj.bias", C),
                    v_weight=g(f"{kind}.v_proj.weight", C, C),
                    v_bias=g(f"{kind}.v_proj.bias", C),
                    o_weight=g(f"{kind}.out_proj.weight", C, C),
                    o_bias=g(f"{kind}.out_proj.bias", C),
                    dtype=w.dtype,
                    **kw,
                )

            def norm(name):
                return _C.LayerNorm(g(f"{name}.weight", C), g(f"{name}.bias", C), eps=eps)

            ffn = _C.FeedForward(
                g("fc1.weight", F, C),
                g("fc2.weight", C, F),
                up_bias=g("fc1.bias", F),
                down_bias=g("fc2.bias", C),
                activation=act,
                dtype=w.dtype,
            )
            cross = {}
            if decoder:
                cross = dict(
                    cross_attention=attention("encoder_attn", is_cross_attention=True),
                    norm_cross=norm("encoder_attn_layer_norm"),
                )
            self.layers.append(
                _C.TransformerBlock(
                    attention("self_attn", is_causal=decoder),
                    ffn,
                    norm("self_attn_layer_norm"),
                    norm("final_layer_norm"),
                    norm_first=model.normalize_before,
                    **cross,
                )
            )
            w.release()
        if model.has_final_layer_norm:
            self.final_norm = _C.LayerNorm(
                w.get(f"{prefix}.layer_norm.weight", (C,)), w.get(f"{prefix}.layer_norm.bias", (C,)), eps=eps
            )

    def embed(self, tokens: np.ndarray, ids: np.ndarray, past: int) -> np.ndarray:
        """Block input for (B, T) ids at positions past .. past + T - 1: scaled token embeddings
        (tokens, (B, T, C)) + position rows, through layernorm_embedding if there is one."""
        T = ids.shape[1]
        if past + T > self.max_positions:
            side = "decoder" if self.decoder else "encoder"
            raise _C.TfcoreValueError(
                f"the {side} has position embeddings for {self.max_positions} positions "
                f"(max_position_embeddings), got {past + T} tokens"
            )
        pos = np.ascontiguousarray(np.broadcast_to(self.positions[past : past + T], tokens.shape))
        if self.layernorm_embedding is not None:
            return self.layernorm_embedding(tokens, pos)
        tokens += pos
        return tokens


class _BartBase(EncoderDecoderMixin, PreTrainedModel):
    """Shared embeddings, encoder and decoder; subclasses add the head."""

    model_types = ("bart",)
    base_prefixes = ("model.", "")
    # tied copies of shared.weight some checkpoints store (read when tie_word_embeddings=false)
    ignore_keys = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
    # the variants HF derives from BART differ in these
    normalize_before = False  # pre-norm blocks (mBART, Pegasus)
    has_final_layer_norm = False  # encoder.layer_norm / decoder.layer_norm (mBART, Pegasus)
    has_layernorm_embedding = True  # LayerNorm over embeddings + positions (BART, mBART)
    sinusoidal = False  # fixed sinusoidal positions (Marian, Pegasus) instead of learned ones
    position_offset = 2  # learned position p is row p + 2 (BART's offset; LED has none)
    full_cache_reason = "its decoder's learned positions need every past position in the cache"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, V = cfg.require("d_model"), cfg.require("vocab_size")
        self.hidden_size, self.vocab_size = C, V
        self.max_positions = self.positions_of(cfg, "decoder")
        self.layer_norm_eps = float(cfg.get("layer_norm_eps", 1e-5))
        scale = cfg.get("scale_embedding", False)
        self.embed_scale = np.float32(math.sqrt(C)) if scale else None
        shared = "shared.weight" if w.has("shared.weight") else "encoder.embed_tokens.weight"
        self.shared = _C.Embedding(w.get(shared, (V, C)))
        # tie_word_embeddings=false (transformers 5): encoder, decoder and head own their tables
        self.tied = cfg.get("tie_word_embeddings", True) is not False
        self.encoder_embed = self.decoder_embed = self.shared
        if not self.tied:
            for side in ("encoder", "decoder"):
                table = w.get(f"{side}.embed_tokens.weight", (V, C), optional=True)
                if table is not None:
                    setattr(self, f"{side}_embed", _C.Embedding(table))
        self.encoder = self._build_encoder(cfg, w)
        self.decoder = BartStack(self, cfg, w, "decoder", decoder=True)
        self.generation_defaults = {k: cfg.get(k) for k in GENERATION_KEYS}

    def positions_of(self, cfg: Config, side: str) -> int:
        """Learned / tabled positions of the encoder or decoder side (BART: both
        max_position_embeddings)."""
        return cfg.require("max_position_embeddings")

    def _build_encoder(self, cfg: Config, w: Weights):
        """The encoder stack (LED's differs: Longformer layers)."""
        return BartStack(self, cfg, w, "encoder", decoder=False)

    def _after_load(self, directory) -> None:
        self.generation_defaults.update(read_generation_defaults(directory, GENERATION_KEYS))

    def _tokens(self, ids: np.ndarray, embed: _C.Embedding) -> np.ndarray:
        x = embed(ids)
        if self.embed_scale is not None:
            x *= self.embed_scale
        return x

    def embed_decoder(self, ids: np.ndarray, past: int) -> np.ndarray:
        """Decoder block input for tokens at positions past, past + 1, ..."""
        return self.decoder.embed(self._tokens(ids, self.decoder_embed), ids, past)

    def default_decoder_input_ids(self, input_ids) -> Optional[np.ndarray]:
        """HF's shift_tokens_right: decoder_start_token_id, then input_ids without its last token."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        start = self.generation_defaults.get("decoder_start_token_id")
        if start is None:
            return None
        out = np.empty_like(ids)
        out[:, 0] = int(start)
        out[:, 1:] = ids[:, :-1]
        return out

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
            self.encoder.embed(self._tokens(ids, self.encoder_embed), ids, 0),
            mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        return h, mask, hidden, attns


@register("base")
class BartModel(_BartBase):
    """``transformers.BartModel``: encoder and decoder, the decoder's last hidden state."""

    ignore_keys = _BartBase.ignore_keys + ("final_logits_bias",)

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
        """Hugging Face arguments and outputs of transformers' BartModel. Without
        decoder_input_ids the decoder reads input_ids shifted right behind
        decoder_start_token_id (HF's shift_tokens_right); encoder_outputs (an earlier output, a
        tuple or the array) skips the encoder; past_key_values is an EncoderDecoderCache the
        decoder extends in place."""
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
class BartForConditionalGeneration(_BartBase, Seq2SeqGenerationMixin):
    """``transformers.BartForConditionalGeneration``: logits over the vocabulary, generate()
    (greedy, sampling, beam search; forced BOS/EOS, no_repeat_ngram_size, min_length from the
    checkpoint's generation config unless given)."""

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        w = weights
        C, V = self.hidden_size, self.vocab_size
        head = None if self.tied else w.get("lm_head.weight", (V, C), matrix=True)
        bias = w.get("final_logits_bias", (1, V), optional=True)
        self.lm_head = _C.Linear(
            head if head is not None else self.shared.weight,
            bias=None if bias is None else np.ascontiguousarray(bias[0]),
            dtype=w.dtype,
        )

    @property
    def position_limit(self) -> int:
        """Learned / tabled positions of the encoder and of the decoder (max_position_embeddings)."""
        return self.max_positions

    def logits(self, h: np.ndarray) -> np.ndarray:
        """LM head on decoder hidden states (B, T, C), final_logits_bias added."""
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
        """Hugging Face arguments and outputs of transformers' BartForConditionalGeneration
        (decoder_input_ids, encoder_outputs and past_key_values as BartModel); logits_to_keep=k
        computes the head on the last k decoder positions only (0 = all)."""
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
