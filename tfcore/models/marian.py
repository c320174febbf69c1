"""Marian: MarianMTModel (and MarianModel) from Hugging Face checkpoints (Helsinki-NLP opus-mt).

BART's assembly (models/bart.py), post-norm, with fixed sinusoidal positions (no offset, no
``layernorm_embedding``), embeddings scaled by sqrt(d_model) and shared by encoder, decoder and
LM head; decoding starts from the pad token (decoder_start_token_id). Checkpoints with a
separate decoder vocabulary (share_encoder_decoder_embeddings=false) are refused.
"""

from __future__ import annotations

from ..config import Config
from ..safetensors import CheckpointError
from .bart import BartForConditionalGeneration, BartModel
from .base import Weights
from .registry import register

__all__ = ["MarianModel", "MarianMTModel"]


class _MarianVariant:
    model_types = ("marian",)

    def default_decoder_input_ids(self, input_ids):
        """None: HF's forward needs decoder_input_ids (it shifts labels only, never input_ids)."""
        return None

    sinusoidal = True
    has_layernorm_embedding = False

    def __init__(self, config: Config, weights: Weights):
        dec_vocab = config.get("decoder_vocab_size")
        if config.get("share_encoder_decoder_embeddings", True) is False or (
            dec_vocab is not None and dec_vocab != config.require("vocab_size")
        ):
            raise CheckpointError(
                "config.json: Marian checkpoints with a separate decoder vocabulary "
                f"(share_encoder_decoder_embeddings=false, decoder_vocab_size={dec_vocab}) are not supported"
            )
        super().__init__(config, weights)


@register("base")
class MarianModel(_MarianVariant, BartModel):
    """``transformers.MarianModel``: BartModel's arguments and outputs, sinusoidal positions."""


@register("seq2seq-lm")
class MarianMTModel(_MarianVariant, BartForConditionalGeneration):
    """``transformers.MarianMTModel``: translation logits, generate() as BART's."""
