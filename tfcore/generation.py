"""``generate()`` for causal language models, with Hugging Face's arguments and results.

The per-token loop stays thin: one C call per layer per step (blocks append to a KVCache in
place), the LM head only on the last position, and the logits processors vectorised over
the batch in NumPy.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from . import _C

TokenIds = Union[int, Sequence[int], None]


def _as_set(ids: TokenIds) -> List[int]:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, (int, np.integer)) else [int(i) for i in ids]


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """HF's position_ids for (left-)padded batches: cumsum(mask) - 1, pads set to 1."""
    pos = np.cumsum(mask, axis=1) - 1
    return np.where(mask == 0, 1, pos).astype(np.int64)


def apply_repetition_penalty(logits: np.ndarray, sequences: np.ndarray, penalty: float) -> None:
    """In place, like HF: seen tokens' logits divided by penalty if > 0, multiplied if < 0."""
    for b in range(logits.shape[0]):
        seen = np.unique(sequences[b])
        vals = logits[b, seen]
        logits[b, seen] = np.where(vals > 0, vals / penalty, vals * penalty)


def filter_top_k_top_p(logits: np.ndarray, top_k: Optional[int], top_p: Optional[float]) -> np.ndarray:
    """Logits with everything outside the top-k and the top-p nucleus set to -inf (HF order:
    temperature, then top-k, then top-p; the token that crosses p is kept)."""
    out = logits.copy()
    V = out.shape[-1]
    if top_k is not None and 0 < top_k < V:
        kth = np.partition(out, V - top_k, axis=-1)[:, V - top_k][:, None]
        out[out < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(out, axis=-1, kind="stable")  # ascending, like HF
        sorted_logits = np.take_along_axis(out, order, axis=-1)
        probs = np.exp(sorted_logits - sorted_logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        cum = np.cumsum(probs, axis=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[:, -1] = False  # keep at least one
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        out[remove] = -np.inf
    return out


class GenerationMixin:
    """generate() for models whose forward takes (input_ids, attention_mask, position_ids,
    past_key_values, logits_to_keep) and that provide new_cache(batch, capacity)."""

    generation_defaults: dict

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 20, do_sample: bool = False,
                 temperature: float = 1.0, top_k: Optional[int] = 50, top_p: Optional[float] = 1.0,
                 repetition_penalty: float = 1.0, eos_token_id: TokenIds = None, pad_token_id: Optional[int] = None,
                 num_beams: int = 1, num_return_sequences: int = 1, seed: Optional[int] = None,
                 streamer: Optional[Callable[[np.ndarray], None]] = None) -> np.ndarray:
        """Continue each prompt by up to max_new_tokens tokens; returns (B, prompt + new) int64.

        Greedy (default) or sampling (do_sample) with temperature, top_k, top_p and a seed;
        repetition_penalty; eos_token_id / pad_token_id default to the checkpoint's
        generation_config.json / config.json like HF; left-padded batches via attention_mask.
        streamer(tokens) is called with the (B,) new tokens of every step."""
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise _C.TfcoreValueError(f"input_ids must be a non-empty (batch, seq_len) integer array, got {ids.shape} {ids.dtype}")
        if num_beams != 1:
            raise _C.TfcoreValueError("beam search (num_beams > 1) is not implemented yet; use num_beams=1")
        if max_new_tokens < 0:
            raise _C.TfcoreValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if do_sample and not temperature > 0:
            raise _C.TfcoreValueError(f"temperature must be > 0, got {temperature}")
        if repetition_penalty <= 0:
            raise _C.TfcoreValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
        if num_return_sequences > 1:
            ids = np.repeat(ids, num_return_sequences, axis=0)
            if attention_mask is not None:
                attention_mask = np.repeat(np.asarray(attention_mask), num_return_sequences, axis=0)
        B, T0 = ids.shape
        mask = np.ones((B, T0), np.int64) if attention_mask is None else np.asarray(attention_mask).astype(np.int64)
        if mask.shape != (B, T0):
            raise _C.TfcoreValueError(f"attention_mask has shape {mask.shape}, expected {(B, T0)}")
        defaults = getattr(self, "generation_defaults", {})
        eos = _as_set(eos_token_id if eos_token_id is not None else defaults.get("eos_token_id"))
        if pad_token_id is None:
            pad_token_id = defaults.get("pad_token_id")
        if pad_token_id is None:
            pad_token_id = eos[0] if eos else 0
        rng = np.random.default_rng(seed)

        sequences = np.ascontiguousarray(ids, dtype=np.int64)
        cache = self.new_cache(B, T0 + max_new_tokens)
        positions = positions_from_mask(mask)
        finished = np.zeros(B, bool)
        step_ids, step_pos = sequences, positions
        for _ in range(max_new_tokens):
            logits = self.forward(step_ids, attention_mask=mask, position_ids=step_pos, past_key_values=cache,
                                  logits_to_keep=1).logits[:, -1, :].astype(np.float64)
            if repetition_penalty != 1.0:
                apply_repetition_penalty(logits, sequences, repetition_penalty)
            if do_sample:
                logits = filter_top_k_top_p(logits / temperature, top_k, top_p)
                probs = np.exp(logits - logits.max(-1, keepdims=True))
                probs /= probs.sum(-1, keepdims=True)
                cum = np.cumsum(probs, axis=-1)
                u = rng.random((B, 1)) * cum[:, -1:]
                nxt = np.minimum((cum < u).sum(-1), logits.shape[-1] - 1)
            else:
                nxt = logits.argmax(-1)
            nxt = np.where(finished, pad_token_id, nxt).astype(np.int64)
            sequences = np.concatenate([sequences, nxt[:, None]], axis=1)
            if streamer is not None:
                streamer(nxt)
            if eos:
                finished |= np.isin(nxt, eos)
            if finished.all():
                break
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], axis=1)
            step_pos = positions[:, -1:] + 1
            positions = np.concatenate([positions, step_pos], axis=1)
            step_ids = np.ascontiguousarray(nxt[:, None])
        return sequences
