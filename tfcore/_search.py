"""Semantic search over embeddings: cos_sim, dot_score and a chunked top-k search with
sentence-transformers' result shape (``tfcore.eval`` re-exports them)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Union

import numpy as np

from . import _C

ScoreFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _matrix(name: str, x: Any) -> np.ndarray:
    """x as a C-contiguous float32 (or float64) (N, D) matrix; a 1-D vector is one row."""
    if isinstance(x, (str, bytes)) or x is None:
        raise _C.TfcoreTypeError(f"{name} must be an array of embeddings, got {type(x).__name__}")
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise _C.TfcoreTypeError(f"{name} must be an array of embeddings ({e})") from None
    if a.dtype.kind not in "fiu":
        raise _C.TfcoreTypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise _C.TfcoreValueError(f"{name} must be (N, D) or (D,), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise _C.TfcoreValueError(f"{name} is empty (shape {a.shape})")
    return np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)


def _check_pair(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise _C.TfcoreValueError(
            f"{na} has dimension {a.shape[1]} but {nb} has {b.shape[1]} (embeddings of different models?)"
        )


def _finite(name: str, a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        raise _C.TfcoreValueError(f"{name} contains NaN or Inf")


def _normalized(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12).astype(a.dtype)


def cos_sim(a: Any, b: Any) -> np.ndarray:
    """Cosine similarity of every row of a with every row of b: (N, D), (M, D) -> (N, M)
    (a 1-D vector counts as one row), like ``sentence_transformers.util.cos_sim`` but NumPy.
    float32 unless both inputs are float64."""
    x, y = _matrix("a", a), _matrix("b", b)
    _check_pair(x, y, "a", "b")
    _finite("a", x)
    _finite("b", y)
    return _normalized(x) @ _normalized(y).T


def dot_score(a: Any, b: Any) -> np.ndarray:
    """Dot product of every row of a with every row of b: (N, D), (M, D) -> (N, M), like
    ``sentence_transformers.util.dot_score`` (equal to cos_sim for unit-length rows)."""
    x, y = _matrix("a", a), _matrix("b", b)
    _check_pair(x, y, "a", "b")
    _finite("a", x)
    _finite("b", y)
    return x @ y.T


def _positive(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise _C.TfcoreValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def semantic_search(
    query_embeddings: Any,
    corpus_embeddings: Any,
    top_k: int = 10,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 100000,
    score_function: Union[ScoreFunction, str] = "cos_sim",
) -> List[List[Dict[str, Union[int, float]]]]:
    """The top_k corpus entries for each query, best first: one list per query of
    ``{"corpus_id": int, "score": float}``, the result shape of
    ``sentence_transformers.util.semantic_search``.

    query_embeddings (Q, D) (or one (D,) vector) and corpus_embeddings (N, D) are NumPy
    arrays (or anything ``np.asarray`` takes, torch tensors included). score_function is
    ``cos_sim`` (default), ``dot_score`` (the same for unit-length rows, and cheaper), their
    names, or any function of two matrices returning a (q, n) score matrix. The corpus is
    scanned corpus_chunk_size rows at a time for query_chunk_size queries at a time, keeping
    only each query's running top_k, so the extra memory is a few times query_chunk_size x
    corpus_chunk_size scores (never Q x N, and no normalized copy of the corpus): with the
    defaults (100 x 100,000; sentence-transformers scans 500,000 rows at a time for the same
    results) about 115 MiB for any corpus size; lower the chunk sizes to use less. Equal
    scores within a result are listed by corpus_id."""
    if isinstance(score_function, str):
        table = {"cos_sim": cos_sim, "cosine": cos_sim, "dot_score": dot_score, "dot": dot_score}
        if score_function not in table:
            raise _C.TfcoreValueError(
                f"score_function must be 'cos_sim', 'dot_score' or a function, got {score_function!r}"
            )
        score_function = table[score_function]
    if not callable(score_function):
        raise _C.TfcoreTypeError("score_function must be callable (e.g. tfcore.eval.cos_sim)")
    q = _matrix("query_embeddings", query_embeddings)
    c = corpus_embeddings
    if isinstance(c, np.ndarray) and c.ndim == 2 and c.dtype.kind == "f" and c.size:
        pass  # used as it is (a np.memmap stays on disk): chunks are converted one at a time
    else:
        c = _matrix("corpus_embeddings", c)
    _check_pair(q, c, "query_embeddings", "corpus_embeddings")
    _finite("query_embeddings", q)
    top_k = _positive("top_k", top_k)
    query_chunk_size = _positive("query_chunk_size", query_chunk_size)
    corpus_chunk_size = _positive("corpus_chunk_size", corpus_chunk_size)
    Q, N = q.shape[0], c.shape[0]
    k = min(top_k, N)
    results: List[List[Dict[str, Union[int, float]]]] = []
    cosine = score_function is cos_sim
    for q0 in range(0, Q, query_chunk_size):
        qc = q[q0 : q0 + query_chunk_size]
        if cosine:
            qn = _normalized(qc)
        best_s = np.empty((qc.shape[0], 0), np.float64)
        best_i = np.empty((qc.shape[0], 0), np.int64)
        for c0 in range(0, N, corpus_chunk_size):
            # a chunk view of the corpus (memory-mapped corpora are read chunk by chunk)
            cc = np.ascontiguousarray(c[c0 : c0 + corpus_chunk_size], dtype=q.dtype)
            _finite("corpus_embeddings", cc)
            if cosine:
                # cosine without a normalized copy of the chunk: dot products scaled by 1 / |row|
                # (row norms from an einsum, no chunk-sized temporary)
                norms = np.sqrt(np.einsum("ij,ij->i", cc, cc))
                s = qn @ cc.T
                s /= np.maximum(norms, 1e-12)[None, :]
            else:
                s = np.asarray(score_function(qc, cc))
            if s.shape != (qc.shape[0], cc.shape[0]):
                raise _C.TfcoreValueError(
                    f"score_function returned shape {s.shape}, expected {(qc.shape[0], cc.shape[0])}"
                )
            n = cc.shape[0]
            kc = min(k, n)
            if kc < n:  # the kc largest of each row, unordered (a small copy: the rest is freed)
                part = np.argpartition(s, n - kc, axis=1)[:, n - kc :].copy()
            else:
                part = np.broadcast_to(np.arange(n), s.shape)
            best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
            best_i = np.concatenate([best_i, part + c0], axis=1)
            del s, part  # before the next chunk's scores are computed
            if best_s.shape[1] > k:
                keep = _top(best_s, best_i, k)
                best_s = np.take_along_axis(best_s, keep, 1)
                best_i = np.take_along_axis(best_i, keep, 1)
        order = _top(best_s, best_i, best_s.shape[1])
        for row_s, row_i in zip(np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)):
            results.append([{"corpus_id": int(i), "score": float(v)} for i, v in zip(row_i, row_s)])
    return results


def _top(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Column positions of each row's k best (score descending, then lower id), in order."""
    return np.lexsort((ids, -scores), axis=1)[:, :k]
