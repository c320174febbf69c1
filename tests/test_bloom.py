"""BLOOM (ALiBi) against Hugging Face: prefill logits with 5, 6 and 16 heads (the
non-power-of-2 slopes), odd lengths, left- and right-padded batches, cached decoding ==
full recomputation, greedy / beam generation token for token, bf16 / int8 loading, the
checkpoint layouts (with and without the "transformer." prefix) and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded
from reference.quant import emulate_int8

import tfcore
from tfcore import models

TOL = 5e-5  # float32 both sides through 2 layers; logits are O(1)
V = 97


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def bloom(tmp_path, hidden=60, heads=5, layers=2, **kw):
    """A tiny random HF BloomForCausalLM (eager attention, eval mode) saved to tmp_path, and
    tfcore's load of it. The query/key weights are scaled up so attention scores are O(1)
    (HF's 0.02 init leaves them near zero and only ALiBi would shape the softmax)."""
    from transformers import BloomConfig, BloomForCausalLM

    cfg = BloomConfig(
        vocab_size=V,
        hidden_size=hidden,
        n_layer=layers,
        n_head=heads,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="eager",
        **kw,
    )
    ref = BloomForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("query_key_value.weight"):
                p.mul_(15.0)
    ref.save_pretrained(tmp_path)
    return ref, tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        return ref(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask)
        ).logits.numpy()


@pytest.mark.parametrize("hidden,heads", [(60, 5), (48, 6), (64, 16)])
@pytest.mark.parametrize("T", [7, 97])
def test_prefill_logits(rng, tmp_path, hidden, heads, T):
    ref, ours = bloom(tmp_path, hidden, heads)
    assert isinstance(ours, models.BloomForCausalLM)
    ids = rng.integers(3, V, size=(2, T))
    want = hf_logits(ref, ids)
    got = ours(ids).logits
    assert got.shape == want.shape == (2, T, V)
    assert np.abs(got - want).max() < TOL


def test_residual_after_layernorm_variant(rng, tmp_path):
    ref, ours = bloom(tmp_path, apply_residual_connection_post_layernorm=True)
    ids = rng.integers(3, V, size=(2, 13))
    mask = np.ones((2, 13), np.int64)
    mask[1, :4] = 0
    with torch.no_grad():
        hf = ref(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            output_attentions=True,
            output_hidden_states=True,
        )
    want = hf.logits.numpy()
    out = ours(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    got = out.logits
    assert np.abs(got[0] - want[0]).max() < TOL and np.abs(got[1, 4:] - want[1, 4:]).max() < TOL
    for a, b in zip(out.attentions, hf.attentions, strict=True):
        assert np.abs(a[0] - b[0].numpy()).max() < 1e-5  # probabilities of the unpadded row
    for a, b in zip(out.hidden_states, hf.hidden_states, strict=True):
        assert np.abs(a[0] - b[0].numpy()).max() < TOL
    cache = ours.new_cache(2, 4)
    steps = [ours(ids[:, :9], attention_mask=mask[:, :9], past_key_values=cache).logits]
    for t in range(9, 13):
        steps.append(ours(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], past_key_values=cache).logits)
    assert np.abs(np.concatenate(steps, axis=1)[1, 4:] - want[1, 4:]).max() < TOL


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch(rng, tmp_path, side):
    """HF adds slope * (position counted over the mask); the kernel adds slope * (key - query):
    equal after softmax for prefix or suffix padding. Padded query rows are not compared
    (HF's are softmax over all-masked rows, tfcore's are zero context)."""
    ref, ours = bloom(tmp_path, 48, 6)
    ids = rng.integers(3, V, size=(2, 31))
    mask = np.ones((2, 31), np.int64)
    real = slice(6, None) if side == "left" else slice(None, 25)
    mask[1] = 0
    mask[1, real] = 1
    want = hf_logits(ref, ids, mask)
    got = ours(ids, attention_mask=mask).logits
    assert np.abs(got[0] - want[0]).max() < TOL
    assert np.abs(got[1, real] - want[1, real]).max() < TOL


@pytest.mark.parametrize("hidden,heads", [(60, 5), (48, 6)])
def test_cached_decoding_equals_full_recomputation(rng, tmp_path, hidden, heads):
    ref, ours = bloom(tmp_path, hidden, heads)
    ids = rng.integers(3, V, size=(2, 23))
    mask = np.ones((2, 23), np.int64)
    mask[0, :3] = 0  # left padding: the cached steps see the mask over (past + new)
    full = ours(ids, attention_mask=mask).logits
    want = hf_logits(ref, ids, mask)
    assert np.abs(full[0, 3:] - want[0, 3:]).max() < TOL and np.abs(full[1] - want[1]).max() < TOL
    # a prompt of 11, then one token at a time (capacity 4: the cache grows on the way)
    cache = ours.new_cache(2, 4)
    steps = [ours(ids[:, :11], attention_mask=mask[:, :11], past_key_values=cache).logits]
    for t in range(11, 23):
        steps.append(ours(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], past_key_values=cache).logits)
    got = np.concatenate(steps, axis=1)
    assert np.abs(got[0, 3:] - full[0, 3:]).max() < TOL and np.abs(got[1] - full[1]).max() < TOL
    # several tokens per step as well (T > 1 with a cache: the causal diagonal moves)
    cache = ours.new_cache(2, 4)
    chunks = [
        ours(ids[:, a:b], attention_mask=mask[:, :b], past_key_values=cache).logits
        for a, b in ((0, 5), (5, 12), (12, 23))
    ]
    got = np.concatenate(chunks, axis=1)
    assert np.abs(got[0, 3:] - full[0, 3:]).max() < TOL and np.abs(got[1] - full[1]).max() < TOL


