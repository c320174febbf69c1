"""Issue 23 point 3: base models are not LMs (no generate), LMs hold a base model under HF's
attribute name, and tfcore.testing.assert_close_to_reference picks the transformers class of
the checkpoint and reports an error measure that reads right near zero."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from tiny_models import save_tiny

import tfcore
from tfcore import models
from tfcore.safetensors import save_file
from tfcore.testing import assert_close_to_reference


def _save_bloom(path):
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    BloomForCausalLM(BloomConfig(vocab_size=60, hidden_size=16, n_layer=2, n_head=2)).save_pretrained(path)
    return path


def _save_opt(path):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
        max_position_embeddings=64,
    )  # fmt: skip
    OPTForCausalLM(cfg).save_pretrained(path)
    return path


SAVERS = {
    "gpt2": lambda p: save_tiny("gpt2", p),
    "llama": lambda p: save_tiny("llama", p),
    "bloom": _save_bloom,
    "opt": _save_opt,
}
BASES = {"gpt2": "GPT2Model", "llama": "LlamaModel", "bloom": "BloomModel", "opt": "OPTModel"}
ATTRS = {"gpt2": "transformer", "llama": "model", "bloom": "transformer", "opt": "model"}


@pytest.mark.parametrize("family", sorted(SAVERS))
def test_base_models_have_no_generate_and_lms_hold_one(tmp_path, family):
    SAVERS[family](tmp_path)
    base = tfcore.AutoModel.from_pretrained(tmp_path)
    lm = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(base).__name__ == BASES[family]
    assert not hasattr(base, "generate") and not hasattr(base, "lm_head")
    inner = getattr(lm, ATTRS[family])
    assert type(inner) is type(base) and lm.base_model is inner
    ids = np.array([[3, 7, 11, 5, 2]])
    h = base(ids).last_hidden_state
    assert np.array_equal(inner(ids).last_hidden_state, h)  # the same computation, same weights
    assert lm(ids).logits.shape == (1, 5, 60)
    assert lm.generate(ids, max_new_tokens=2, eos_token_id=[]).shape == (1, 7)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bloom", "opt", "bert", "t5"])
def test_assert_close_to_reference_per_family(tmp_path, family):
    if family in SAVERS:
        SAVERS[family](tmp_path)
    else:
        save_tiny(family, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch_dtype deprecation warning from transformers
        stats = assert_close_to_reference(tmp_path)
    # logits of the LM checkpoints (the class config.json names), hidden states of the BERT one
    assert stats["output"] == ("last_hidden_state" if family == "bert" else "logits")
    assert stats["max_abs_error"] < 1e-4 and stats["relative_error"] < 1e-3
    assert stats["reference_scale"] > 0


def test_assert_close_to_reference_reports_a_corrupted_weight(tmp_path):
    from safetensors.numpy import load_file

    save_tiny("gpt2", tmp_path / "good")
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    tensors = load_file(str(tmp_path / "good" / "model.safetensors"))
    key = "transformer.h.0.mlp.c_fc.weight"
    tensors[key] = tensors[key] * np.float32(1.01)
    save_file(tensors, tmp_path / "bad" / "model.safetensors", metadata={"format": "pt"})
    bad = models.GPT2LMHeadModel.from_pretrained(tmp_path / "bad")
    with pytest.raises(AssertionError) as e:
        assert_close_to_reference(bad, reference=tmp_path / "good")
    msg = str(e.value)
    assert "GPT2LMHeadModel logits differs from transformers' GPT2LMHeadModel" in msg
    assert "max abs error" in msg and "of the reference's scale" in msg and "atol + rtol * scale" in msg
