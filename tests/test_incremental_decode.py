"""Streaming detokenization (tfcore.text._IncrementalDecoder, used by `tfcore generate` and
`tfcore chat`): the pieces it returns join to exactly what decoding the whole stream gives, for
the three kinds of decoders whose output depends on neighbouring tokens (byte-level BPE, whose
tokens may end inside a UTF-8 character; SentencePiece's metaspace, which drops the stream's first
space; WordPiece, which joins words with spaces), and each token costs a bounded amount of
decoding, not a re-decode of the whole reply (which made long replies quadratic)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from tfcore.text import _IncrementalDecoder  # noqa: E402

CORPUS = [
    "naïve café — 東京 🙂 the quick brown fox jumps over the lazy dog",
    "def f(x):\n    return x ** 2  # é, ü, ß\n\n",
    "Ünïcödé and ASCII   with  spaces\tand tabs; 数字 123 456",
] * 20


def _byte_level():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def _metaspace():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"], show_progress=False)
    )
    return tok


def _wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]"], show_progress=False)
    )
    return tok


TOKENIZERS = {"byte-level BPE": _byte_level, "metaspace": _metaspace, "wordpiece": _wordpiece}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def tok(request):
    return TOKENIZERS[request.param]()


def _stream(tok, ids, **kw):
    d = _IncrementalDecoder(tok, **kw)
    return "".join(d.push(i) for i in ids) + d.flush()


def test_pieces_join_to_the_whole_decode(tok):
    for text in CORPUS[:3]:
        ids = tok.encode(text).ids
        assert _stream(tok, ids) == tok.decode(ids), text
    rng = np.random.default_rng(0)
    for _ in range(300):  # random ids: byte tokens that split characters, odd joins
        ids = rng.integers(0, tok.get_vocab_size(), size=int(rng.integers(1, 40))).tolist()
        assert _stream(tok, ids) == tok.decode(ids), ids


def test_context_gives_the_text_after_the_prompt(tok):
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(200):
        ctx = rng.integers(0, tok.get_vocab_size(), size=int(rng.integers(1, 5))).tolist()
        ids = rng.integers(0, tok.get_vocab_size(), size=int(rng.integers(1, 30))).tolist()
        whole, before = tok.decode(ctx + ids), tok.decode(ctx)
        if not whole.startswith(before):  # a character split across the boundary: no clean suffix
            continue
        assert _stream(tok, ids, context=ctx) == whole[len(before) :], (ctx, ids)
        checked += 1
    assert checked >= 100, checked  # most cases have a clean boundary


def test_skipped_ids_are_left_out(tok):
    ids = tok.encode(CORPUS[0]).ids
    skip = {ids[1], ids[3]}
    assert _stream(tok, ids, skip=skip) == tok.decode([i for i in ids if i not in skip])


def test_each_token_costs_a_bounded_decode(tok):
    """Tokens decoded in total over a 2,000-token stream: re-decoding the reply at each step
    would be ~2,000,000; the window keeps it linear (measured: ~2 tokens per push for text)."""

    class Counting:
        decoded = 0

        def decode(self, ids):
            Counting.decoded += len(ids)
            return tok.decode(ids)

    ids = (tok.encode(" ".join(CORPUS)).ids * 4)[:2000]
    d = _IncrementalDecoder(Counting())
    out = "".join(d.push(i) for i in ids) + d.flush()
    assert out == tok.decode(ids)
    assert Counting.decoded < 10 * len(ids), Counting.decoded