def test_greedy_generation_matches_hf(rng, tmp_path):
    ref, ours = bloom(tmp_path)
    ids = rng.integers(3, V, size=(2, 9))
    with torch.no_grad():
        want = ref.generate(
            torch.from_numpy(ids),
            attention_mask=torch.ones(2, 9, dtype=torch.long),
            max_new_tokens=40,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        ).numpy()
    got = ours.generate(ids, max_new_tokens=40, eos_token_id=[], pad_token_id=0)
    assert got.shape == want.shape == (2, 49)
    assert np.array_equal(got, want)


def test_left_padded_generation_matches_hf(rng, tmp_path):
    ref, ours = bloom(tmp_path, 48, 6)
    assert_generate_matches_hf(ref, ours, *left_padded(rng, V), max_new_tokens=20)


@pytest.mark.parametrize(
    "kw", [dict(num_beams=4), dict(num_beams=3, length_penalty=0.5, num_return_sequences=2)]
)
def test_beam_search_matches_hf(rng, tmp_path, kw):
    ref, ours = bloom(tmp_path)
    ids = rng.integers(3, V, size=(2, 7))
    # end-of-sequence: the last token of the best 3-token beam, so hypotheses finish mid-search
    eos = int(ours.generate(ids, max_new_tokens=3, eos_token_id=[], num_beams=kw["num_beams"])[0, -1])
    with torch.no_grad():
        want = ref.generate(
            torch.from_numpy(ids),
            attention_mask=torch.ones(2, 7, dtype=torch.long),
            max_new_tokens=15,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=0,
            **kw,
        ).numpy()
    got = ours.generate(ids, max_new_tokens=15, eos_token_id=eos, pad_token_id=0, **kw)
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_sampling(rng, tmp_path):
    ref, ours = bloom(tmp_path)
    ids = rng.integers(3, V, size=(2, 6))
    a = ours.generate(
        ids, max_new_tokens=12, do_sample=True, top_k=8, temperature=0.8, seed=7, eos_token_id=[]
    )
    b = ours.generate(
        ids, max_new_tokens=12, do_sample=True, top_k=8, temperature=0.8, seed=7, eos_token_id=[]
    )
    assert a.shape == (2, 18) and np.array_equal(a, b)
    greedy = ours.generate(ids, max_new_tokens=12, eos_token_id=[])
    assert np.array_equal(
        ours.generate(ids, max_new_tokens=12, do_sample=True, top_k=1, seed=3, eos_token_id=[]), greedy
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_quantized_kv_cache_generation(rng, tmp_path, dtype):
    ref, ours = bloom(tmp_path)
    ids = rng.integers(3, V, size=(2, 9))
    full = ours(ids).logits
    cache = ours.new_cache(2, 4, dtype=dtype)
    steps = [ours(ids[:, :3], past_key_values=cache).logits]
    for t in range(3, 9):
        steps.append(ours(ids[:, t : t + 1], past_key_values=cache).logits)
    # keys/values rounded to bf16 (8-bit mantissa) / int8 per row: errors of that order
    assert (
        np.abs(np.concatenate(steps, axis=1) - full).max()
        < {"bfloat16": 2e-2, "int8": 5e-2}[dtype] * np.abs(full).max()
    )
    out = ours.generate(ids, max_new_tokens=5, cache_dtype=dtype, eos_token_id=[])
    assert out.shape == (2, 14) and (out[:, :9] == ids).all()


@pytest.mark.skipif("bfloat16" not in tfcore.supported_dtypes(), reason="no fast bf16 matmul on this CPU")
def test_bfloat16_weights(rng, tmp_path):
    """bf16 projections against HF in float32 on the same bf16-rounded weights, from a float32
    and from a bfloat16 checkpoint."""
    from transformers import BloomForCausalLM

    ref, _ = bloom(tmp_path / "f32")
    ref.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    ref = BloomForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32).eval()
    ids = rng.integers(3, V, size=(2, 23))
    want = hf_logits(ref, ids)
    for ckpt in ("f32", "bf16"):
        model = models.BloomForCausalLM.from_pretrained(tmp_path / ckpt, dtype="bfloat16")
        assert model.lm_head.dtype == "bfloat16"
        got = model(ids).logits
        # rows rounded to bf16 before each GEMM: ~3 significant digits on O(1) logits
        assert np.abs(got - want).max() < 2e-2 * np.abs(want).max()
    cache = model.new_cache(2, 4)
    model(ids[:, :20], past_key_values=cache)
    for t in range(20, 23):
        step = model(ids[:, t : t + 1], past_key_values=cache).logits
        assert np.abs(step[:, -1] - got[:, t]).max() < 1e-4


