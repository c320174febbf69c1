"""Embedding: zero-copy table, lookups of any id shape, bad ids refused."""

from __future__ import annotations

import numpy as np
import pytest
from memory import rss_growth

import tfcore


def test_lookup_matches_indexing(rng):
    W = rng.standard_normal((97, 13)).astype(np.float32)
    emb = tfcore.Embedding(W)
    for dtype in (np.int64, np.int32):
        ids = rng.integers(0, 97, size=(3, 7)).astype(dtype)
        out = emb(ids)
        assert out.shape == (3, 7, 13)
        assert np.array_equal(out, W[ids])  # a copy of rows: exact
    assert np.array_equal(emb(np.array(5)), W[5])  # 0-d ids give one row


def test_weight_is_used_in_place_including_memmap(rng, tmp_path):
    W = rng.standard_normal((50, 8)).astype(np.float32)
    emb = tfcore.Embedding(W)
    assert np.shares_memory(emb.weight, W)
    path = tmp_path / "table.bin"
    W.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(50, 8))
    emb2 = tfcore.Embedding(mm)
    assert np.shares_memory(emb2.weight, mm)
    assert np.array_equal(emb2(np.arange(50)), W)
    assert (emb2.num_embeddings, emb2.embedding_dim) == (50, 8)


def test_out_parameter(rng):
    W = rng.standard_normal((10, 4)).astype(np.float32)
    out = np.empty((2, 3, 4), np.float32)
    res = tfcore.Embedding(W)(np.zeros((2, 3), np.int64), out=out)
    assert res is out and np.array_equal(out[1, 2], W[0])


@pytest.mark.parametrize(
    "ids,exc,msg",
    [
        (
            np.array([[1, 10]]),
            tfcore.TfcoreValueError,
            r"holds 10 at flat index 1, outside the vocabulary \[0, 10\)",
        ),
        (np.array([-1]), tfcore.TfcoreValueError, "holds -1 at flat index 0"),
        (np.array([1.0]), tfcore.TfcoreTypeError, "int64 or int32, got float64"),
        (np.array([1], np.int16), tfcore.TfcoreTypeError, "int64 or int32"),
        (np.zeros((2, 0), np.int64), tfcore.TfcoreValueError, "empty"),
        (np.arange(8)[::2], tfcore.TfcoreValueError, "C-contiguous"),
        ([1, 2], tfcore.TfcoreTypeError, "numpy.ndarray"),
    ],
)
def test_bad_ids(ids, exc, msg):
    emb = tfcore.Embedding(np.ones((10, 4), np.float32))
    with pytest.raises(exc, match=msg):
        emb(ids)


def test_bad_table():
    with pytest.raises(tfcore.TfcoreValueError, match="weight must have 2 dimensions"):
        tfcore.Embedding(np.ones(4, np.float32))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        tfcore.Embedding(np.ones((4, 4)))


def test_memory_flat(rng):
    emb = tfcore.Embedding(rng.standard_normal((1000, 64)).astype(np.float32))
    ids = rng.integers(0, 1000, size=(8, 128))
    assert rss_growth(lambda: emb(ids), calls=1000) < 2 * 2**20
