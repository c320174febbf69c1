"""Batch helpers for evaluation pipelines: embed or score a list (or any iterable) of texts
with length-sorted batches (little padding, and encoders run padding-free anyway), a
progress bar, and NumPy results in the input order.

    emb = tfcore.eval.embed(model, texts)                 # (N, C) float32, as sentence-transformers
    res = tfcore.eval.score(lm, texts)                    # log-likelihoods and perplexities
    hits = tfcore.eval.semantic_search(query_emb, corpus_emb, top_k=5)  # per query, best first
    out = tfcore.eval.generate(lm, prompts, stop=["\\n"])  # continuations as str

embed, score and generate take engine=None (this process), a ``distributed.Client`` (Dask)
or ``"ray"`` (the connected Ray cluster): the same batches then run on the cluster's workers,
each loading the model once from its directory (see docs/evaluation.md), and the result is
the same.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _C, text
from ._eval_images import embed_images, zero_shot_classify  # noqa: F401 - public in tfcore.eval
from ._progress import progress
from ._search import cos_sim, dot_score, semantic_search  # noqa: F401 - public in tfcore.eval
from .generation import left_pad


def length_batches(lengths: List[int], batch_size: int) -> List[np.ndarray]:
    """Indices grouped into batches of similar length (longest first)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise _C.TfcoreTypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
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


def check_texts(texts: Iterable[str], name: str = "texts") -> List[str]:
    """texts as a list of non-empty str; the first bad item is named by its index."""
    if texts is None:
        raise _C.TfcoreTypeError(f"{name} must be a str or an iterable of str, got None")
    if isinstance(texts, bytes):
        raise _C.TfcoreTypeError(f"{name} must be str, got bytes (decode it first)")
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise _C.TfcoreValueError(f"{name} is empty")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise _C.TfcoreTypeError(f"{name}[{i}] is {type(t).__name__} {t!r:.60}, expected str")
        if not t:
            raise _C.TfcoreValueError(f"{name}[{i}] is an empty string")
    return items


_texts = check_texts


def _plan(tok, items: List[str], batch_size: int) -> List[np.ndarray]:
    encodings = tok.encode_batch(items)
    text._warn_truncated(tok, encodings, stacklevel=4)
    return length_batches([sum(e.attention_mask) for e in encodings], batch_size)


# One batch of each job, run where the model lives (this process or a cluster worker). The
# engines send exactly the batches _plan made here, so a cluster computes what one process does.


def embed_batch(model, tok, batch: List[str], pooling, prompt_length: int = 0) -> np.ndarray:
    """(len(batch), C) float32 pooled, not yet normalized."""
    ids, mask = text._arrays(tok.encode_batch(list(batch)))
    res = model(ids, attention_mask=mask)
    if pooling == "pooler":
        if "pooler_output" not in res:
            raise _C.TfcoreValueError("this model has no pooler; use pooling='mean' or 'cls'")
        return np.asarray(res.pooler_output, np.float32)
    return text.pool(res.last_hidden_state, mask, pooling, prompt_length=prompt_length)


def score_batch(model, tok, batch: List[str]):
    """((B,) float64 log-likelihood, (B,) int64 scored tokens)."""
    ids, mask = text._arrays(tok.encode_batch(list(batch)))
    logits = model(ids, attention_mask=mask).logits.astype(np.float64)  # (B, T, V)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    target = ids[:, 1:]
    picked = np.take_along_axis(logp[:, :-1], target[..., None], -1)[..., 0]  # (B, T-1)
    real = (mask[:, 1:] * mask[:, :-1]).astype(bool)
    return (picked * real).sum(1), real.sum(1)


def _left_padded(tok, batch: List[str], pad_id: int):
    enc = tok.encode_batch(list(batch))
    return left_pad([[i for i, m in zip(e.ids, e.attention_mask) if m] for e in enc], pad_id)


def truncate_at_stop(s: str, stop: Sequence[str]) -> str:
    """s cut before the first occurrence of any stop string (lm-evaluation-harness's rule)."""
    for term in stop:
        if term:
            s = s.split(term)[0]
    return s


def generate_batch(model, tok, batch: List[str], stop: Sequence[str], kwargs: dict) -> List[str]:
    """Continuations of a batch of prompts (left-padded), decoded and cut at the stop strings."""
    padding = getattr(tok, "padding", None) or {}
    ids, mask = _left_padded(tok, batch, int(padding.get("pad_id", 0)))  # masked: any valid id
    out = model.generate(ids, attention_mask=mask, stop_strings=list(stop) or None, tokenizer=tok, **kwargs)
    T = 1 if model.config.get("is_encoder_decoder") else ids.shape[1]  # seq2seq: after decoder start
    res = []
    for row in out:
        new = [int(t) for t in row[T:]]
        res.append(truncate_at_stop(tok.decode(new, skip_special_tokens=True), stop))
    return res


