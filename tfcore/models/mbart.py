"""mBART: MBartForConditionalGeneration from Hugging Face checkpoints.

BART's assembly (models/bart.py) with pre-norm blocks and a final layer norm closing the
encoder and the decoder; learned positions with BART's offset 2 and ``layernorm_embedding``
stay. Without decoder_input_ids a forward decodes input_ids shifted right with the last
non-pad token (the language id) wrapped to the front, as HF's mBART shift_tokens_right.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .bart import BartForConditionalGeneration, BartModel
from .base import check_ids
from .registry import register

__all__ = ["MBartModel", "MBartForConditionalGeneration"]


class _MBartVariant:
    model_types = ("mbart",)
    normalize_before = True
    has_final_layer_norm = True

    def default_decoder_input_ids(self, input_ids) -> Optional[np.ndarray]:
        """HF's mBART shift_tokens_right: the last non-pad token of each row, then input_ids
        without its last token."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        pad = self.generation_defaults.get("pad_token_id")
        if pad is None:
            return None
        last = np.maximum((ids != int(pad)).sum(axis=1) - 1, 0)
        out = np.empty_like(ids)
        out[:, 0] = ids[np.arange(len(ids)), last]
        out[:, 1:] = ids[:, :-1]
        return out


@register("base")
class MBartModel(_MBartVariant, BartModel):
    """``transformers.MBartModel``: BartModel's arguments and outputs, pre-norm."""


@register("seq2seq-lm")
class MBartForConditionalGeneration(_MBartVariant, BartForConditionalGeneration):
    """``transformers.MBartForConditionalGeneration``: logits, generate() as BART's (the
    checkpoint's decoder_start_token_id or forced_bos_token_id picks the target language)."""
