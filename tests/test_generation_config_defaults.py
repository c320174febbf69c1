"""generate() takes its length limit and beam settings from the checkpoint's
generation_config.json when the call does not state them, as HF's generate does: a
summarisation checkpoint's num_beams / length_penalty / early_stopping / max_length (with its
n-gram and minimum-length constraints) give the same tokens as HF's ``generate(ids)`` with no
arguments; explicit arguments win; ``max_length`` counts the prompt for decoder-only models and
the decoder start token for encoder-decoders. Token-for-token equality is the check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_bart import build, inputs
from tiny_models import save_tiny

import tfcore

BEAM_CONFIG = dict(num_beams=3, length_penalty=2.0, early_stopping=True, max_length=11)


def _write_generation_config(path, **values):
    f = path / "generation_config.json"
    cfg = json.loads(f.read_text()) if f.exists() else {}
    cfg.update(values)
    f.write_text(json.dumps(cfg))


def _hf_generate(ref, path, ids, mask=None, **kw):
    import transformers

    ref.generation_config = transformers.GenerationConfig.from_pretrained(path)
    with torch.no_grad():
        out = ref.generate(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask), **kw
        )
    return out.numpy()


def test_bart_takes_beam_settings_from_generation_config(rng, tmp_path):
    ref, _ = build(tmp_path, spread=None)
    _write_generation_config(tmp_path, no_repeat_ngram_size=2, min_length=5, **BEAM_CONFIG)
    ours = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ids, mask = inputs(rng)
    want = _hf_generate(ref, tmp_path, ids, mask)
    got = ours.generate(ids, attention_mask=mask)
    assert want.shape[1] <= 11  # HF's max_length counts the decoder start token
    np.testing.assert_array_equal(got, want)
    # explicit arguments win over the file
    want = _hf_generate(ref, tmp_path, ids, mask, num_beams=1, max_new_tokens=6)
    np.testing.assert_array_equal(
        ours.generate(ids, attention_mask=mask, num_beams=1, max_new_tokens=6), want
    )
    want = _hf_generate(ref, tmp_path, ids, mask, max_length=7, length_penalty=0.5)
    np.testing.assert_array_equal(
        ours.generate(ids, attention_mask=mask, max_length=7, length_penalty=0.5), want
    )


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_only_max_length_counts_the_prompt(rng, tmp_path, kind):
    import transformers

    save_tiny(kind, tmp_path)
    _write_generation_config(tmp_path, num_beams=2, max_length=13)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ours = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = rng.integers(3, 60, size=(2, 7))
    want = _hf_generate(ref, tmp_path, ids, np.ones_like(ids))
    got = ours.generate(ids)
    assert got.shape[1] <= 13
    np.testing.assert_array_equal(got, want)
    # max_length given: prompt + new tokens; max_new_tokens given too: max_new_tokens wins (HF)
    want = _hf_generate(ref, tmp_path, ids, np.ones_like(ids), num_beams=1, max_length=10)
    np.testing.assert_array_equal(ours.generate(ids, num_beams=1, max_length=10), want)
    want = _hf_generate(ref, tmp_path, ids, np.ones_like(ids), num_beams=1, max_new_tokens=4)
    np.testing.assert_array_equal(ours.generate(ids, num_beams=1, max_new_tokens=4, max_length=100), want)


def test_without_generation_config_settings_the_defaults_stay(rng, tmp_path):
    """No max_length / num_beams in the file: greedy, 20 new tokens (tfcore's documented
    default)."""
    save_tiny("gpt2", tmp_path)
    ours = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = rng.integers(3, 60, size=(1, 5))
    out = ours.generate(ids, eos_token_id=[])
    assert out.shape == (1, 25)
    np.testing.assert_array_equal(out, ours.generate(ids, eos_token_id=[], num_beams=1, max_new_tokens=20))


@pytest.mark.parametrize(
    "values,words",
    [
        (dict(num_beams=0), "num_beams"),
        (dict(num_beams="3"), "num_beams"),
        (dict(max_length=-4), "max_length"),
    ],
)
def test_bad_generation_config_values_raise(rng, tmp_path, values, words):
    save_tiny("gpt2", tmp_path)
    _write_generation_config(tmp_path, **values)
    ours = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match=words):
        ours.generate(rng.integers(3, 60, size=(1, 5)))


def test_bad_max_length_argument(rng, tmp_path):
    save_tiny("gpt2", tmp_path)
    ours = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreTypeError, match="max_length"):
        ours.generate(rng.integers(3, 60, size=(1, 5)), max_length=7.5)
