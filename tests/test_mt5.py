"""mT5 and UMT5 (T5's architecture under other model_types) against Hugging Face: tiny random
models with odd sizes (d_kv=7, 3 heads), padded inputs long enough to reach the bucket clamp;
forward with every optional output, greedy and beam generate() token for token, and
bf16/int8 against HF with the same rounding emulated (weights and projection inputs). UMT5's per-layer bias tables are made visibly different (N(0, 1)
each), so sharing block 0's table as T5 does would fail the comparison.

Tolerance: 5e-5 relative to the output scale, as test_t5.py (float32 both sides through
2-3 pre-norm layers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_t5 import assert_same_tokens, close, inputs

import tfcore
from tfcore import models

V = 101
BASE = dict(
    vocab_size=V,
    d_model=20,
    d_kv=7,
    d_ff=37,
    num_layers=2,
    num_decoder_layers=3,
    num_heads=3,
    relative_attention_num_buckets=16,
    relative_attention_max_distance=20,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
    attn_implementation="eager",
)
KINDS = {"mt5": ("MT5Config", "MT5"), "umt5": ("UMT5Config", "UMT5")}


def build(tmp_path, kind, cls="ForConditionalGeneration", spread=1.5, seed=0, **kw):
    import transformers

    config_name, prefix = KINDS[kind]
    torch.manual_seed(seed)
    ref = getattr(transformers, prefix + cls)(getattr(transformers, config_name)(**{**BASE, **kw})).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "layer_norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                p.normal_(0, 1.0)
            else:
                p.normal_(0, p.shape[-1] ** -0.5 * (0.5 if "shared" in name or "lm_head" in name else spread))
    ref.save_pretrained(tmp_path)
    return ref


@pytest.mark.parametrize("kind", list(KINDS))
def test_forward_matches_hf(rng, tmp_path, kind):
    ref = build(tmp_path, kind)
    ours = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(ours).__name__ == type(ref).__name__ and ours.unexpected_keys == []
    ids, mask = inputs(rng)
    dec = rng.integers(2, V, size=(2, 29))
    with torch.no_grad():
        want = ref(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            decoder_input_ids=torch.from_numpy(dec),
            output_hidden_states=True,
            output_attentions=True,
        )
    got = ours(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=dec,
        output_hidden_states=True,
        output_attentions=True,
    )
    close(got.logits, want.logits)
    for field in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "cross_attentions"):
        assert len(got[field]) == len(want[field]), field
        for g, w in zip(got[field], want[field]):
            close(g, w)


@pytest.mark.parametrize("kind", list(KINDS))
def test_base_and_encoder_models(rng, tmp_path, kind):
    ids, mask = inputs(rng, S=41, pad=9)
    for cls, auto in (("EncoderModel", None), ("Model", tfcore.AutoModel)):
        ref = build(tmp_path / cls, kind, cls)
        prefix = KINDS[kind][1]
        ours = (auto or getattr(models, prefix + cls)).from_pretrained(tmp_path / cls)
        assert type(ours).__name__ == prefix + cls
        kw = dict(decoder_input_ids=ids[:, :7]) if cls == "Model" else {}
        with torch.no_grad():
            want = ref(
                torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                **{k: torch.from_numpy(v) for k, v in kw.items()},
            ).last_hidden_state
        close(ours(ids, attention_mask=mask, **kw).last_hidden_state, want)


@pytest.mark.parametrize("kind", list(KINDS))
def test_greedy_and_beam_generation_match_hf(rng, tmp_path, kind):
    # as many decoder as encoder layers: HF's generate() sizes its cache by num_layers
    ref = build(tmp_path, kind, spread=3, num_decoder_layers=BASE["num_layers"])
    ours = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ids, mask = inputs(rng, S=47, pad=11)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=20, eos_token_id=[])
    assert len(np.unique(got[:, 1:])) > 3  # not one repeated token
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=20, eos_token_id=None)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=[], num_beams=3)
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=12, eos_token_id=None, num_beams=3)


def emulate_bf16(model):
    """model with every nn.Linear weight and input rounded to bfloat16 (float32 accumulation),
    as tfcore's dtype='bfloat16' computes; the LM head is untied from the embeddings first."""
    if hasattr(model, "lm_head"):
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight.data = mod.weight.data.to(torch.bfloat16).float()
            mod.register_forward_pre_hook(lambda m, args: (args[0].to(torch.bfloat16).float(),) + args[1:])
    return model


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_low_precision_matches_emulated_hf(rng, tmp_path, kind, dtype):
    from reference.quant import emulate_int8

    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} is not supported on this CPU")
    ref = build(tmp_path, kind)
    low = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    ids, mask = inputs(rng, S=31, pad=5)
    dec = ids[:, :9]
    args = dict(
        input_ids=torch.from_numpy(ids),
        attention_mask=torch.from_numpy(mask),
        decoder_input_ids=torch.from_numpy(dec),
    )
    with torch.no_grad():
        full = ref(**args).logits.numpy()
        want = (emulate_bf16 if dtype == "bfloat16" else emulate_int8)(ref)(**args).logits.numpy()
    got = low(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    # the same rounding on both sides: the bulk agrees to float32 summation order (measured
    # ~3e-7 of the scale). A value landing on the other side of a rounding boundary can
    # cascade through attention on so tiny a model (UMT5 int8 at AVX2, 7-bit weights: 33% of
    # one input's logits off by up to 2.9% of the scale, measured): still far closer to the
    # emulation than to float32 (13% there)
    err, scale = np.abs(got - want), np.abs(want).max()
    assert np.median(err) < 1e-4 * scale
    assert err.max() < 2e-3 * scale or err.max() < 0.3 * np.abs(full - want).max()
    assert low.generate(ids, attention_mask=mask, max_new_tokens=4).shape[0] == 2
