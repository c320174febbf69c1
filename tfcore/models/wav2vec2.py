"""wav2vec 2.0 and HuBERT speech encoders from Hugging Face checkpoints, with CTC heads:
raw 16 kHz audio in, per-frame logits and text out, without PyTorch.

The pipeline, as HF's ``Wav2Vec2Model`` / ``HubertModel`` (shapes for one clip of n samples):

1. feature encoder: 7 strided 1-D convolutions (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2
   in the base configs) over (n, 1) -> (T, 512), T ~ n / 320 (20 ms frames), GELU after each;
   ``feat_extract_norm="group"`` puts a per-channel GroupNorm over time after the first
   convolution, ``"layer"`` a LayerNorm over channels after every one. tfcore.Conv1d runs them
   channels-last, so the (T, C) maps flow from one convolution to the next with no transposes.
2. feature projection: LayerNorm (HuBERT: if ``feat_proj_layer_norm``) + Linear -> (T, C).
3. positional convolution: a grouped Conv1d (kernel 128, 16 groups, weight-normalised: the
   weight is ``g * v / ||v||`` per kernel tap, folded once at load) + GELU, added to the frames;
   tfcore.Conv1d (which runs it as one GEMM per group over sliding windows where oneDNN's
   convolution is pathologically slow for this shape, see _PositionalConv).
4. transformer encoder: post-norm layers after a LayerNorm (base), or pre-norm layers and a
   final LayerNorm (``do_stable_layer_norm``, the large configs).

``attention_mask`` (samples) becomes a frame mask through the convolutions' output lengths as
HF computes it; padded frames are zeroed before the positional convolution and masked in
attention. ``*ForCTC`` adds ``lm_head`` -> logits (B, T, vocab); ``ctc_decode`` turns their
argmax into text as HF's ``Wav2Vec2CTCTokenizer.batch_decode`` does (repeats merged, blanks
dropped, the word delimiter as a space), from the checkpoint's ``vocab.json``.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, padding_mask
from .encoder import EncoderStack, hidden_act, layer_norm_eps
from .registry import register

__all__ = [
    "Wav2Vec2Model",
    "Wav2Vec2ForCTC",
    "HubertModel",
    "HubertForCTC",
    "Wav2Vec2FeatureExtractor",
    "ctc_decode",
]

WAV2VEC2_LAYER_KEYS = dict(
    q="attention.q_proj",
    k="attention.k_proj",
    v="attention.v_proj",
    o="attention.out_proj",
    n1="layer_norm",
    up="feed_forward.intermediate_dense",
    down="feed_forward.output_dense",
    n2="final_layer_norm",
)


def _int_list(cfg: Config, key: str, n: Optional[int] = None) -> List[int]:
    v = cfg.require(key, list)
    if (
        not isinstance(v, (list, tuple))
        or not v
        or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v)
    ):
        raise CheckpointError(f"config.json: {key} must be a non-empty list of positive integers, got {v!r}")
    if n is not None and len(v) != n:
        raise CheckpointError(f"config.json: {key} has {len(v)} entries, expected {n} (one per convolution)")
    return list(v)


class _FeatureEncoder:
    """The strided convolutions, channels-last: (B, n) samples -> (B, T, C) frames."""

    def __init__(self, cfg: Config, w: Weights):
        dims = _int_list(cfg, "conv_dim")
        kernels = _int_list(cfg, "conv_kernel", len(dims))
        strides = _int_list(cfg, "conv_stride", len(dims))
        self.kernels, self.strides = kernels, strides
        self.norm = cfg.get("feat_extract_norm", "group")
        if self.norm not in ("group", "layer"):
            raise CheckpointError(
                f"config.json: feat_extract_norm must be 'group' or 'layer', got {self.norm!r}"
            )
        self.act = hidden_act(cfg, "feat_extract_activation", "gelu")
        bias = bool(cfg.get("conv_bias", False))
        self.convs, self.norms = [], []
        c_in = 1
        for i, (c, k, s) in enumerate(zip(dims, kernels, strides)):
            p = f"feature_extractor.conv_layers.{i}."
            normed = self.norm == "layer" or i == 0
            self.convs.append(
                _C.Conv1d(
                    w.get(p + "conv.weight", (c, c_in, k)),
                    w.get(p + "conv.bias", (c,)) if bias else None,
                    stride=s,
                    activation=None if normed else self.act,  # fused when no norm comes between
                    dtype=w.dtype,
                )
            )
            if self.norm == "layer":
                self.norms.append(
                    _C.LayerNorm(
                        w.get(p + "layer_norm.weight", (c,)), w.get(p + "layer_norm.bias", (c,)), eps=1e-5
                    )
                )
            elif i == 0:  # GroupNorm with one group per channel: statistics over time
                self.norms.append((w.get(p + "layer_norm.weight", (c,)), w.get(p + "layer_norm.bias", (c,))))
            else:
                self.norms.append(None)
            c_in = c
        self.channels = c_in

    def output_lengths(self, n: np.ndarray) -> np.ndarray:
        """Frames the convolutions make of n samples (HF's _get_feat_extract_output_lengths)."""
        n = np.asarray(n, np.int64)
        for k, s in zip(self.kernels, self.strides):
            n = np.floor_divide(n - k, s) + 1
        return n

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = np.ascontiguousarray(x[:, :, None])  # (B, n, 1): channels last
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h, channels_last=True)  # (B, T, C)
            if norm is None:
                continue
            if isinstance(norm, tuple):  # GroupNorm(C groups): per channel over the frames
                g, b = norm
                mean = h.mean(axis=1, keepdims=True)
                var = h.var(axis=1, keepdims=True)
                h = ((h - mean) / np.sqrt(var + 1e-5) * g + b).astype(np.float32)
            else:
                h = norm(h)
            h = _C.activation(h, self.act, out=h)
        return h


