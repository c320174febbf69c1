"""Whisper: WhisperModel and WhisperForConditionalGeneration from Hugging Face checkpoints.

Encoder: log-mel features (B, num_mel_bins, 3000) -> Conv1d(k=3, pad 1) + GELU -> Conv1d(k=3,
stride 2, pad 1) + GELU -> (B, 1500, C) + sinusoidal positions (the checkpoint's
``embed_positions`` table, or computed as Whisper does when a converted checkpoint lacks it)
-> pre-LayerNorm blocks (k_proj without bias) -> final LayerNorm.
Decoder: token embeddings + learned positions -> pre-LayerNorm blocks with causal
self-attention, cross-attention on the encoder output and a GELU feed-forward -> final
LayerNorm -> the head tied to the token embeddings (``proj_out``).

The cache, the decoder pass and the generation start are the shared encoder-decoder machinery
of ``seq2seq.py``; Whisper's ``generate`` adds the prompt tokens (start of transcript,
language, task, no-timestamps) and HF's token suppression (``suppress_tokens`` at every step,
``begin_suppress_tokens`` at the first generated position).
"""

from __future__ import annotations

import math
import threading
from typing import List, Optional, Sequence

import numpy as np

from .. import _C
from ..config import Config
from ..generation import read_generation_defaults
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .registry import register
from .seq2seq import EncoderDecoderMixin, Seq2SeqGenerationMixin, Seq2SeqStack

__all__ = ["WhisperModel", "WhisperForConditionalGeneration", "whisper_sinusoids"]

# generation_config.json keys Whisper's generate reads
_GENERATION_KEYS = (
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "suppress_tokens",
    "begin_suppress_tokens",
    "no_timestamps_token_id",
    "lang_to_id",
    "task_to_id",
    "is_multilingual",
    "max_length",
)


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """Whisper's encoder positions, (length, channels) float32: [sin | cos] of position x
    inv_timescale, inv_timescale geometric from 1 to 1/max_timescale over channels // 2."""
    if channels % 2:
        raise CheckpointError(f"Whisper's sinusoidal positions need an even d_model, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-increment * np.arange(channels // 2, dtype=np.float64))
    t = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


def _layer_norm(w: Weights, key: str, C: int, eps: float = 1e-5) -> _C.LayerNorm:
    return _C.LayerNorm(w.get(key + ".weight", (C,)), w.get(key + ".bias", (C,)), eps=eps)


class WhisperStack(Seq2SeqStack):
    """Whisper's encoder or decoder blocks (pre-LayerNorm, biases except on k_proj)."""

    def __init__(self, cfg: Config, w: Weights, prefix: str, decoder: bool):
        C = cfg.require("d_model")
        kind = "decoder" if decoder else "encoder"
        H = cfg.require(f"{kind}_attention_heads")
        F = cfg.require(f"{kind}_ffn_dim")
        L = cfg.require(f"{kind}_layers")
        if C % H:
            raise CheckpointError(f"config.json: d_model={C} is not divisible by {kind}_attention_heads={H}")
        act = cfg.get("activation_function", "gelu")
        self.decoder = decoder
        self.layers: List[_C.TransformerBlock] = []
        for i in w.layer_range(L):
            p = f"{prefix}.layers.{i}."

            def g(key, *shape):
                return w.get(p + key, shape, matrix=len(shape) == 2)

            def attention(name, **kw):
                return _C.MultiHeadAttention(
                    C,
                    H,
                    q_weight=g(f"{name}.q_proj.weight", C, C),
                    q_bias=g(f"{name}.q_proj.bias", C),
                    k_weight=g(f"{name}.k_proj.weight", C, C),
                    k_bias=np.zeros(C, np.float32),  # Whisper's k_proj has none
                    v_weight=g(f"{name}.v_proj.weight", C, C),
                    v_bias=g(f"{name}.v_proj.bias", C),
                    o_weight=g(f"{name}.out_proj.weight", C, C),
                    o_bias=g(f"{name}.out_proj.bias", C),
                    dtype=w.dtype,
                    **kw,
                )

            attn = attention("self_attn", is_causal=decoder)
            ffn = _C.FeedForward(
                g("fc1.weight", F, C),
                g("fc2.weight", C, F),
                up_bias=g("fc1.bias", F),
                down_bias=g("fc2.bias", C),
                activation=act,
                dtype=w.dtype,
            )
            n1 = _layer_norm(w, p + "self_attn_layer_norm", C)
            n2 = _layer_norm(w, p + "final_layer_norm", C)
            cross = {}
            if decoder:
                cross = dict(
                    cross_attention=attention("encoder_attn", is_cross_attention=True),
                    norm_cross=_layer_norm(w, p + "encoder_attn_layer_norm", C),
                )
            self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True, **cross))
            w.release()
        self.final_norm = _layer_norm(w, f"{prefix}.layer_norm", C)


