"""new_cache() of the LMs with a fixed-size recurrent state (decoder.RecurrentStateCache, shared
by the state-space models, RetNet/GLA and RWKV-4/6): a RecurrentState per layer whatever the
capacity, float32 or bfloat16 unless the family keeps float32 only, and clear refusals of the
KV-cache policies and other dtypes."""

from __future__ import annotations

import pytest
from tiny_models import save_tiny

import tfcore


@pytest.mark.parametrize("kind", ["mamba", "rwkv"])
def test_new_cache_is_a_fixed_size_state(tmp_path, kind):
    model = tfcore.AutoModelForCausalLM.from_pretrained(save_tiny(kind, tmp_path / kind))
    small, large = model.new_cache(2, capacity=8), model.new_cache(2, capacity=100_000)
    assert isinstance(small, tfcore.RecurrentState)
    assert small.nbytes == large.nbytes > 0
    with pytest.raises(tfcore.TfcoreValueError, match="fixed-size recurrent state"):
        model.new_cache(2, policy="sink_window", budget=16)
    with pytest.raises(tfcore.TfcoreValueError, match="int8"):
        model.new_cache(2, dtype="int8")


def test_bfloat16_state_unless_the_family_keeps_float32(tmp_path):
    mamba = tfcore.AutoModelForCausalLM.from_pretrained(save_tiny("mamba", tmp_path / "mamba"))
    assert mamba.new_cache(1, dtype="bfloat16").nbytes * 2 == mamba.new_cache(1).nbytes
    rwkv = tfcore.AutoModelForCausalLM.from_pretrained(save_tiny("rwkv", tmp_path / "rwkv"))
    with pytest.raises(tfcore.TfcoreValueError, match="RwkvForCausalLM's WKV state is float32 only"):
        rwkv.new_cache(1, dtype="bfloat16")