@pytest.mark.skipif("int8" not in tfcore.supported_dtypes(), reason="no fast int8 matmul on this CPU")
def test_int8_weights(rng, tmp_path):
    """int8 against HF with the same fake quantization (weights per channel, activations per
    token) in every projection, and near float32."""
    ref, _ = bloom(tmp_path)
    ids = rng.integers(3, V, size=(2, 23))
    full = hf_logits(ref, ids)
    with torch.no_grad():
        emulated = emulate_int8(ref)(torch.from_numpy(ids)).logits.numpy()
    model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="int8")
    assert model.lm_head.dtype == "int8"
    got = model(ids).logits
    scale = np.abs(full).max()
    assert np.abs(got - emulated).max() < 2e-4 * scale
    assert np.abs(got - full).max() < 5e-2 * scale


def test_bloom_model_hidden_states_and_attentions(rng, tmp_path):
    from transformers import BloomConfig, BloomModel

    ref = BloomModel(
        BloomConfig(vocab_size=V, hidden_size=48, n_layer=2, n_head=6, attn_implementation="eager")
    ).eval()
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert isinstance(ours, models.BloomModel)
    ids = rng.integers(0, V, size=(2, 13))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), output_hidden_states=True, output_attentions=True)
    got = ours(ids, output_hidden_states=True, output_attentions=True)
    assert np.abs(got.last_hidden_state - want.last_hidden_state.numpy()).max() < TOL
    assert len(got.hidden_states) == len(want.hidden_states) == 3
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        assert np.abs(a - b.numpy()).max() < TOL
    for a, b in zip(got.attentions, want.attentions, strict=True):
        assert np.abs(a - b.numpy()).max() < 1e-5  # probabilities


def test_bigscience_layout_without_prefix(rng, tmp_path):
    """bigscience/bloom-* checkpoints store BloomModel keys (no "transformer.") and spell the
    width n_embed; BloomForCausalLM ties its head to them."""
    from safetensors.numpy import load_file, save_file

    ref, _ = bloom(tmp_path / "hf")
    tensors = {
        k.removeprefix("transformer."): v for k, v in load_file(tmp_path / "hf" / "model.safetensors").items()
    }
    (tmp_path / "bs").mkdir()
    save_file(tensors, tmp_path / "bs" / "model.safetensors")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["n_embed"] = cfg.pop("hidden_size")
    cfg["num_attention_heads"] = cfg.pop("n_head")
    (tmp_path / "bs" / "config.json").write_text(json.dumps(cfg))
    ours = models.BloomForCausalLM.from_pretrained(tmp_path / "bs")
    assert ours.unexpected_keys == []
    ids = rng.integers(3, V, size=(1, 11))
    assert np.abs(ours(ids).logits - hf_logits(ref, ids)).max() < TOL


def test_checkpoint_errors(tmp_path):
    from safetensors.numpy import load_file, save_file

    bloom(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    cfg_path = tmp_path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "n_head": 7}))
    with pytest.raises(tfcore.CheckpointError, match="hidden_size=60 is not divisible by n_head=7"):
        models.BloomForCausalLM.from_pretrained(tmp_path)
    cfg_path.write_text(json.dumps({k: v for k, v in cfg.items() if k != "hidden_size"}))
    with pytest.raises(tfcore.CheckpointError, match="needs one of 'hidden_size', 'n_embed'"):
        models.BloomForCausalLM.from_pretrained(tmp_path)
    cfg_path.write_text(json.dumps(cfg))
    save_file(
        {k: v for k, v in tensors.items() if "h.1.self_attention.query_key_value.weight" not in k}, path
    )
    with pytest.raises(tfcore.CheckpointError, match="missing 'h.1.self_attention.query_key_value.weight'"):
        models.BloomForCausalLM.from_pretrained(tmp_path)
    bad = dict(tensors)
    bad["transformer.h.0.self_attention.dense.weight"] = np.zeros((60, 59), np.float32)
    save_file(bad, path)
    with pytest.raises(
        tfcore.CheckpointError, match=r"dense.weight' has shape \(60, 59\), expected \(60, 60\)"
    ):
        models.BloomForCausalLM.from_pretrained(tmp_path)
    save_file({**tensors, "transformer.extra.weight": np.zeros(3, np.float32)}, path)
    assert models.BloomForCausalLM.from_pretrained(tmp_path).unexpected_keys == ["transformer.extra.weight"]
    cfg_path.write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(tfcore.CheckpointError, match="BloomForCausalLM loads bloom"):
        models.BloomForCausalLM.from_pretrained(tmp_path)


def test_input_errors(rng, tmp_path):
    ref, ours = bloom(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="input_ids holds 97"):
        ours(np.array([[97]]))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(np.ones((1, 4), np.int64), attention_mask=np.ones((1, 3)))
    with pytest.raises(tfcore.TfcoreTypeError, match="input_ids must hold integers"):
        ours(np.ones((1, 4), np.float32))
