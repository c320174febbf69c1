"""RetNet and GLA with dtype="bfloat16" (weights stored bf16 like every other family; the
recurrent state and the linear-attention op stay float32): logits vs the float64 reference
model run with the bf16-rounded weights, and chunkwise prefill + recurrent decoding of the bf16
model == its full forward."""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_gla
import test_retnet
from reference.gla import gla_logits
from reference.retnet import retnet_logits

import tfcore

FAMILIES = {
    "retnet": (test_retnet.CFG, test_retnet.tiny_weights, retnet_logits),
    "gla": (test_gla.CFG, test_gla.tiny_weights, gla_logits),
}


def bf16_round(a):
    """float32 -> nearest bf16 (ties to even), as float32."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.view(np.float32)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    from safetensors.numpy import save_file

    cfg, make, ref = FAMILIES[request.param]
    d = tmp_path_factory.mktemp(request.param)
    w = make(np.random.default_rng(0))
    save_file(w, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg))
    return d, cfg, w, ref


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_bf16_logits_match_the_rounded_weight_reference(family, path):
    d, cfg, w, ref = family
    model = tfcore.AutoModelForCausalLM.from_pretrained(d, dtype="bfloat16")
    assert model.dtype == "bfloat16" and model.lm_head.dtype == "bfloat16"
    ids = np.random.default_rng(1).integers(0, cfg["vocab_size"], (2, 23))
    got = model(ids).logits
    # the reference runs in float64 with the same bf16-rounded weights; tfcore also rounds
    # each GEMM's input rows to bf16, the same 2^-9 relative rounding the weights got, in the
    # same GEMMs: its effect on the logits is of the size of the weights' rounding (the
    # difference the rounded weights make to the float64 reference); bound: 3x that
    want = ref(cfg, {k: bf16_round(v) for k, v in w.items()}, ids)
    weight_rounding = rel(want, ref(cfg, w, ids))
    assert rel(got, want) < 3 * weight_rounding
    f32 = tfcore.AutoModelForCausalLM.from_pretrained(d)(ids).logits
    assert rel(got, f32) > 0  # the bf16 model really ran in bf16


def test_bf16_prefill_then_decoding_equals_full_forward(family):
    d, cfg, _, _ = family
    model = tfcore.AutoModelForCausalLM.from_pretrained(d, dtype="bfloat16")
    ids = np.random.default_rng(2).integers(0, cfg["vocab_size"], (2, 30))
    full = model(ids).logits
    state = model.new_cache(2)
    assert state.get(0, "state").dtype == np.float32  # the state stays float32
    parts = [model(ids[:, :22], past_key_values=state).logits]
    parts += [model(ids[:, t : t + 1], past_key_values=state).logits for t in range(22, 30)]
    # same bf16 weights and rounding points; the chunkwise and recurrent forms differ in float32
    # rounding only, which can flip one bf16 rounding of a GEMM input (2^-9 relative): a flip
    # moves a logit by about that much of the scale, so 4e-3 (two flips' worth) bounds it
    assert rel(np.concatenate(parts, axis=1), full) < 4e-3
