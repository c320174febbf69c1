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
import zlib
from typing import List, Optional, Sequence

import numpy as np

from .. import _C
from ..config import Config
from ..generation import read_generation_defaults
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .registry import register
from .seq2seq import EncoderDecoderMixin, Seq2SeqGenerationMixin, Seq2SeqStack

__all__ = ["WhisperModel", "WhisperForConditionalGeneration", "whisper_sinusoids", "compression_ratio"]

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
    "max_initial_timestamp_index",
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

    def _check_features(self, input_features, long_form: bool = False) -> np.ndarray:
        """(B, num_mel_bins, 3000) float32 C-contiguous; long_form also takes more frames
        (at least one) than one 30 s window."""
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
        if long_form and x.ndim == 3 and x.shape[1] == self.num_mel_bins and x.shape[0] and x.shape[2]:
            pass
        elif x.ndim != 3 or x.shape[1] != self.num_mel_bins or x.shape[2] != frames or x.shape[0] == 0:
            raise _C.TfcoreValueError(
                f"input_features must have shape (batch, {self.num_mel_bins}, {frames}) (30 s of "
                f"log-mel frames: pad or truncate with WhisperFeatureExtractor; longer audio with "
                f"return_timestamps=True), got {x.shape}"
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


def _timestamp_scores(
    scores: np.ndarray,
    sequences: np.ndarray,
    begin: int,
    no_timestamps: int,
    first: int,
    eos: int,
    max_initial: Optional[int],
) -> np.ndarray:
    """HF's WhisperTimeStampLogitsProcessor on scores (rows, V) given the rows' sequences so
    far (rows, T), the first new token at index begin; timestamp tokens are ids >= first:

    - <|notimestamps|> never;
    - timestamps come in pairs: after a pair (or at the start) the next token is text, after a
      single timestamp it is a timestamp or end-of-text (every id below eos is barred);
    - timestamps never decrease (after a pair, not even the same one again);
    - the first new token is a timestamp of index <= max_initial;
    - when the timestamps' total probability exceeds the best text token's, only a timestamp.
    """
    scores[:, no_timestamps] = -np.inf
    for k, row in enumerate(sequences.tolist()):
        seq = row[begin:]
        last = len(seq) >= 1 and seq[-1] >= first
        penultimate = len(seq) < 2 or seq[-2] >= first
        if last:
            if penultimate:
                scores[k, first:] = -np.inf
            else:
                scores[k, :eos] = -np.inf
        stamps = [t for t in seq if t >= first]
        lowest = first
        if stamps:
            lowest = stamps[-1] if last and not penultimate else stamps[-1] + 1
        scores[k, first:lowest] = -np.inf
    if sequences.shape[1] == begin:
        scores[:, :first] = -np.inf
        if max_initial is not None:
            scores[:, first + int(max_initial) + 1 :] = -np.inf
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        top = scores.max(-1, keepdims=True)
        logprobs = scores - (top + np.log(np.exp(scores - top).sum(-1, keepdims=True)))
        stamp = logprobs[:, first:]
        stamp_top = stamp.max(-1, keepdims=True)
        stamp_lse = (stamp_top + np.log(np.exp(stamp - stamp_top).sum(-1, keepdims=True)))[:, 0]
        text_best = logprobs[:, :first].max(-1)
    scores[stamp_lse > text_best, :first] = -np.inf
    return scores


def _window(x: np.ndarray, seek: int, size: int, n: Optional[int] = None) -> np.ndarray:
    """(B, M, size) frames seek .. seek + n of x (B, M, frames), zero-padded on the right
    (HF pads a window with 0.0, not with the features of silence)."""
    n = min(x.shape[2] - seek, size) if n is None else n
    if seek == 0 and n == size == x.shape[2]:
        return x
    out = np.zeros((x.shape[0], x.shape[1], size), np.float32)
    out[:, :, :n] = x[:, :, seek : seek + n]
    return out


def _pad_rows(rows: List[np.ndarray], pad: int) -> np.ndarray:
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), pad, np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


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