def _dispatch(engine, kind: str, model, tok, items, batches, params, show_progress):
    from .integrations import _engines

    return _engines.run(engine, kind, model, tok, items, batches, params, show_progress)


def _as_model(model, kind: str):
    """A loaded model as given; a checkpoint path (str or os.PathLike, also a GGUF file or a
    hub id in the local cache) is loaded the way its task needs (embed: AutoModel; score /
    generate: the causal or, for generate, the sequence-to-sequence LM its config names), as
    sentence-transformers and HF pipelines take a name."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    import tfcore

    if kind == "embed":
        return tfcore.AutoModel.from_pretrained(model)
    if kind == "generate" and not str(model).endswith(".gguf"):
        from .config import Config
        from .hub import resolve
        from .models import registry

        if "seq2seq-lm" in registry.tasks_for(Config.from_dir(resolve(model)).get("model_type")):
            return tfcore.AutoModelForSeq2SeqLM.from_pretrained(model)
    return tfcore.AutoModelForCausalLM.from_pretrained(model)


def _check_engine(engine) -> None:
    if engine is None:
        return
    from .integrations import _engines

    _engines.check(engine)


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
    engine: Any = None,
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
    unless given (tokenizers package; a given one keeps its own truncation). Every text must
    be a non-empty str (the error names the first that is not).

    engine: None runs here; a ``distributed.Client`` or ``"ray"`` runs the batches on that
    cluster's workers (each loads the model once from model.name_or_path, a directory every
    worker must see) and returns the same array. model is a loaded encoder or a checkpoint
    path (loaded with ``AutoModel``)."""
    _check_engine(engine)
    model = _as_model(model, "embed")
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
    batches = _plan(tok, inputs, batch_size)
    if engine is not None:
        params = {"pooling": pooling, "prompt_length": prompt_length}
        out = _dispatch(engine, "embed", model, tok, inputs, batches, params, show_progress)
    else:
        out = None
        for idx in progress(batches, desc="embedding", show=show_progress, unit="batch"):
            vec = embed_batch(model, tok, [inputs[i] for i in idx], pooling, prompt_length)
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
    engine: Any = None,
) -> Dict[str, np.ndarray]:
    """Causal-LM likelihood of each text: {"log_likelihood": (N,) sum of log p(token | prefix)
    over the tokens after the first, "tokens": (N,) how many were scored, "perplexity":
    (N,) exp(-log_likelihood / tokens)}. engine as in embed(); model is a loaded causal LM
    or a checkpoint path."""
    _check_engine(engine)
    model = _as_model(model, "score")
    items = _texts(texts)
    tok = _tokenizer(model, tokenizer, max_length)
    batches = _plan(tok, items, batch_size)
    if engine is not None:
        ll, n = _dispatch(engine, "score", model, tok, items, batches, {}, show_progress)
    else:
        ll = np.zeros(len(items), np.float64)
        n = np.zeros(len(items), np.int64)
        for idx in progress(batches, desc="scoring", show=show_progress, unit="batch"):
            ll[idx], n[idx] = score_batch(model, tok, [items[i] for i in idx])
    with np.errstate(divide="ignore", invalid="ignore"):
        ppl = np.where(n > 0, np.exp(-ll / np.maximum(n, 1)), np.nan)
    return {"log_likelihood": ll, "tokens": n, "perplexity": ppl}


def generate(
    model,
    prompts: Iterable[str],
    tokenizer: Any = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    stop: Optional[Sequence[str]] = None,
    max_length: Optional[int] = None,
    show_progress: Optional[bool] = None,
    engine: Any = None,
    **generate_kwargs: Any,
) -> List[str]:
    """The continuation of each prompt as text, in input order: model.generate (greedy unless
    do_sample=True; any generate() argument passes through) on left-padded length-sorted
    batches, stopping a row at a stop string and cutting the text before it. engine as in
    embed(); model is a loaded causal or sequence-to-sequence LM, or a checkpoint path
    (loaded as the one its config names)."""
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    else:
        stop = list(stop)
    if not all(isinstance(s, str) for s in stop):
        raise _C.TfcoreTypeError("stop must be a str or a sequence of str")
    model = _as_model(model, "generate")
    if not hasattr(model, "generate"):
        raise _C.TfcoreTypeError(f"{type(model).__name__} has no generate(): load a causal or seq2seq LM")
    _check_engine(engine)
    items = check_texts(prompts, "prompts")
    tok = _tokenizer(model, tokenizer, max_length)
    batches = _plan(tok, items, batch_size)
    params = {"stop": stop, "kwargs": dict(generate_kwargs, max_new_tokens=max_new_tokens)}
    if engine is not None:
        return _dispatch(engine, "generate", model, tok, items, batches, params, show_progress)
    out: List[str] = [""] * len(items)
    for idx in progress(batches, desc="generating", show=show_progress, unit="batch"):
        for i, s in zip(idx, generate_batch(model, tok, [items[i] for i in idx], stop, params["kwargs"])):
            out[i] = s
    return out
