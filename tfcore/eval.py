"""Batch helpers for evaluation pipelines: embed or score a list (or any iterable) of texts
with length-sorted batches (little padding, and encoders run padding-free anyway), a
progress bar, and NumPy results in the input order.

    emb = tfcore.eval.embed(model, texts)                 # (N, C) float32, as sentence-transformers
    res = tfcore.eval.score(lm, texts)                    # log-likelihoods and perplexities
    hits = tfcore.eval.semantic_search(query_emb, corpus_emb, top_k=5)  # per query, best first
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _C, text
from ._progress import progress
from ._search import cos_sim, dot_score, semantic_search  # noqa: F401 - public in tfcore.eval


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


def _st_config(model) -> Dict[str, Any]:
    """The model directory's sentence-transformers settings (defaults when it has none)."""
    path = getattr(model, "name_or_path", None)
    if path and os.path.isdir(path):
        return text.sentence_transformers_config(path)
    return {
        "pooling_mode": None,
        "normalize": None,
        "include_prompt": True,
        "prompts": {},
        "default_prompt_name": None,
        "do_lower_case": None,
        "unsupported_modules": [],
    }


def _prompt_length(tok, prompt: str) -> int:
    """Tokens of the prompt with its leading special token, without a trailing one (as
    sentence-transformers counts them)."""
    e = tok.encode(prompt)
    n = sum(e.attention_mask)
    if n and e.special_tokens_mask[n - 1]:
        n -= 1
    return n


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
    pooling: Union[str, Sequence[str], None] = None,
    normalize: Optional[bool] = None,
    max_length: Optional[int] = None,
    show_progress: Optional[bool] = None,
    prompt_name: Optional[str] = None,
    prompt: Optional[str] = None,
) -> np.ndarray:
    """(N, C) float32 sentence embeddings of an encoder, in the order of texts, computed as
    sentence-transformers computes them from the same directory.

    A sentence-transformers directory (see ``tfcore.text.sentence_transformers_config``)
    sets the defaults: truncation at ``max_seq_length`` (256 for all-MiniLM-L6-v2),
    the ``Pooling`` module's mode and ``include_prompt``, normalization when ``modules.json``
    lists ``Normalize``, its ``default_prompt_name``, lower-casing. Without those files:
    truncation at ``tokenizer_config.json``'s ``model_max_length`` if stated, else none (a
    text longer than the model's positions then raises, naming ``max_length=``), mean
    pooling, normalized rows.

    pooling: ``"mean"``, ``"cls"``, ``"max"``, ``"mean_sqrt_len_tokens"``,
    ``"weightedmean"``, ``"lasttoken"`` (a tuple of them concatenates), or ``"pooler"``
    (the model's pooler output). normalize: scale rows to unit length. max_length: tokens
    kept per text; texts cut are announced by one ``tfcore.text.TruncationWarning`` per call
    (how many, and the limit). prompt_name (a key of the directory's prompts) or prompt (a
    string) is prepended to every text. The tokenizer comes from the model's directory
    unless given (tokenizers package; a given one keeps its own truncation)."""
    st = _st_config(model)
    if st["unsupported_modules"]:
        raise _C.TfcoreValueError(
            f"{model.name_or_path}: modules.json lists {st['unsupported_modules']}, which tfcore does not "
            "run (it runs Transformer, Pooling and Normalize); embeddings would differ from "
            "sentence-transformers'"
        )
    if pooling is None:
        pooling = st["pooling_mode"] or "mean"
    if pooling != "pooler":
        modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        if not modes or any(m not in text.POOLING_MODES for m in modes):
            raise _C.TfcoreValueError(
                f"pooling must be one of {text.POOLING_MODES + ('pooler',)} (or a tuple of the first "
                f"six), got {pooling!r}"
            )
    if normalize is None:
        normalize = True if st["normalize"] is None else st["normalize"]
    if prompt is None and prompt_name is not None:
        if prompt_name not in st["prompts"]:
            raise _C.TfcoreValueError(
                f"prompt_name {prompt_name!r} is not one of the model's prompts {sorted(st['prompts'])}"
            )
        prompt = st["prompts"][prompt_name]
    elif prompt is None and st["default_prompt_name"]:
        prompt = st["prompts"][st["default_prompt_name"]]
    if prompt is not None and not isinstance(prompt, str):
        raise _C.TfcoreTypeError(f"prompt must be a str, got {type(prompt).__name__}")
    items = _texts(texts)
    inputs = [prompt + t for t in items] if prompt else items
    if st["do_lower_case"]:
        inputs = [t.lower() for t in inputs]
    tok = _tokenizer(model, tokenizer, max_length)
    prompt_length = _prompt_length(tok, prompt) if prompt and not st["include_prompt"] else 0
    encodings = tok.encode_batch(inputs)
    text._warn_truncated(tok, encodings)
    lengths = [sum(e.attention_mask) for e in encodings]
    out: Optional[np.ndarray] = None
    for idx in progress(
        length_batches(lengths, batch_size), desc="embedding", show=show_progress, unit="batch"
    ):
        ids, mask = text._arrays(tok.encode_batch([inputs[i] for i in idx]))
        res = model(ids, attention_mask=mask)
        if pooling == "pooler":
            if "pooler_output" not in res:
                raise _C.TfcoreValueError("this model has no pooler; use pooling='mean' or 'cls'")
            vec = res.pooler_output
        else:
            vec = text.pool(res.last_hidden_state, mask, pooling, prompt_length=prompt_length)
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
    encodings = tok.encode_batch(items)
    text._warn_truncated(tok, encodings)
    lengths = [sum(e.attention_mask) for e in encodings]
    ll = np.zeros(len(items), np.float64)
    n = np.zeros(len(items), np.int64)
    for idx in progress(
        length_batches(lengths, batch_size), desc="scoring", show=show_progress, unit="batch"
    ):
        ids, mask = text._arrays(tok.encode_batch([items[i] for i in idx]))
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
