"""mT5 and UMT5: the T5 architecture under other model_types.

mT5 (``model_type: "mt5"``): transformers' modeling_mt5 is T5's code ("Copied from"); the
checkpoints differ only in config (gated-gelu, untied head), which T5's classes read, and
mT5's head never scales the decoder output (see MT5ForConditionalGeneration).
UMT5 (``"umt5"``): the same blocks, but every self-attention layer owns its relative
position bias table (T5 shares block 0's across the stack); cross-attention has none.
"""

from __future__ import annotations

from .registry import register
from .t5 import T5EncoderModel, T5ForConditionalGeneration, T5Model

__all__ = [
    "MT5EncoderModel",
    "MT5Model",
    "MT5ForConditionalGeneration",
    "UMT5EncoderModel",
    "UMT5Model",
    "UMT5ForConditionalGeneration",
]


@register("encoder")
class MT5EncoderModel(T5EncoderModel):
    """``transformers.MT5EncoderModel`` (T5's encoder)."""

    model_types = ("mt5",)


@register("base")
class MT5Model(T5Model):
    """``transformers.MT5Model`` (T5's encoder-decoder)."""

    model_types = ("mt5",)


@register("seq2seq-lm")
class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    """``transformers.MT5ForConditionalGeneration``: T5's, generate() included, but the
    decoder output is never scaled by d_model**-0.5 before the head: mT5 checkpoints are
    v1.1-style (untied ``lm_head``, unscaled); transformers 5 writes them with
    ``tie_word_embeddings: true`` and still does not scale (modeling_mt5 has no such branch),
    so config.json's flag says nothing about scaling here as it does for T5."""

    model_types = ("mt5",)

    def __init__(self, config, weights):
        super().__init__(config, weights)
        self.output_scale = None


@register("encoder")
class UMT5EncoderModel(T5EncoderModel):
    """``transformers.UMT5EncoderModel``: a relative position bias table per layer."""

    model_types = ("umt5",)
    relative_bias_per_layer = True


@register("base")
class UMT5Model(T5Model):
    """``transformers.UMT5Model``: a relative position bias table per self-attention layer."""

    model_types = ("umt5",)
    relative_bias_per_layer = True


@register("seq2seq-lm")
class UMT5ForConditionalGeneration(T5ForConditionalGeneration):
    """``transformers.UMT5ForConditionalGeneration``: a relative position bias table per
    self-attention layer; generate() as T5."""

    model_types = ("umt5",)
    relative_bias_per_layer = True
