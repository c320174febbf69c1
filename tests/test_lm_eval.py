"""lm-evaluation-harness on tfcore: lm_eval.simple_evaluate with model="tfcore" against the
harness's own Hugging Face backend ("hf", transformers on torch CPU) on the same tiny random
checkpoints, over tasks defined in tests/data/lm_eval_tasks (YAML + local JSON lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny, save_tiny_tokenizer

import tfcore

lm_eval = pytest.importorskip("lm_eval")  # the test extra installs it; CI fails on skips  # noqa: E402
import tfcore.integrations.lm_eval as tf_lm_eval  # noqa: E402

TASKS = Path(__file__).parent / "data" / "lm_eval_tasks"


def _corpus():
    out = []
    for f in TASKS.glob("*.jsonl"):
        for line in f.read_text().splitlines():
            out.extend(str(v) for v in json.loads(line).values())
    return out


@pytest.fixture(scope="module", params=["gpt2", "llama", "t5"])
def checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    vocab = save_tiny_tokenizer(path, corpus=_corpus(), vocab_size=300)
    cfg = dict(vocab_size=vocab, bos_token_id=1, eos_token_id=1)
    if request.param == "gpt2":
        cfg.update(n_positions=48)  # short window: the rolling task needs two windows
    elif request.param == "llama":
        cfg.update(max_position_embeddings=48)
    else:  # encoder-decoder: the harness's "seq2seq" backend on both sides
        cfg = dict(vocab_size=vocab, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    save_tiny(request.param, path, **cfg)
    return path


def _evaluate(model, tasks, model_args=None):
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=tasks,
        task_manager=TaskManager(include_path=str(TASKS), include_defaults=False),  # no hub index
        batch_size=4,
        device="cpu",
        log_samples=True,
        bootstrap_iters=0,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )


@pytest.fixture(scope="module")
def runs(checkpoint):
    """Both backends over the three tasks (the data paths in the YAMLs are relative)."""
    cwd = os.getcwd()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.chdir(TASKS)
    try:
        tasks = ["tfcore_tiny_mc", "tfcore_tiny_gen", "tfcore_tiny_rolling"]
        hf = _evaluate("hf", tasks, f"pretrained={checkpoint},dtype=float32")
        tf = _evaluate("tfcore", tasks, f"pretrained={checkpoint},dtype=float32")
    finally:
        os.chdir(cwd)
    return hf, tf


def _by_doc(samples):
    return {s["doc_id"]: s for s in samples}


def test_multiple_choice_loglikelihoods_equal_hf(runs):
    hf, tf = runs
    a, b = _by_doc(hf["samples"]["tfcore_tiny_mc"]), _by_doc(tf["samples"]["tfcore_tiny_mc"])
    assert a.keys() == b.keys() and len(a) == 10
    for d in a:
        ll_hf = np.array([r[0][0] for r in a[d]["resps"]])
        ll_tf = np.array([r[0][0] for r in b[d]["resps"]])
        assert np.abs(ll_hf - ll_tf).max() <= 1e-4, (d, ll_hf, ll_tf)  # float32 forward, 1e-4 as the issue
        assert [r[0][1] for r in a[d]["resps"]] == [r[0][1] for r in b[d]["resps"]]  # is_greedy
    for metric in ("acc,none", "acc_norm,none"):
        assert tf["results"]["tfcore_tiny_mc"][metric] == hf["results"]["tfcore_tiny_mc"][metric]


def test_generate_until_equals_hf(runs):
    hf, tf = runs
    a, b = _by_doc(hf["samples"]["tfcore_tiny_gen"]), _by_doc(tf["samples"]["tfcore_tiny_gen"])
    assert len(a) == 6
    texts = [b[d]["resps"][0][0] for d in a]
    assert texts == [a[d]["resps"][0][0] for d in a]  # greedy text, cut at the stop strings
    assert not any("\n" in t or "." in t for t in texts)
    assert (
        tf["results"]["tfcore_tiny_gen"]["exact_match,none"]
        == hf["results"]["tfcore_tiny_gen"]["exact_match,none"]
    )


def test_loglikelihood_rolling_equals_hf_and_tfcore_eval_score(runs, checkpoint):
    from tokenizers import processors

    hf, tf = runs
    a, b = _by_doc(hf["samples"]["tfcore_tiny_rolling"]), _by_doc(tf["samples"]["tfcore_tiny_rolling"])
    ll_hf = np.array([a[d]["resps"][0][0] for d in sorted(a)])
    ll_tf = np.array([b[d]["resps"][0][0] for d in sorted(a)])
    # 1e-4 plus 1e-6 relative: T5's window is 2048 tokens (the longest text is one window of
    # ~1000 tokens, total ~-1555), and the HF backend sums float32 log-softmax values
    np.testing.assert_allclose(ll_tf, ll_hf, rtol=1e-6, atol=1e-4)
    if tfcore.config.Config.from_dir(checkpoint).get("is_encoder_decoder"):
        return  # the harness scores each window as decoder labels: not eval.score's quantity
    # the same quantity from tfcore.eval.score: every token of the text after the BOS the
    # harness conditions on (the texts that fit one window of max_length tokens)
    tok = tfcore.text.load_tokenizer(checkpoint)
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 1)]
    )
    texts = [a[d]["doc"]["text"] for d in sorted(a)]
    one_window = np.array([len(tok.encode(t).ids) <= 48 for t in texts])
    assert one_window.any() and not one_window.all()  # both kinds are covered against HF above
    lm = tfcore.AutoModelForCausalLM.from_pretrained(checkpoint)
    res = tfcore.eval.score(
        lm, [t for t, w in zip(texts, one_window) if w], tokenizer=tok, show_progress=False
    )
    assert np.abs(res["log_likelihood"] - ll_tf[one_window]).max() <= 1e-4


def test_registered_and_instance_and_bad_args(checkpoint):
    from lm_eval.api.registry import get_model

    assert get_model("tfcore") is tf_lm_eval.TfcoreLM
    seq2seq = bool(tfcore.config.Config.from_dir(checkpoint).get("is_encoder_decoder"))
    auto = tfcore.AutoModelForSeq2SeqLM if seq2seq else tfcore.AutoModelForCausalLM
    lm = tf_lm_eval.TfcoreLM(auto.from_pretrained(checkpoint), batch_size=2)
    assert lm.backend == ("seq2seq" if seq2seq else "causal")
    assert lm.max_length == (2048 if seq2seq else 48) and lm.batch_size == 2  # T5: HF's default
    wrong = "causal" if seq2seq else "seq2seq"
    with pytest.raises(tfcore.TfcoreValueError, match="does not fit"):
        tf_lm_eval.TfcoreLM(str(checkpoint), backend=wrong)
    with pytest.raises(tfcore.TfcoreValueError, match="backend must be"):
        tf_lm_eval.TfcoreLM(str(checkpoint), backend="encoder")
    with pytest.raises(tfcore.TfcoreValueError, match="batch_size"):
        tf_lm_eval.TfcoreLM(str(checkpoint), batch_size=0)
    with pytest.raises(tfcore.TfcoreTypeError, match="pretrained"):
        tf_lm_eval.TfcoreLM(42)
    with pytest.raises(tfcore.CheckpointError):
        tf_lm_eval.TfcoreLM(str(checkpoint / "missing"))
    with pytest.raises(tfcore.TfcoreValueError, match="chat template"):
        lm.apply_chat_template([{"role": "user", "content": "hi"}])