class _WhisperBase(EncoderDecoderMixin, PreTrainedModel):
    """The conv stem, the encoder and the decoder; subclasses add the head."""

    model_types = ("whisper",)
    base_prefixes = ("model.", "")
    full_cache_reason = "Whisper's decoder attends to every past token"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, V = cfg.require("d_model"), cfg.require("vocab_size")
        M = cfg.get("num_mel_bins", 80)
        self.hidden_size, self.vocab_size, self.num_mel_bins = C, V, M
        self.max_source_positions = cfg.get("max_source_positions", 1500)
        self.position_limit = cfg.get("max_target_positions", 448)
        if cfg.get("scale_embedding", False):
            raise CheckpointError(
                "config.json: scale_embedding=True is not a Whisper checkpoint tfcore knows"
            )
        act = cfg.get("activation_function", "gelu")
        # the stem: (B, M, 3000) -> (B, C, 3000) -> (B, C, 1500)
        self.conv1 = _C.Conv1d(
            w.get("encoder.conv1.weight", (C, M, 3)),
            w.get("encoder.conv1.bias", (C,)),
            padding=1,
            activation=act,
        )
        self.conv2 = _C.Conv1d(
            w.get("encoder.conv2.weight", (C, C, 3)),
            w.get("encoder.conv2.bias", (C,)),
            stride=2,
            padding=1,
            activation=act,
        )
        P = self.max_source_positions
        table = w.get("encoder.embed_positions.weight", (P, C), optional=True)
        self.encoder_positions = table if table is not None else whisper_sinusoids(P, C)
        self.encoder = WhisperStack(cfg, w, "encoder", decoder=False)
        self.embed_tokens = _C.Embedding(w.get("decoder.embed_tokens.weight", (V, C)))
        self.decoder_positions = w.get("decoder.embed_positions.weight", (self.position_limit, C))
        self.decoder = WhisperStack(cfg, w, "decoder", decoder=True)
        self.generation_defaults = {
            k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "decoder_start_token_id")
        }
        for k in ("suppress_tokens", "begin_suppress_tokens"):
            if cfg.get(k) is not None:
                self.generation_defaults[k] = cfg.get(k)

    def _after_load(self, directory) -> None:
        self.generation_defaults.update(read_generation_defaults(directory, _GENERATION_KEYS))

    def _check_features(self, input_features) -> np.ndarray:
        x = input_features
        if not isinstance(x, np.ndarray):
            raise _C.TfcoreTypeError(
                "input_features must be a NumPy array (batch, num_mel_bins, frames) from "
                f"tfcore.audio.WhisperFeatureExtractor, got {type(x).__name__}"
            )
        if x.dtype != np.float32:
            if x.dtype.kind != "f":
                raise _C.TfcoreTypeError(f"input_features must be float32, got {x.dtype}")
            x = x.astype(np.float32)
        if x.ndim == 2:
            x = x[None]
        frames = 2 * self.max_source_positions
        if x.ndim != 3 or x.shape[1] != self.num_mel_bins or x.shape[2] != frames or x.shape[0] == 0:
            raise _C.TfcoreValueError(
                f"input_features must have shape (batch, {self.num_mel_bins}, {frames}) (30 s of "
                f"log-mel frames: pad or truncate with WhisperFeatureExtractor), got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise _C.TfcoreValueError("input_features holds NaN or infinite values")
        return np.ascontiguousarray(x)

    def encode(
        self, input_features, attention_mask=None, output_hidden_states=False, output_attentions=False
    ):
        """Encoder pass: (last hidden state (B, 1500, C), None, hidden states, attentions).
        attention_mask is accepted and ignored, as HF's Whisper encoder does."""
        x = self._check_features(input_features)
        h = self.conv2(self.conv1(x))  # (B, C, 1500)
        h = np.ascontiguousarray(h.transpose(0, 2, 1))  # (B, 1500, C)
        h += self.encoder_positions[: h.shape[1]]
        h, hidden, attns, _ = self.encoder(
            h, None, output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        return h, None, hidden, attns

    def embed_decoder(self, ids: np.ndarray, past: int) -> np.ndarray:
        """Token embeddings + learned positions past .. past + T - 1."""
        T = ids.shape[1]
        if past + T > self.position_limit:
            raise _C.TfcoreValueError(
                f"Whisper's decoder has {self.position_limit} positions: {past} cached + {T} new tokens go past them"
            )
        return self.embed_tokens(ids) + self.decoder_positions[past : past + T]

    def _forward(
        self,
        input_features,
        decoder_input_ids,
        decoder_attention_mask,
        encoder_outputs,
        past_key_values,
        use_cache,
        output_hidden_states,
        output_attentions,
    ):
        if encoder_outputs is None and input_features is None:
            raise _C.TfcoreValueError("give input_features or encoder_outputs")
        return self._seq2seq(
            input_features,
            None,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )


@register("base")
class WhisperModel(_WhisperBase):
    """``transformers.WhisperModel``: encoder and decoder, the decoder's last hidden state."""

    ignore_keys = ("proj_out.",)

    def forward(
        self,
        input_features=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' WhisperModel. encoder_outputs
        (an earlier output, a tuple or the array) skips the encoder; past_key_values is an
        EncoderDecoderCache that the decoder extends in place."""
        h, extra = self._forward(
            input_features,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        return ModelOutput(last_hidden_state=h, **extra)


def _token_list(value, name: str, vocab: int) -> List[int]:
    if value is None:
        return []
    if isinstance(value, (int, np.integer)):
        value = [value]
    try:
        ids = [int(v) for v in value]
    except (TypeError, ValueError) as e:
        raise _C.TfcoreTypeError(f"{name} must be a list of token ids, got {value!r}") from e
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise _C.TfcoreValueError(f"{name} holds ids outside [0, {vocab}): {bad[:5]}")
    return ids


@register("seq2seq-lm")
class WhisperForConditionalGeneration(_WhisperBase, Seq2SeqGenerationMixin):
    """``transformers.WhisperForConditionalGeneration``: logits over the vocabulary, and
    generate(input_features, language=, task=, ...) as HF's Whisper generate for 30 s inputs."""

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        head = weights.get("proj_out.weight", (self.vocab_size, self.hidden_size), optional=True, matrix=True)
        self.proj_out = _C.Linear(head if head is not None else self.embed_tokens.weight, dtype=weights.dtype)
        self._call = threading.local()  # the features of the generate() call on this thread

    def logits(self, h: np.ndarray) -> np.ndarray:
        """The head (tied to the token embeddings) on decoder hidden states (B, T, C)."""
        return self.proj_out(h)

    def forward(
        self,
        input_features=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of transformers' WhisperForConditionalGeneration
        (encoder_outputs and past_key_values as WhisperModel); logits_to_keep=k computes the
        head on the last k decoder positions only (0 = all)."""
        h, extra = self._forward(
            input_features,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        return self._lm_output(h, extra, logits_to_keep)

    # -- generation
    def prompt_ids(
        self, language: Optional[str] = None, task: Optional[str] = None, return_timestamps: bool = False
    ) -> List[int]:
        """The decoder prompt HF's Whisper generate starts from: start of transcript, then for
        multilingual checkpoints the language token (``"en"``, ``"<|en|>"`` or ``"english"``
        is not parsed: codes and tokens only) and the task token (default ``transcribe``), then
        no-timestamps unless return_timestamps."""
        d = self.generation_defaults
        ids = [self.decoder_start(None)]
        lang_to_id, task_to_id = d.get("lang_to_id") or {}, d.get("task_to_id") or {}
        multilingual = d.get("is_multilingual")
        if multilingual is None:
            multilingual = bool(lang_to_id)
        if language is not None:
            if not multilingual:
                raise _C.TfcoreValueError(
                    f"language={language!r}: this is an English-only Whisper checkpoint (no language tokens)"
                )
            token = language if language.startswith("<|") else f"<|{language.lower()}|>"
            if token not in lang_to_id:
                known = ", ".join(sorted(k.strip("<|>") for k in lang_to_id)[:12])
                raise _C.TfcoreValueError(
                    f"language={language!r} is not one of the checkpoint's ({known}, ...)"
                )
            ids.append(int(lang_to_id[token]))
        if task is not None and not multilingual:
            raise _C.TfcoreValueError(
                f"task={task!r}: this is an English-only Whisper checkpoint (no task tokens)"
            )
        if multilingual:
            if language is None:
                # HF detects the language here; tfcore does not yet: say so instead of guessing
                raise _C.TfcoreValueError(
                    "multilingual Whisper needs language= (e.g. language='en'); language detection is not implemented"
                )
            name = task or "transcribe"
            if name not in task_to_id:
                raise _C.TfcoreValueError(f"task={task!r} is not one of {sorted(task_to_id)}")
            ids.append(int(task_to_id[name]))
        if not return_timestamps:
            nt = d.get("no_timestamps_token_id")
            if nt is None:
                raise _C.TfcoreValueError("generation_config.json has no no_timestamps_token_id")
            ids.append(int(nt))
        return ids

    def generate(
        self,
        input_features,
        language: Optional[str] = None,
        task: Optional[str] = None,
        return_timestamps: bool = False,
        max_new_tokens: Optional[int] = None,
        num_beams: int = 1,
        suppress_tokens: Optional[Sequence[int]] = None,
        begin_suppress_tokens: Optional[Sequence[int]] = None,
        **kwargs,
    ) -> np.ndarray:
        """Transcribe (B, num_mel_bins, 3000) log-mel features: returns the (B, new) token ids
        HF's Whisper generate returns: the tokens after the prompt (``prompt_ids(language,
        task, return_timestamps)``), each row cut before its end-of-text and padded with
        pad_token_id to the longest. suppress_tokens / begin_suppress_tokens default to the
        checkpoint's generation_config.json; other keyword arguments (eos_token_id,
        length_penalty, do_sample, ...) as ``GenerationMixin.generate``."""
        if return_timestamps:
            raise _C.TfcoreValueError(
                "return_timestamps=True is not implemented yet (timestamp decoding rules); use the default"
            )
        x = self._check_features(input_features)
        d = self.generation_defaults
        V = self.vocab_size
        prompt = self.prompt_ids(language, task, return_timestamps)
        suppress = _token_list(
            d.get("suppress_tokens") if suppress_tokens is None else suppress_tokens, "suppress_tokens", V
        )
        begin = _token_list(
            d.get("begin_suppress_tokens") if begin_suppress_tokens is None else begin_suppress_tokens,
            "begin_suppress_tokens",
            V,
        )
        if max_new_tokens is None:
            max_new_tokens = int(d.get("max_length") or self.position_limit) - len(prompt)
        if len(prompt) + max_new_tokens > self.position_limit:
            raise _C.TfcoreValueError(
                f"Whisper's decoder has {self.position_limit} positions: a prompt of {len(prompt)} tokens + "
                f"max_new_tokens={max_new_tokens} would go past them (at most {self.position_limit - len(prompt)})"
            )
        if "decoder_start_token_id" in kwargs:
            raise _C.TfcoreTypeError(
                "Whisper's generate builds its own prompt: pass language= and task= instead"
            )
        self._call.features = x
        self._call.prompt = prompt
        self._call.suppress = (np.asarray(suppress, np.int64), np.asarray(begin, np.int64))
        try:
            seqs = Seq2SeqGenerationMixin.generate(
                self,
                np.zeros((x.shape[0], 1), np.int64),
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                **kwargs,
            )
        finally:
            del self._call.features, self._call.prompt, self._call.suppress
        # HF's layout: the new tokens only, each row ending before its end-of-text, padded
        # with pad_token_id to the longest row
        eos = kwargs.get("eos_token_id", d.get("eos_token_id"))
        eos = set(_token_list(eos, "eos_token_id", V))
        pad = kwargs.get("pad_token_id", d.get("pad_token_id"))
        pad = int(pad) if pad is not None else (min(eos) if eos else 0)
        rows = []
        for row in seqs[:, len(prompt) :]:
            ends = [i for i, t in enumerate(row) if int(t) in eos]
            rows.append(row[: ends[0]] if ends else row)
        out = np.full((len(rows), max((len(r) for r in rows), default=0)), pad, np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def _check_generation_length(self, prompt_len: int, max_new_tokens: int, cache_policy: str) -> None:
        """generate() checked the decoder positions itself (the encoder has no token limit)."""

    def _generation_start(self, ids, mask, copies, decoder_start_token_id):
        """Encode the call's features once, project the cross-attention keys/values once,
        decode from the prompt tokens; the step's scores get HF's suppression."""
        x = self._call.features
        prompt = self._call.prompt
        suppress, begin = self._call.suppress
        enc, _, _, _ = self.encode(x)
        if copies > 1:
            enc = np.repeat(enc, copies, axis=0)
        cross_kv = self.decoder.cross_key_values(enc)
        B = x.shape[0]
        T0 = len(prompt)

        def step(step_ids, step_mask, positions, cache):
            h = self.embed_decoder(step_ids, cache.get_seq_length())
            h, _, _, _ = self.decoder(h, None, None, None, cross_kv, cache)
            return self.logits(np.ascontiguousarray(h[:, -1:]))[:, -1, :]

        def process_scores(scores: np.ndarray, sequences: np.ndarray) -> np.ndarray:
            """HF's SuppressTokensLogitsProcessor and SuppressTokensAtBeginLogitsProcessor:
            -inf for suppress_tokens always, for begin_suppress_tokens at the first new token."""
            if suppress.size:
                scores[:, suppress] = -np.inf
            if begin.size and sequences.shape[1] == T0:
                scores[:, begin] = -np.inf
            return scores

        step.process_scores = process_scores
        return np.tile(np.asarray(prompt, np.int64), (B, 1)), np.ones((B, T0), np.int64), step