def compression_ratio(tokens: Sequence[int], vocab_size: int) -> float:
    """HF's (and OpenAI's) repetition measure of a window's tokens: their bytes (each token
    little-endian in int(log2(vocab) / 8) + 1 bytes) over the zlib-compressed bytes."""
    width = int(math.log2(vocab_size) / 8) + 1
    raw = b"".join(int(t).to_bytes(width, "little") for t in tokens)
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _fallback_settings(temperature, compression_ratio_threshold, logprob_threshold, no_speech_threshold):
    """Validated (temperatures, thresholds) of HF's temperature fallback."""
    temps = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature]
    if not temps:
        raise _C.TfcoreValueError("temperature must be a number or a non-empty sequence of numbers, got []")
    for t in temps:
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)):
            raise _C.TfcoreTypeError(f"temperature values must be numbers, got {t!r}")
        if not (math.isfinite(t) and t >= 0):
            raise _C.TfcoreValueError(f"temperature values must be finite and >= 0 (0 = greedy), got {t!r}")

    def threshold(name, value, low=-math.inf, high=math.inf):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise _C.TfcoreTypeError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high):
            raise _C.TfcoreValueError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")
        return float(value)

    cr = threshold("compression_ratio_threshold", compression_ratio_threshold, 0.0)
    lp = threshold("logprob_threshold", logprob_threshold)
    ns = threshold("no_speech_threshold", no_speech_threshold, 0.0, 1.0)
    if ns is not None and lp is None:
        raise _C.TfcoreValueError(
            "no_speech_threshold needs logprob_threshold too (a window is skipped as silence when its "
            "average log-probability is below logprob_threshold and its no-speech probability above "
            "no_speech_threshold, as HF and OpenAI's Whisper do)"
        )
    return [float(t) for t in temps], cr, lp, ns


