"""Batch helpers for evaluation pipelines: embed or score a list (or any iterable) of texts
with length-sorted batches (little padding, and encoders run padding-free anyway), a
progress bar, and NumPy results in the input order.

    emb = tfcore.eval.embed(model, texts)                 # (N, C) float32, L2-normalized
    res = tfcore.eval.score(lm, texts)                    # log-likelihoods and perplexities
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from . import _C, text
from ._progress import progress


def length_batches(lengths: List[int], batch_size: int) -> List[np.ndarray]:
    """Indices grouped into batches of similar length (longest first)."""
    if batch_size < 1:
        raise _C.TfcoreValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _tokenizer(model, tokenizer, max_length):
    if tokenizer is not None:
        return tokenizer
    path = getattr(model, "name_or_path", None)
    if not path:
        raise _C.TfcoreValueError("pass tokenizer= (the model was not loaded from a directory)")
    return text.load_tokenizer(path, max_length=max_length)


def _texts(texts: Iterable[str]) -> List[str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise _C.TfcoreValueError("texts is empty")
    if not all(isinstance(t, str) for t in items):
        raise _C.TfcoreTypeError("texts must be strings")
    return items


def embed(
    model,
    texts: Iterable[str],
    tokenizer: Any = None,
    batch_size: int = 32,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: Optional[int] = None,
    show_progress: Optional[bool] = None,
) -> np.ndarray:
    """(N, hidden_size) float32 sentence embeddings of an encoder, in the order of texts.

    pooling "mean" (sentence-transformers' default), "cls" (first token) or "pooler" (the
    model's pooler output); normalize=True scales rows to unit length. The tokenizer comes
    from the model's directory unless given (tokenizers package)."""
    if pooling not in ("mean", "cls", "pooler"):
        raise _C.TfcoreValueError(f"pooling must be 'mean', 'cls' or 'pooler', got {pooling!r}")
    items = _texts(texts)
    tok = _tokenizer(model, tokenizer, max_length)
    lengths = [len(e.ids) for e in tok.encode_batch(items)]
    out: Optional[np.ndarray] = None
    for idx in progress(
        length_batches(lengths, batch_size), desc="embedding", show=show_progress, unit="batch"
    ):
        ids, mask = text.encode(tok, [items[i] for i in idx])
        res = model(ids, attention_mask=mask)
        if pooling == "mean":
            vec = text.mean_pooling(res.last_hidden_state, mask)
        elif pooling == "cls":
            vec = np.ascontiguousarray(res.last_hidden_state[:, 0])
        else:
            if "pooler_output" not in res:
                raise _C.TfcoreValueError("this model has no pooler; use pooling='mean' or 'cls'")
            vec = res.pooler_output
        if out is None:
            out = np.empty((len(items), vec.shape[-1]), np.float32)
        out[idx] = vec
    return text.l2_normalize(out) if normalize else out


def score(
    model,
    texts: Iterable[str],
    tokenizer: Any = None,
    batch_size: int = 8,
    max_length: Optional[int] = None,
    show_progress: Optional[bool] = None,
) -> Dict[str, np.ndarray]:
    """Causal-LM likelihood of each text: {"log_likelihood": (N,) sum of log p(token | prefix)
    over the tokens after the first, "tokens": (N,) how many were scored, "perplexity":
    (N,) exp(-log_likelihood / tokens)}."""
    items = _texts(texts)
    tok = _tokenizer(model, tokenizer, max_length)
    lengths = [len(e.ids) for e in tok.encode_batch(items)]
    ll = np.zeros(len(items), np.float64)
    n = np.zeros(len(items), np.int64)
    for idx in progress(
        length_batches(lengths, batch_size), desc="scoring", show=show_progress, unit="batch"
    ):
        ids, mask = text.encode(tok, [items[i] for i in idx])
        logits = model(ids, attention_mask=mask).logits.astype(np.float64)  # (B, T, V)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        target = ids[:, 1:]
        picked = np.take_along_axis(logp[:, :-1], target[..., None], -1)[..., 0]  # (B, T-1)
        real = (mask[:, 1:] * mask[:, :-1]).astype(bool)
        ll[idx] = (picked * real).sum(1)
        n[idx] = real.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ppl = np.where(n > 0, np.exp(-ll / np.maximum(n, 1)), np.nan)
    return {"log_likelihood": ll, "tokens": n, "perplexity": ppl}
