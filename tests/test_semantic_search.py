"""tfcore.eval.semantic_search / cos_sim / dot_score against sentence-transformers' util
functions (torch), chunking that never builds the full score matrix, and bad input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

import tfcore
from tfcore import eval as tf_eval


@pytest.fixture(scope="module")
def embeddings():
    rng = np.random.default_rng(0)
    return rng.standard_normal((50, 384)).astype(np.float32), rng.standard_normal((1000, 384)).astype(
        np.float32
    )


def ids_and_scores(hits):
    return [[h["corpus_id"] for h in row] for row in hits], np.array(
        [[h["score"] for h in row] for row in hits]
    )


@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
def test_equals_sentence_transformers(embeddings, score):
    from sentence_transformers import util

    queries, corpus = embeddings
    want = util.semantic_search(
        torch.from_numpy(queries), torch.from_numpy(corpus), top_k=10, score_function=getattr(util, score)
    )
    ours = getattr(tf_eval, score)
    for kw in ({}, {"query_chunk_size": 7, "corpus_chunk_size": 113}, {"corpus_chunk_size": 5}):
        got = tf_eval.semantic_search(queries, corpus, top_k=10, score_function=ours, **kw)
        assert len(got) == 50 and all(len(r) == 10 for r in got)
        assert set(got[0][0]) == {"corpus_id", "score"}
        assert isinstance(got[0][0]["corpus_id"], int) and isinstance(got[0][0]["score"], float)
        got_ids, got_scores = ids_and_scores(got)
        want_ids, want_scores = ids_and_scores(want)
        assert got_ids == want_ids, kw
        # float32 dot products of length 384 in a different summation order: scores within 1e-6
        # (cosines), 1e-6 of the score scale for dot products
        scale = 1.0 if score == "cos_sim" else np.abs(want_scores).max()
        assert np.abs(got_scores - want_scores).max() <= 1e-6 * scale, kw
        assert (np.diff(got_scores, axis=1) <= 0).all()  # best first


def test_cos_sim_and_dot_score_equal_sentence_transformers(embeddings):
    from sentence_transformers import util

    queries, corpus = embeddings
    a, b = queries[:5], corpus[:7]
    np.testing.assert_allclose(
        tf_eval.cos_sim(a, b), util.cos_sim(torch.from_numpy(a), torch.from_numpy(b)).numpy(), atol=1e-6
    )
    want = util.dot_score(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    # float32 sums of 384 products in another order: 1e-6 of the scores' scale
    np.testing.assert_allclose(tf_eval.dot_score(a, b), want, atol=1e-6 * np.abs(want).max(), rtol=0)
    assert tf_eval.cos_sim(a[0], b).shape == (1, 7)  # a vector is one row
    assert tf_eval.cos_sim(a.astype(np.float64), b.astype(np.float64)).dtype == np.float64
    # torch tensors and lists are accepted
    assert tf_eval.semantic_search(torch.from_numpy(a), b.tolist(), top_k=2)[0][0]["corpus_id"] == int(
        np.argmax(tf_eval.cos_sim(a[0], b))
    )


def test_top_k_larger_than_the_corpus_and_ties():
    corpus = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    hits = tf_eval.semantic_search(np.array([1, 0], np.float32), corpus, top_k=10)
    assert [h["corpus_id"] for h in hits[0]] == [0, 1, 2]  # all three; the tie in corpus order
    assert hits[0][0]["score"] == pytest.approx(1.0)


def test_chunks_bound_peak_memory():
    """200 queries x 100,000 x 64 corpus: a full float32 score matrix would be 80 MB; with
    corpus_chunk_size=4000 the search allocates a small fraction of that."""
    rng = np.random.default_rng(1)
    corpus = rng.standard_normal((100_000, 64)).astype(np.float32)
    queries = rng.standard_normal((200, 64)).astype(np.float32)
    full = queries.shape[0] * corpus.shape[0] * 4
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        hits = tf_eval.semantic_search(queries, corpus, top_k=5, query_chunk_size=100, corpus_chunk_size=4000)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < full / 8, f"peak {peak / 2**20:.1f} MiB vs full matrix {full / 2**20:.1f} MiB"
    # and the result is the exact top-5
    scores = tf_eval.cos_sim(queries[:3], corpus)
    for row, s in zip(hits[:3], scores):
        assert [h["corpus_id"] for h in row] == np.argsort(-s, kind="stable")[:5].tolist()


def test_memory_mapped_corpus(tmp_path):
    rng = np.random.default_rng(2)
    corpus = rng.standard_normal((300, 16)).astype(np.float32)
    np.save(tmp_path / "c.npy", corpus)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    q = rng.standard_normal((4, 16)).astype(np.float32)
    assert tf_eval.semantic_search(q, mm, corpus_chunk_size=64) == tf_eval.semantic_search(q, corpus)


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda r: tf_eval.semantic_search(r(2, 8), r(5, 9)), tfcore.TfcoreValueError, "dimension 8"),
        (lambda r: tf_eval.semantic_search(r(2, 8), r(0, 8)), tfcore.TfcoreValueError, "empty"),
        (lambda r: tf_eval.semantic_search(r(2, 8), r(5, 8), top_k=0), tfcore.TfcoreValueError, "top_k"),
        (
            lambda r: tf_eval.semantic_search(r(2, 8), r(5, 8), query_chunk_size=-1),
            tfcore.TfcoreValueError,
            "query_chunk_size",
        ),
        (lambda r: tf_eval.semantic_search("text", r(5, 8)), tfcore.TfcoreTypeError, "query_embeddings"),
        (lambda r: tf_eval.semantic_search(r(2, 8), [["a", "b"]]), tfcore.TfcoreTypeError, "numbers"),
        (lambda r: tf_eval.semantic_search(r(2, 8) * np.nan, r(5, 8)), tfcore.TfcoreValueError, "NaN"),
        (
            lambda r: tf_eval.semantic_search(r(2, 8), r(5, 8), score_function=3),
            tfcore.TfcoreTypeError,
            "callable",
        ),
        (lambda r: tf_eval.cos_sim(r(2, 2, 8), r(5, 8)), tfcore.TfcoreValueError, r"\(N, D\)"),
    ],
)
def test_bad_input_is_named(call, exc, pattern):
    rng = np.random.default_rng(0)
    with pytest.raises(exc, match=pattern):
        call(lambda *s: rng.standard_normal(s).astype(np.float32))
