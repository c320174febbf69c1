"""One check for "tfcore's generate() equals transformers' generate()" on the same
checkpoint: the tests of every decoder family call it instead of repeating the HF call."""

from __future__ import annotations

import numpy as np
import torch


def assert_generate_matches_hf(ref, ours, ids, mask=None, max_new_tokens=20, eos_token_id=None, **kw):
    """Greedy (or beam: kw num_beams, length_penalty, num_return_sequences ...) continuations of
    ids (B, T) int64, optionally left-padded by mask, token for token equal to HF's
    ``ref.generate`` (no sampling, pad 0; eos_token_id None: never stop early). Returns them."""
    B, T = ids.shape
    hf_mask = torch.ones(B, T, dtype=torch.long) if mask is None else torch.from_numpy(mask)
    with torch.no_grad():
        want = ref.generate(
            torch.from_numpy(ids),
            attention_mask=hf_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=0,
            **kw,
        ).numpy()
    got = ours.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        eos_token_id=[] if eos_token_id is None else eos_token_id,
        pad_token_id=0,
        **kw,
    )
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want)
    return got


def left_padded(rng, vocab: int, B: int = 2, T: int = 12, pad_row: int = 1, pad: int = 5):
    """(ids, mask): random ids with row pad_row left-padded by pad zeros."""
    ids = rng.integers(3, vocab, size=(B, T))
    mask = np.ones((B, T), np.int64)
    mask[pad_row, :pad] = 0
    ids[pad_row, :pad] = 0
    return ids, mask
