"""Pegasus: PegasusForConditionalGeneration (and PegasusModel) from Hugging Face checkpoints.

BART's assembly (models/bart.py) with pre-norm blocks, final layer norms on encoder and
decoder, fixed sinusoidal positions (no offset, no ``layernorm_embedding``); decoding starts
from the pad token.
"""

from __future__ import annotations

from .bart import BartForConditionalGeneration, BartModel
from .registry import register

__all__ = ["PegasusModel", "PegasusForConditionalGeneration"]


class _PegasusVariant:
    model_types = ("pegasus",)

    def default_decoder_input_ids(self, input_ids):
        """None: HF's forward needs decoder_input_ids (it shifts labels only, never input_ids)."""
        return None

    normalize_before = True
    has_final_layer_norm = True
    sinusoidal = True
    has_layernorm_embedding = False


@register("base")
class PegasusModel(_PegasusVariant, BartModel):
    """``transformers.PegasusModel``: BartModel's arguments and outputs, pre-norm, sinusoidal positions."""


@register("seq2seq-lm")
class PegasusForConditionalGeneration(_PegasusVariant, BartForConditionalGeneration):
    """``transformers.PegasusForConditionalGeneration``: logits, generate() as BART's."""
