"""Text in, token ids out: the checkpoint's ``tokenizer.json`` through the ``tokenizers``
package (an optional dependency: ``pip install tokenizers``), and sentence-embedding pooling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C
from .safetensors import CheckpointError


def load_tokenizer(directory: Union[str, os.PathLike], max_length: Optional[int] = None) -> Any:
    """A ``tokenizers.Tokenizer`` from ``directory/tokenizer.json`` that pads to the longest
    text of a batch and truncates to max_length (default: none)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ImportError(
            "tokenizing text needs the optional 'tokenizers' package: pip install tokenizers"
        ) from e
    path = Path(directory) / "tokenizer.json"
    if not path.exists():
        raise CheckpointError(f"{directory}: no tokenizer.json (pass token ids instead of text)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a plain Exception on malformed files
        raise CheckpointError(f"{path}: not a valid tokenizer file ({e})") from None
    pad_id = tok.token_to_id("[PAD]")
    if pad_id is None:
        pad_id = tok.token_to_id("<pad>")
    tok.enable_padding(pad_id=pad_id or 0, pad_token=tok.id_to_token(pad_id or 0) or "[PAD]")
    if max_length:
        tok.enable_truncation(max_length=max_length)
    return tok


def encode(tokenizer: Any, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both int64 (B, T), for a batch of texts."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise _C.TfcoreTypeError("texts must be a sequence of str")
    if len(texts) == 0:
        raise _C.TfcoreValueError("texts is empty")
    enc = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def mean_pooling(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of the real tokens' vectors: (B, T, C), (B, T) -> (B, C), as sentence-transformers."""
    m = np.asarray(attention_mask, dtype=np.float32)[..., None]
    summed = (last_hidden_state * m).sum(axis=1)
    return (summed / np.clip(m.sum(axis=1), 1e-9, None)).astype(np.float32)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (torch.nn.functional.normalize)."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)