def _chosen_logprobs(scores: np.ndarray, tokens: np.ndarray, top_k: Optional[int]) -> np.ndarray:
    """log_softmax of a step's processed scores (rows, V) at the chosen tokens (rows,); with
    top_k (sampling) only the top_k scores count, as in HF's scores after its top-k warper
    (the temperature, which HF divides in and multiplies back out, cancels)."""
    s = scores
    if top_k is not None and 0 < top_k < s.shape[1]:
        kth = np.partition(s, s.shape[1] - top_k, axis=1)[:, s.shape[1] - top_k][:, None]
        s = np.where(s < kth, -np.inf, s)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        top = s.max(-1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(s - top).sum(-1))
    return s[np.arange(s.shape[0]), tokens] - lse


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
                raise _C.TfcoreValueError(
                    "multilingual Whisper's prompt needs language= (e.g. language='en'); generate() "
                    "detects it from the audio when language=None"
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
        return_segments: bool = False,
        temperature=None,
        compression_ratio_threshold: Optional[float] = None,
        logprob_threshold: Optional[float] = None,
        no_speech_threshold: Optional[float] = None,
        **kwargs,
    ):
        """Transcribe (B, num_mel_bins, 3000) log-mel features: returns the (B, new) token ids
        HF's Whisper generate returns: the tokens after the prompt (``prompt_ids(language,
        task, return_timestamps)``), each row cut before its end-of-text and padded with
        pad_token_id to the longest. suppress_tokens / begin_suppress_tokens default to the
        checkpoint's generation_config.json; other keyword arguments (eos_token_id,
        length_penalty, do_sample, ...) as ``GenerationMixin.generate``.

        language=None on a multilingual checkpoint detects each row's language as HF does
        (``detect_language`` on the first 30 s). return_timestamps=True decodes with HF's
        timestamp rules and its sequential algorithm: 30 s windows from a seek position that
        moves to the last complete segment's end, so features longer than 3000 frames
        (``WhisperFeatureExtractor(..., truncation=False, padding="longest")``) are
        transcribed whole; the result is every segment's tokens (timestamps included)
        concatenated, or with return_segments=True ``{"sequences": ..., "segments": per row a
        list of {"start", "end" (seconds), "tokens"}}``.

        Temperature fallback as HF's Whisper generate (and OpenAI's): temperature a number or a
        sequence such as (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), tried in order for each 30 s window
        (greedy / num_beams at 0, sampling with top_k (default 50) above it); a window is decoded
        again at the next temperature while its tokens' compression_ratio (zlib, see
        ``compression_ratio``) exceeds compression_ratio_threshold or their average log-probability
        (end-of-text included) is below logprob_threshold; with no_speech_threshold too, a window
        whose average log-probability is below logprob_threshold and whose no-speech probability
        (of <|nocaptions|> after <|startoftranscript|>) exceeds no_speech_threshold is skipped as
        silence (no tokens; long-form moves on by the whole window). logprob_threshold works with
        greedy and sampling, not with beam search (HF then uses the beam score: not built). With
        temperature=None (the default) other keyword arguments (do_sample, temperature via
        GenerationMixin) behave as before."""
        x = self._check_features(input_features, long_form=return_timestamps)
        d = self.generation_defaults
        V = self.vocab_size
        if "decoder_start_token_id" in kwargs:
            raise _C.TfcoreTypeError(
                "Whisper's generate builds its own prompt: pass language= and task= instead"
            )
        detected = language is None and self._multilingual()
        if detected:
            # HF's detect_language on the first 30 s window, once per row
            language = [self._id_to_lang(int(i)) for i in self.detect_language(_window(x, 0, self.frames))]
        languages = language if isinstance(language, list) else [language] * x.shape[0]
        prompts = [self.prompt_ids(lang, task, return_timestamps) for lang in languages]
        if detected and task is None:
            # HF adds the default transcribe token only for a language given by the caller,
            # not for a detected one: the prompt is <|startoftranscript|> <|lang|> [<|notimestamps|>]
            task_ids = {int(v) for v in (d.get("task_to_id") or {}).values()}
            prompts = [[t for t in p if t not in task_ids] for p in prompts]
        suppress = _token_list(
            d.get("suppress_tokens") if suppress_tokens is None else suppress_tokens, "suppress_tokens", V
        )
        begin = _token_list(
            d.get("begin_suppress_tokens") if begin_suppress_tokens is None else begin_suppress_tokens,
            "begin_suppress_tokens",
            V,
        )
        T0 = len(prompts[0])
        if max_new_tokens is None:
            max_new_tokens = int(d.get("max_length") or self.position_limit) - T0
        if T0 + max_new_tokens > self.position_limit:
            raise _C.TfcoreValueError(
                f"Whisper's decoder has {self.position_limit} positions: a prompt of {T0} tokens + "
                f"max_new_tokens={max_new_tokens} would go past them (at most {self.position_limit - T0})"
            )
        eos = set(_token_list(kwargs.get("eos_token_id", d.get("eos_token_id")), "eos_token_id", V))
        pad = kwargs.get("pad_token_id", d.get("pad_token_id"))
        pad = int(pad) if pad is not None else (min(eos) if eos else 0)
        suppress_arrays = (np.asarray(suppress, np.int64), np.asarray(begin, np.int64))
        ts = self._timestamp_rules(T0, kwargs) if return_timestamps else None

        def run(features: np.ndarray, prompt: List[int], beams: int, kw: dict, track=None) -> np.ndarray:
            """One generate call on (b, M, 3000): the (b, new) tokens after the prompt."""
            self._call.features = features
            self._call.prompt = prompt
            self._call.suppress = suppress_arrays
            self._call.timestamps = ts
            self._call.track = track
            try:
                seqs = Seq2SeqGenerationMixin.generate(
                    self,
                    np.zeros((features.shape[0], 1), np.int64),
                    max_new_tokens=max_new_tokens,
                    num_beams=beams,
                    **kw,
                )
            finally:
                del self._call.features, self._call.prompt, self._call.suppress, self._call.timestamps
                del self._call.track
            if track is not None and track["prev"] is not None and seqs.shape[1] > len(prompt):
                # the last step's token (the loop resolves the others one step later)
                track["logprobs"].append(_chosen_logprobs(track["prev"], seqs[:, -1], track["top_k"]))
            return seqs[:, len(prompt) :]

        def cut(row: np.ndarray, keep_eos: bool = False) -> np.ndarray:
            ends = [i for i, t in enumerate(row) if int(t) in eos]
            return np.asarray(row[: ends[0] + int(keep_eos)] if ends else row, np.int64)

        fallback = None
        if (
            temperature is not None
            or compression_ratio_threshold is not None
            or logprob_threshold is not None
            or no_speech_threshold is not None
        ):
            fallback = _fallback_settings(
                0.0 if temperature is None else temperature,
                compression_ratio_threshold,
                logprob_threshold,
                no_speech_threshold,
            )
            if fallback[2] is not None and num_beams > 1 and any(t == 0 for t in fallback[0]):
                raise _C.TfcoreValueError(
                    "logprob_threshold with num_beams > 1 is not supported (HF compares the beam score "
                    "there): use num_beams=1 or leave logprob_threshold unset"
                )

        def decode_with_fallback(features: np.ndarray, prompt: List[int]) -> Optional[np.ndarray]:
            """HF's generate_with_fallback for one row (1, M, 3000): its tokens cut before
            end-of-text, or None when the window is skipped as silence."""
            temps, cr_max, lp_min, ns_max = fallback
            no_speech = None
            for k, t in enumerate(temps):
                kw = {key: v for key, v in kwargs.items() if key not in ("do_sample", "temperature")}
                beams = num_beams
                if t > 0:
                    kw.update(do_sample=True, temperature=t)
                    beams = 1
                top_k = kw.get("top_k", 50) if t > 0 else None
                track = dict(prev=None, logprobs=[], top_k=top_k) if lp_min is not None else None
                new = run(features, prompt, beams, kw, track)[0]
                tokens = cut(new, keep_eos=True)  # HF scores the end-of-text token too
                retry, skip = False, False
                if cr_max is not None and compression_ratio(tokens.tolist(), V) > cr_max:
                    retry = True
                if lp_min is not None:
                    n = len(tokens)
                    avg = float(np.sum([lp[0] for lp in track["logprobs"][:n]])) / n if n else 0.0
                    if avg < lp_min:
                        retry = True
                    if ns_max is not None:
                        if no_speech is None:
                            no_speech = self._no_speech_prob(self._last_encoder_output, prompt[0])
                        if avg < lp_min and no_speech > ns_max:
                            retry, skip = False, True
                if not retry or k == len(temps) - 1:
                    return None if skip else cut(new)
            return None

        def decode(features: np.ndarray, prompt: List[int]) -> List[Optional[np.ndarray]]:
            """Each row's new tokens cut before end-of-text (None: skipped as silence)."""
            if fallback is None:
                return [cut(row) for row in run(features, prompt, num_beams, kwargs)]
            return [decode_with_fallback(features[i : i + 1], prompt) for i in range(features.shape[0])]

        if not return_timestamps:
            if len(set(map(tuple, prompts))) == 1:
                rows = decode(x, prompts[0])
            else:  # rows detected as different languages: one call per row
                rows = [decode(x[i : i + 1], prompts[i])[0] for i in range(x.shape[0])]
            return _pad_rows([np.zeros(0, np.int64) if r is None else r for r in rows], pad)
        # HF's sequential algorithm, row by row (its batch rows are independent too)
        rows, segments = [], []
        for i in range(x.shape[0]):
            segs = self._sequential(x[i], lambda f, p=prompts[i]: decode(f[None], p)[0], ts["first"])
            rows.append(np.concatenate([sg["tokens"] for sg in segs]) if segs else np.zeros(0, np.int64))
            segments.append(segs)
        out = _pad_rows(rows, pad)
        return {"sequences": out, "segments": segments} if return_segments else out

    frames = property(lambda self: 2 * self.max_source_positions)

    def _multilingual(self) -> bool:
        d = self.generation_defaults
        m = d.get("is_multilingual")
        return bool(d.get("lang_to_id")) if m is None else bool(m)

    def _id_to_lang(self, token_id: int) -> str:
        for token, i in (self.generation_defaults.get("lang_to_id") or {}).items():
            if int(i) == token_id:
                return token
        raise _C.TfcoreValueError(f"token {token_id} is not a language token of this checkpoint")

    def detect_language(self, input_features=None, encoder_outputs=None) -> np.ndarray:
        """HF's detect_language: the (B,) language token ids whose logits are highest at the
        first decoding step (after <|startoftranscript|>) on the first 30 s window; needs a
        multilingual checkpoint (lang_to_id in generation_config.json)."""
        lang_to_id = self.generation_defaults.get("lang_to_id") or {}
        if not lang_to_id:
            raise _C.TfcoreValueError(
                "detect_language needs a multilingual Whisper checkpoint (lang_to_id in generation_config.json)"
            )
        if (input_features is None) == (encoder_outputs is None):
            raise _C.TfcoreValueError("give input_features or encoder_outputs (one of them)")
        if input_features is not None:
            x = self._check_features(input_features, long_form=True)
            enc = _window(x, 0, self.frames)
            B = x.shape[0]
        else:
            enc = encoder_outputs
            B = np.asarray(
                enc[0] if isinstance(enc, tuple) else getattr(enc, "last_hidden_state", enc)
            ).shape[0]
        start = np.full((B, 1), self.decoder_start(None), np.int64)
        if input_features is not None:
            logits = self(input_features=enc, decoder_input_ids=start, use_cache=False).logits[:, -1]
        else:
            logits = self(encoder_outputs=enc, decoder_input_ids=start, use_cache=False).logits[:, -1]
        ids = np.array(sorted(int(v) for v in lang_to_id.values()), np.int64)
        return ids[np.argmax(logits[:, ids], axis=-1)]

    def _sequential(self, x: np.ndarray, decode, first: int):
        """HF's sequential long-form decoding of one row's features x (M, frames): 30 s windows
        from seek; a window's tokens split at each pair of adjacent timestamps into segments
        (start/end in seconds: the window's offset + 0.02 s per timestamp step); the next window
        starts at the last complete segment's end timestamp, or after the whole window when it
        ended with a single timestamp or held no pair. Returns (all tokens, segments)."""
        total, n_seg, stride = x.shape[1], self.frames, 2  # conv2's stride: 1 timestamp step = 2 frames
        seek, segments = 0, []
        while seek < total:
            n = min(total - seek, n_seg)
            offset = seek * 0.02 / stride
            tokens = decode(_window(x[None], seek, n_seg, n)[0])
            if tokens is None:  # skipped as silence (temperature fallback's no-speech rule)
                seek += n
                continue
            seq = [int(t) for t in tokens]
            is_ts = [t >= first for t in seq]
            single_ending = is_ts[-2:] == [False, True]
            cuts = [j + 1 for j in range(len(is_ts) - 1) if is_ts[j] and is_ts[j + 1]]
            if cuts:
                if single_ending:
                    cuts.append(len(seq))
                else:
                    cuts[-1] += 1
                last = 0
                for k, cut in enumerate(cuts):
                    part = seq[last:cut]
                    end_index = -1 if k < len(cuts) - 1 or single_ending else -2
                    segments.append(
                        dict(
                            start=offset + (part[0] - first) * 0.02,
                            end=offset + (part[end_index] - first) * 0.02,
                            tokens=np.asarray(part, np.int64),
                        )
                    )
                    last = cut
                seek += n if single_ending else (seq[last - 2] - first) * stride
            else:
                stamps = [t for t in seq if t >= first]
                end_pos = int(n * 0.01 / 0.02)
                if stamps and stamps[-1] != first:
                    end_pos = stamps[-1] - first
                segments.append(
                    dict(start=offset, end=offset + end_pos * 0.02, tokens=np.asarray(seq, np.int64))
                )
                seek += n
        return segments

    _last_encoder_output = property(lambda self: getattr(self._call, "encoder_output", None))

    def _no_speech_prob(self, encoder_output: np.ndarray, start_token: int) -> float:
        """HF's WhisperNoSpeechDetection: the softmax probability of <|nocaptions|> (the token
        before <|notimestamps|>) in the raw logits after <|startoftranscript|>."""
        nt = self.generation_defaults.get("no_timestamps_token_id")
        if nt is None:
            raise _C.TfcoreValueError(
                "no_speech_threshold needs no_timestamps_token_id in generation_config.json"
            )
        logits = (
            self(
                encoder_outputs=encoder_output[:1],
                decoder_input_ids=np.array([[start_token]], np.int64),
                use_cache=False,
            )
            .logits[0, 0]
            .astype(np.float64)
        )
        p = np.exp(logits - logits.max())
        return float(p[int(nt) - 1] / p.sum())

    def _timestamp_rules(self, begin_index: int, kwargs) -> dict:
        """The settings of HF's WhisperTimeStampLogitsProcessor for a prompt of begin_index tokens."""
        d = self.generation_defaults
        nt = d.get("no_timestamps_token_id")
        if nt is None:
            raise _C.TfcoreValueError(
                "return_timestamps=True needs no_timestamps_token_id in generation_config.json"
            )
        eos = kwargs.get("eos_token_id", d.get("eos_token_id"))
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        if eos is None:
            raise _C.TfcoreValueError("return_timestamps=True needs an eos_token_id")
        return dict(
            begin=begin_index,
            no_timestamps=int(nt),
            first=int(nt) + 1,
            eos=int(eos),
            max_initial=d.get("max_initial_timestamp_index"),
        )

    def _check_generation_length(self, prompt_len: int, max_new_tokens: int, cache_policy: str) -> None:
        """generate() checked the decoder positions itself (the encoder has no token limit)."""

    def _generation_start(self, ids, mask, copies, decoder_start_token_id):
        """Encode the call's features once, project the cross-attention keys/values once,
        decode from the prompt tokens; the step's scores get HF's suppression."""
        x = self._call.features
        prompt = self._call.prompt
        suppress, begin = self._call.suppress
        ts = self._call.timestamps
        track = getattr(self._call, "track", None)
        enc, _, _, _ = self.encode(x)
        self._call.encoder_output = enc  # for the no-speech probability of temperature fallback
        # projected once per input and shared by its `copies` beams (the attention layers take
        # encoder_key_values with one row per `copies` consecutive decoder rows): no repeated
        # encoder output, and each step reads the 1500 encoder rows once per input
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
            if ts is not None:
                scores = _timestamp_scores(scores, sequences, **ts)
            if track is not None:
                # the log-probability of each step's chosen token, from the processed scores
                # (HF's output scores), resolved once the token is known: at the next step
                if track["prev"] is not None:
                    track["logprobs"].append(
                        _chosen_logprobs(track["prev"], sequences[:, -1], track["top_k"])
                    )
                track["prev"] = scores.copy()
            return scores

        step.process_scores = process_scores
        return np.tile(np.asarray(prompt, np.int64), (B, 1)), np.ones((B, T0), np.int64), step