def _weight_norm(w: Weights, prefix: str, shape) -> np.ndarray:
    """A weight-normalised convolution weight (torch weight_norm, dim=2): w = g * v / ||v||
    with the norm over every axis but the kernel tap; either the parametrizations names or
    the older weight_g / weight_v."""
    if w.has(prefix + "parametrizations.weight.original0"):
        g = w.get(prefix + "parametrizations.weight.original0", (1, 1, shape[2]))
        v = w.get(prefix + "parametrizations.weight.original1", shape)
    elif w.has(prefix + "weight_g"):
        g = w.get(prefix + "weight_g", (1, 1, shape[2]))
        v = w.get(prefix + "weight_v", shape)
    else:
        return w.get(prefix + "weight", shape)
    v64 = v.astype(np.float64)
    norm = np.sqrt((v64**2).sum(axis=(0, 1), keepdims=True))
    return (g.astype(np.float64) * v64 / norm).astype(np.float32)


class _PositionalConv:
    """HF's positional convolution + GELU (grouped Conv1d, kernel K, padding K // 2, the output
    cut to T frames: SamePad drops the extra frame of an even kernel): (B, T, C) -> (B, T, C).

    oneDNN 3.2's avx512_core convolution for this shape (kernel 128, 16 groups of 48 channels)
    runs at ~0.12 GFLOP/s; tfcore.Conv1d routes it to one GEMM per group over sliding windows
    there (layers/conv.c) and keeps oneDNN's avx2 convolution, which runs it well, on AVX2."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, groups: int, dtype: str):
        K = weight.shape[-1]
        self.even = K % 2 == 0
        self.conv = _C.Conv1d(weight, bias, padding=K // 2, groups=groups, activation="gelu", dtype=dtype)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """h + gelu(conv(h)): a new array."""
        if not self.even:
            return self.conv(h, h, channels_last=True)  # the residual fused into the convolution
        return h + self.conv(h, channels_last=True)[:, : h.shape[1]]


@register("base")
class Wav2Vec2Model(PreTrainedModel):
    """``transformers.Wav2Vec2Model``: ``input_values`` (B, n) float32 16 kHz samples (as
    ``Wav2Vec2FeatureExtractor`` prepares them) -> ``last_hidden_state`` (B, T, C) and
    ``extract_features`` (B, T, conv_dim[-1]), the normalised convolution features."""

    model_types = ("wav2vec2",)
    base_prefixes = ("", "wav2vec2.")
    ignore_keys = ("masked_spec_embed", "quantizer.", "project_q.", "project_hid.")
    projection_norm_key = "feat_proj_layer_norm"  # HuBERT's switch; wav2vec2 always normalises

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H = cfg.require("hidden_size"), cfg.require("num_attention_heads")
        eps = layer_norm_eps(cfg, default=1e-5)
        self.hidden_size = C
        self.features = _FeatureEncoder(cfg, w)
        F = self.features.channels
        self.projection_norm = None
        if type(self).projection_norm_key is None or cfg.get(type(self).projection_norm_key, True):
            self.projection_norm = _C.LayerNorm(
                w.get("feature_projection.layer_norm.weight", (F,)),
                w.get("feature_projection.layer_norm.bias", (F,)),
                eps=eps,
            )
        self.projection = _C.Linear(
            w.get("feature_projection.projection.weight", (C, F), matrix=True),
            w.get("feature_projection.projection.bias", (C,)),
            dtype=w.dtype,
        )
        K = cfg.get("num_conv_pos_embeddings", 128)
        G = cfg.get("num_conv_pos_embedding_groups", 16)
        if C % G:
            raise CheckpointError(
                f"config.json: hidden_size={C} is not divisible by num_conv_pos_embedding_groups={G}"
            )
        # HF's SamePad cuts the frame an even kernel makes too many: _PositionalConv makes T
        self.pos_conv = _PositionalConv(
            _weight_norm(w, "encoder.pos_conv_embed.conv.", (C, C // G, K)),
            w.get("encoder.pos_conv_embed.conv.bias", (C,)),
            G,
            w.dtype,
        )
        self.stable_layer_norm = bool(cfg.get("do_stable_layer_norm", False))
        self.encoder_norm = _C.LayerNorm(
            w.get("encoder.layer_norm.weight", (C,)), w.get("encoder.layer_norm.bias", (C,)), eps=eps
        )
        self.encoder = EncoderStack.from_keys(
            w,
            "encoder.layers",
            WAV2VEC2_LAYER_KEYS,
            C,
            H,
            cfg.require("intermediate_size"),
            cfg.require("num_hidden_layers"),
            eps,
            hidden_act(cfg),
            norm_first=self.stable_layer_norm,
        )

    def _check_input(self, input_values) -> np.ndarray:
        x = np.asarray(input_values)
        if x.dtype.kind != "f":
            raise _C.TfcoreTypeError(f"input_values must be float audio samples, got dtype {x.dtype}")
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise _C.TfcoreValueError(f"input_values must be (batch, samples), got shape {x.shape}")
        if x.shape[0] == 0:
            raise _C.TfcoreValueError("input_values is an empty batch")
        if x.shape[1] < self._min_samples():
            raise _C.TfcoreValueError(
                f"input_values has {x.shape[1]} samples per clip: too short for one frame of the feature "
                f"encoder (at least {self._min_samples()} samples)"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise _C.TfcoreValueError("input_values contains NaN or Inf")
        return x

    def _min_samples(self) -> int:
        """The fewest samples the convolutions turn into one frame (400 in the base configs)."""
        n = 1
        for k, s in zip(reversed(self.features.kernels), reversed(self.features.strides)):
            n = (n - 1) * s + k
        return n

    def forward(
        self,
        input_values,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """HF arguments and outputs: ``last_hidden_state``, ``extract_features``,
        ``hidden_states``, ``attentions``. attention_mask (B, n) marks real samples."""
        x = self._check_input(input_values)
        B, n = x.shape
        frames = self.features(x)  # (B, T, F)
        T = frames.shape[1]
        mask = None
        if attention_mask is not None:
            m = padding_mask(attention_mask, B, n, "(batch, samples)", keep_all_true=True)
            lengths = self.features.output_lengths(m.sum(axis=1))
            mask = np.arange(T)[None, :] < lengths[:, None]
            if mask.all():
                mask = None
        extract = self.projection_norm(frames) if self.projection_norm is not None else frames
        h = self.projection(extract)
        if mask is not None:
            h[~mask] = 0.0
        h = self.pos_conv(h)
        if not self.stable_layer_norm:
            h = self.encoder_norm(h)
        h, hidden, attns = self.encoder(h, mask, output_hidden_states, output_attentions, padding_free=False)
        if self.stable_layer_norm:  # HF's hidden_states keep the last layer's output before it
            h = self.encoder_norm(h)
        return ModelOutput(
            last_hidden_state=h, extract_features=extract, hidden_states=hidden, attentions=attns
        )

    def frame_mask(self, attention_mask, num_samples: int) -> np.ndarray:
        """(B, T) bool: the frames real samples make (HF's feature-vector attention mask)."""
        m = np.asarray(attention_mask).astype(bool)
        T = int(self.features.output_lengths(num_samples))
        return np.arange(T)[None, :] < self.features.output_lengths(m.sum(axis=1))[:, None]


@register("base")
class HubertModel(Wav2Vec2Model):
    """``transformers.HubertModel``: wav2vec 2.0's encoder, the projection LayerNorm
    switched by ``feat_proj_layer_norm``."""

    model_types = ("hubert",)
    base_prefixes = ("", "hubert.")
    ignore_keys = ("masked_spec_embed",)


class _CTCHead:
    """``*ForCTC``: lm_head over the encoder's frames -> logits (B, T, vocab_size)."""

    encoder_class = Wav2Vec2Model
    encoder_attr = "wav2vec2"

    def __init__(self, config: Config, weights: Weights):
        PreTrainedModel.__init__(self, config, weights)
        prefix = self.encoder_attr + "."
        base = Weights(weights.ckpt, (prefix,), self.encoder_class.ignore_keys, weights.dtype)
        encoder = self.encoder_class(config, base)
        weights.used |= base.used
        setattr(self, self.encoder_attr, encoder)
        C, V = encoder.hidden_size, config.require("vocab_size")
        self.vocab_size = V
        self.pad_token_id = int(config.get("pad_token_id", 0) or 0)
        self.lm_head = _C.Linear(
            weights.get("lm_head.weight", (V, C), matrix=True),
            weights.get("lm_head.bias", (V,)),
            dtype=weights.dtype,
        )
        self.vocab: Optional[Dict[int, str]] = None
        self.word_delimiter_token = "|"

    def _after_load(self, directory) -> None:
        super()._after_load(directory)
        path = os.path.join(str(directory), "vocab.json")
        if os.path.exists(path):
            self.vocab = _read_vocab(path, self.vocab_size)
        tok_cfg = os.path.join(str(directory), "tokenizer_config.json")
        if os.path.exists(tok_cfg):
            try:
                with open(tok_cfg, encoding="utf-8") as f:
                    delim = json.load(f).get("word_delimiter_token")
            except ValueError:
                delim = None
            if isinstance(delim, str):
                self.word_delimiter_token = delim

    def forward(
        self,
        input_values,
        attention_mask=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """HF arguments and outputs: ``logits`` (B, T, vocab_size), ``hidden_states``,
        ``attentions``."""
        out = getattr(self, self.encoder_attr)(
            input_values, attention_mask, output_hidden_states, output_attentions
        )
        return ModelOutput(
            logits=self.lm_head(out.last_hidden_state),
            hidden_states=out.get("hidden_states"),
            attentions=out.get("attentions"),
        )

    def transcribe(self, input_values, attention_mask=None) -> List[str]:
        """Greedy CTC transcription of a batch: argmax per frame, then ``ctc_decode`` with the
        checkpoint's vocab.json (needs one beside the weights)."""
        if self.vocab is None:
            raise _C.TfcoreValueError(
                f"{self.name_or_path}: no vocab.json beside the checkpoint: CTC ids cannot become text "
                "(use .logits.argmax(-1) for ids)"
            )
        logits = self.forward(input_values, attention_mask).logits
        ids = logits.argmax(-1)
        if attention_mask is not None:
            enc = getattr(self, self.encoder_attr)
            keep = enc.frame_mask(attention_mask, np.asarray(input_values).shape[-1])
            ids = [row[k] for row, k in zip(ids, keep)]
        return ctc_decode(ids, self.vocab, self.pad_token_id, self.word_delimiter_token)


@register("ctc")
class Wav2Vec2ForCTC(_CTCHead, PreTrainedModel):
    """``transformers.Wav2Vec2ForCTC``: per-frame logits; ``transcribe`` gives text."""

    model_types = ("wav2vec2",)
    base_prefixes = ("",)
    ignore_keys = Wav2Vec2Model.ignore_keys


@register("ctc")
class HubertForCTC(_CTCHead, PreTrainedModel):
    """``transformers.HubertForCTC``: per-frame logits; ``transcribe`` gives text."""

    model_types = ("hubert",)
    base_prefixes = ("",)
    ignore_keys = HubertModel.ignore_keys
    encoder_class = HubertModel
    encoder_attr = "hubert"


def _read_vocab(path: str, size: int) -> Dict[int, str]:
    """vocab.json (token -> id) as id -> token; ids must lie in [0, size)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the CTC vocabulary ({e})") from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in raw.items()
    ):
        raise CheckpointError(f"{path}: expected a JSON object mapping tokens to integer ids")
    vocab = {v: k for k, v in raw.items()}
    bad = [i for i in vocab if not 0 <= i < size]
    if bad:
        raise CheckpointError(f"{path}: token ids {bad[:5]} are outside the model's vocabulary of {size}")
    return vocab


def ctc_decode(
    ids: Sequence, vocab: Dict[int, str], blank_id: int = 0, word_delimiter_token: str = "|"
) -> List[str]:
    """Text of CTC frame ids, per row, as ``Wav2Vec2CTCTokenizer.batch_decode``: consecutive
    repeats merged, the blank (pad) token dropped, tokens joined, the word delimiter turned
    into a space, surrounding whitespace stripped. ids: (B, T) ints or a list of 1-D rows."""
    rows = [np.asarray(r) for r in ids] if not (isinstance(ids, np.ndarray) and ids.ndim == 1) else [ids]
    out = []
    for row in rows:
        if row.ndim != 1 or (row.size and row.dtype.kind not in "iu"):
            raise _C.TfcoreValueError("ctc_decode takes rows of integer ids")
        tokens = []
        prev = None
        for t in row.tolist():
            if t != prev and t != blank_id:
                if t not in vocab:
                    raise _C.TfcoreValueError(f"id {t} is not in the vocabulary")
                tokens.append(vocab[t])
            prev = t
        text = "".join(" " if t == word_delimiter_token else t for t in tokens)
        out.append(" ".join(text.split(" ")).strip())
    return out


class Wav2Vec2FeatureExtractor:
    """``transformers.Wav2Vec2FeatureExtractor``: raw mono audio -> ``input_values`` (B, n)
    float32, padded, each clip normalised to zero mean and unit variance (``do_normalize``)
    over its real samples when an attention mask is made, else over the padded row (HF's
    rule; base checkpoints make no mask and expect zero padding)."""

    def __init__(
        self,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        return_attention_mask: bool = False,
    ):
        self.sampling_rate = int(sampling_rate)
        self.padding_value = float(padding_value)
        self.do_normalize = bool(do_normalize)
        self.return_attention_mask = bool(return_attention_mask)

    @classmethod
    def from_pretrained(cls, directory) -> "Wav2Vec2FeatureExtractor":
        """From the checkpoint's preprocessor_config.json (defaults when absent)."""
        path = os.path.join(str(directory), "preprocessor_config.json")
        if not os.path.exists(path):
            return cls()
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except ValueError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from None
        keys = ("sampling_rate", "padding_value", "do_normalize", "return_attention_mask")
        return cls(**{k: cfg[k] for k in keys if k in cfg})

    def __call__(self, raw_speech, sampling_rate: Optional[int] = None, return_attention_mask=None) -> dict:
        from ..audio import _audio_array, _check_rate

        if sampling_rate is not None and _check_rate(sampling_rate, "sampling_rate") != self.sampling_rate:
            raise _C.TfcoreValueError(
                f"the audio is sampled at {sampling_rate} Hz but this feature extractor takes "
                f"{self.sampling_rate} Hz: resample first (tfcore.audio.resample)"
            )
        if isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 2:
            clips = list(raw_speech)
        elif (
            isinstance(raw_speech, (list, tuple))
            and raw_speech
            and isinstance(raw_speech[0], (np.ndarray, list, tuple))
        ):
            clips = list(raw_speech)
        else:
            clips = [raw_speech]
        arrays = [
            _audio_array(c, name="raw_speech" if len(clips) == 1 else f"raw_speech[{i}]").astype(np.float32)
            for i, c in enumerate(clips)
        ]
        width = max(a.shape[0] for a in arrays)
        values = np.full((len(arrays), width), self.padding_value, np.float32)
        mask = np.zeros((len(arrays), width), np.int32)
        for i, a in enumerate(arrays):
            values[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = 1
        want_mask = (
            self.return_attention_mask if return_attention_mask is None else bool(return_attention_mask)
        )
        if self.do_normalize:
            for i, a in enumerate(arrays):
                if want_mask:
                    n = a.shape[0]
                    row = values[i]
                    normed = (row - row[:n].mean()) / np.sqrt(row[:n].var() + 1e-7)
                    normed[n:] = self.padding_value
                else:
                    row = values[i]
                    normed = (row - row.mean()) / np.sqrt(row.var() + 1e-7)
                values[i] = normed
        out = {"input_values": values}
        if want_mask:
            out["attention_mask"] = mask
        return out
