"""Mamba, Mamba-2 and Jamba with dtype="bfloat16": bf16 projection weights and GEMMs, while the
scan's parameters (A_log, D, dt_bias, the conv taps) and the recurrent state stay float32, as
HF's mixed precision keeps A = -exp(A_log.float()). Checked on the tiny models of
test_mamba.py / test_mamba2.py / test_jamba.py:

- logits against HF's float32 model run with the same bf16-rounded Linear weights, within 3x
  the effect that rounding alone has on HF's logits (tfcore also rounds each GEMM's input rows
  to bf16: the same 2^-9 relative step at the same GEMMs, so an effect of the same size);
- the next-token argmax of the bf16 model agrees with the float32 model's at >= 90% of the
  positions of a fixed sequence, and greedy decoding starts with the same tokens;
- chunked prefill + one-token decoding of the bf16 model equals its full forward.

Why not a random mamba-130m: HF's random init makes that 24-layer model chaotic (float64 vs
float32 logits differ by 5e-4; rounding any one weight group to bf16 inside HF moves the
logits by 45-100%), so its bf16 tokens cannot agree with anything; benchmarks/bench_recurrent.py
scales its x_proj down, which makes it well-conditioned (see there)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_jamba import jamba  # noqa: F401  (fixture)
from test_mamba import build as build_mamba
from test_mamba2 import mamba2  # noqa: F401  (fixture)

import tfcore


@pytest.fixture(scope="module")
def mamba(tmp_path_factory):
    return build_mamba(tmp_path_factory, "mamba_bf16")


FAMILIES = ["mamba", "mamba2", "jamba"]


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def hf_logits(ref, ids):
    with torch.no_grad():
        return ref(torch.from_numpy(ids)).logits.float().numpy()


def bf16_linear_weights(ref):
    """A copy of the HF model whose nn.Linear weights (what tfcore stores in bf16: the
    projections, experts, router and LM head) are rounded to bf16; float32 otherwise."""
    r = copy.deepcopy(ref)
    with torch.no_grad():
        for mod in r.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(mod.weight.to(torch.bfloat16).float())
    return r


@pytest.fixture(params=FAMILIES)
def family(request):
    ref, d = request.getfixturevalue(request.param)
    return request.param, ref, d, ref.config.vocab_size


def test_bf16_logits_match_hf_with_rounded_weights(family):
    name, ref, d, V = family
    model = tfcore.AutoModelForCausalLM.from_pretrained(d, dtype="bfloat16")
    assert model.dtype == "bfloat16" and model.lm_head.dtype == "bfloat16"
    ids = np.random.default_rng(11).integers(3, V, (2, 37))
    got = model(ids).logits
    want = hf_logits(bf16_linear_weights(ref), ids)
    weight_rounding = rel(want, hf_logits(ref, ids))
    assert 0 < weight_rounding < 0.05, weight_rounding  # the tiny models are well-conditioned
    err = rel(got, want)
    assert err < 3 * weight_rounding, (name, err, weight_rounding)


def test_bf16_tokens_agree_with_float32(family):
    name, _, d, V = family
    f32 = tfcore.AutoModelForCausalLM.from_pretrained(d)
    bf = tfcore.AutoModelForCausalLM.from_pretrained(d, dtype="bfloat16")
    ids = np.random.default_rng(12).integers(3, V, (2, 60))
    a, b = f32(ids).logits, bf(ids).logits
    # stated bf16 tolerance: 2^-9 relative per rounding, over a few layers of GEMMs: 2% of the
    # largest logit bounds it (measured: 0.15-0.72% on these models, AVX2)
    assert rel(b, a) < 2e-2, (name, rel(b, a))
    agree = float((a.argmax(-1) == b.argmax(-1)).mean())
    assert agree >= 0.9, (name, agree)
    prompt = ids[:1, :9]
    ga = f32.generate(prompt, max_new_tokens=20, eos_token_id=[])
    gb = bf.generate(prompt, max_new_tokens=20, eos_token_id=[])
    # greedy paths stay equal until a near-tie flips; the first 8 tokens must agree
    assert (ga[:, 9:17] == gb[:, 9:17]).all(), (name, ga, gb)


def test_bf16_prefill_then_decoding_equals_full_forward(family):
    name, _, d, V = family
    model = tfcore.AutoModelForCausalLM.from_pretrained(d, dtype="bfloat16")
    ids = np.random.default_rng(13).integers(3, V, (2, 30))
    full = model(ids).logits
    state = model.new_cache(2)
    parts = [model(ids[:, :22], past_key_values=state).logits]
    parts += [model(ids[:, t : t + 1], past_key_values=state).logits for t in range(22, 30)]
    # same bf16 weights and rounding points; the chunked and one-token forms differ in float32
    # rounding only, which can flip one bf16 rounding of a GEMM input (2^-9 relative): 4e-3
    # (two flips' worth of the logit scale) bounds it
    assert rel(np.concatenate(parts, axis=1), full) < 4e-3, name
