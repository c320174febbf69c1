"""tfcore.eval.generate against transformers' generate on the same tiny random checkpoints:
each prompt generated alone by HF (no padding), tfcore in left-padded, length-sorted batches
of different lengths; decoder-only (GPT-2) and encoder-decoder (T5) models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import save_tiny, save_tiny_tokenizer

import tfcore
from tfcore import eval as tf_eval


def _prompts(n=11, seed=3):
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{w}" for w in rng.integers(2, 60, rng.integers(1, 9))) for _ in range(n)]


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    save_tiny_tokenizer(path)
    if request.param == "gpt2":
        save_tiny("gpt2", path, bos_token_id=1, eos_token_id=1, seed=1)
    else:
        save_tiny("t5", path, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, seed=1)
    return request.param, path


def _hf(kind, path):
    import transformers

    cls = transformers.GPT2LMHeadModel if kind == "gpt2" else transformers.T5ForConditionalGeneration
    return cls.from_pretrained(path).eval()


def _hf_continuations(kind, path, prompts, max_new_tokens, stop):
    """HF greedy generate, one prompt at a time, new tokens decoded and cut at the stop strings."""
    tok = tfcore.text.load_tokenizer(path)
    model = _hf(kind, path)
    out = []
    for p in prompts:
        ids = torch.tensor([tok.encode(p).ids])
        with torch.no_grad():
            seq = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=1,
            )[0].tolist()
        new = seq[1:] if kind == "t5" else seq[ids.shape[1] :]  # T5: after the decoder start token
        out.append(tf_eval.truncate_at_stop(tok.decode(new, skip_special_tokens=True), stop))
    return out


@pytest.mark.parametrize("batch_size", [1, 4])
def test_generate_equals_hf_one_prompt_at_a_time(checkpoint, batch_size):
    kind, path = checkpoint
    auto = tfcore.AutoModelForSeq2SeqLM if kind == "t5" else tfcore.AutoModelForCausalLM
    model = auto.from_pretrained(path)
    prompts = _prompts()
    want = _hf_continuations(kind, path, prompts, 7, [])
    got = tf_eval.generate(model, prompts, max_new_tokens=7, batch_size=batch_size, show_progress=False)
    assert got == want
    assert len(set(want)) > 3  # different prompts, different continuations: order is checked


def test_generate_stop_strings_cut_like_hf(checkpoint):
    kind, path = checkpoint
    auto = tfcore.AutoModelForSeq2SeqLM if kind == "t5" else tfcore.AutoModelForCausalLM
    model = auto.from_pretrained(path)
    prompts = _prompts()
    full = tf_eval.generate(model, prompts, max_new_tokens=7, batch_size=4, show_progress=False)
    # a word that appears mid-continuation in some rows: those rows are cut before it
    words = [w for t in full for w in t.split()[1:]]
    stop = max(set(words), key=words.count)
    got = tf_eval.generate(model, prompts, max_new_tokens=7, batch_size=4, stop=[stop], show_progress=False)
    assert got == _hf_continuations(kind, path, prompts, 7, [stop])
    assert sum(g != f for g, f in zip(got, full)) >= 1 and all(stop not in g for g in got)


def test_helpers_take_a_checkpoint_path(tmp_path):
    """embed / score / generate load a directory given as a str or Path the way their task
    needs (as sentence-transformers and HF pipelines take a name), with the same results as
    a loaded model."""
    import pathlib

    for kind in ("bert", "gpt2", "t5"):
        save_tiny(kind, tmp_path / kind)
        save_tiny_tokenizer(tmp_path / kind)
    texts = ["w1 w2 w3", "w4 w5"]
    bert = tfcore.AutoModel.from_pretrained(tmp_path / "bert")
    np.testing.assert_array_equal(
        tfcore.eval.embed(str(tmp_path / "bert"), texts), tfcore.eval.embed(bert, texts)
    )
    gpt2 = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")
    a, b = tfcore.eval.score(pathlib.Path(tmp_path / "gpt2"), texts), tfcore.eval.score(gpt2, texts)
    np.testing.assert_array_equal(a["log_likelihood"], b["log_likelihood"])
    assert tfcore.eval.generate(str(tmp_path / "gpt2"), texts, max_new_tokens=3) == tfcore.eval.generate(
        gpt2, texts, max_new_tokens=3
    )
    t5 = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "t5")
    assert tfcore.eval.generate(str(tmp_path / "t5"), texts, max_new_tokens=3) == tfcore.eval.generate(
        t5, texts, max_new_tokens=3
    )
    with pytest.raises(tfcore.CheckpointError):
        tfcore.eval.embed(str(tmp_path / "missing"), texts)
