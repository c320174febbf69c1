"""Issue 23 point 9: tfcore.Linear pickles (weights, bias, activation, dtype) and comes back
computing the same; generate() refuses up front to run a learned-position model (GPT-2)
past its positions, instead of failing after 1,020 steps of a bounded-cache run."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from tiny_models import save_tiny

import tfcore


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_pickle_round_trip(rng, dtype, bias):
    w = rng.standard_normal((37, 19)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32) if bias else None
    layer = tfcore.Linear(w, b, "gelu", dtype=dtype)
    back = pickle.loads(pickle.dumps(layer))
    assert type(back) is tfcore.Linear and repr(back) == repr(layer)
    assert back.dtype == dtype and back.activation == "gelu"
    assert np.array_equal(back.weight, layer.weight)  # bf16 values / int8 q * scale survive exactly
    if bias:
        assert np.array_equal(back.bias, b)
    else:
        assert back.bias is None
    x = rng.standard_normal((5, 19)).astype(np.float32)
    assert np.array_equal(back(x), layer(x))
    assert np.array_equal(copy.deepcopy(layer)(x), layer(x))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert np.array_equal(pickle.loads(pickle.dumps(layer, protocol))(x), layer(x))


def test_generate_refuses_past_learned_positions_up_front(tmp_path):
    save_tiny("gpt2", tmp_path, n_positions=64)
    lm = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = np.array([[1, 2, 3, 4]])
    assert lm.position_limit == 64
    with pytest.raises(tfcore.TfcoreValueError) as e:
        lm.generate(ids, max_new_tokens=4096, cache_policy="sink_window", cache_budget=16, n_sink=4)
    msg = str(e.value)
    assert "learned position embeddings for 64 positions" in msg
    assert "bounds memory, not positions" in msg and "at most 60" in msg
    with pytest.raises(tfcore.TfcoreValueError, match="learned position embeddings"):
        lm.generate(ids, max_new_tokens=61)
    assert lm.generate(ids, max_new_tokens=60).shape == (1, 64)  # exactly the positions it has
    # rotary models have no such limit: the same bounded-cache call runs (briefly here)
    save_tiny("llama", tmp_path / "llama")
    llama = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "llama")
    assert llama.position_limit is None
    out = llama.generate(ids, max_new_tokens=24, cache_policy="sink_window", cache_budget=8, n_sink=2)
    assert out.shape == (1, 28)
