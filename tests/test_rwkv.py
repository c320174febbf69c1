"""RwkvForCausalLM (RWKV-4) against Hugging Face's (eval mode, its CPU path): a tiny random
model with odd sizes and rescale_every=2 over 5 blocks (so HF's eval-time rescaling applies).
Prefill logits, prefill + recurrent decoding == full forward, greedy 50 tokens, beam search in
two settings, left padding (skipped; HF's RWKV ignores the mask, so compared with unpadded rows),
the RecurrentState's contents, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded

import tfcore
from tfcore import models

# relative to the largest logit: float32 on both sides through 5 blocks; HF's CPU WKV and
# tfcore's kernel run the same running-max steps, so the difference is GEMM summation order
# and exp rounding (measured ~1e-6)
TOL = 1e-4
V = 89


def build(tmp_path_factory, name, **over):
    from transformers import RwkvConfig, RwkvForCausalLM

    torch.manual_seed(0)
    kw = dict(
        vocab_size=V,
        context_length=512,
        hidden_size=37,
        num_hidden_layers=5,
        intermediate_size=61,
        rescale_every=2,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    kw.update(over)
    ref = RwkvForCausalLM(RwkvConfig(**kw)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # HF's init leaves structure (decay ramps); spread every mix and decay
        for block in ref.rwkv.blocks:
            for mod in (block.attention, block.feed_forward):
                for n, p in mod.named_parameters():
                    if n.startswith("time_mix"):
                        p.copy_(torch.rand(p.shape, generator=g))
            block.attention.time_decay.copy_(
                torch.rand(block.attention.time_decay.shape, generator=g) * 6 - 4
            )
            block.attention.time_first.copy_(torch.randn(block.attention.time_first.shape, generator=g))
            for lin in (
                block.attention.key,
                block.attention.value,
                block.attention.receptance,
                block.attention.output,
            ):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.3)
    path = tmp_path_factory.mktemp(name)
    ref.save_pretrained(path)
    return ref, path


@pytest.fixture(scope="module")
def rwkv(tmp_path_factory):
    return build(tmp_path_factory, "rwkv")


def hf_logits(ref, ids):
    with torch.no_grad():
        return ref(torch.from_numpy(ids), use_cache=False).logits.numpy()


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_prefill_logits_and_recurrent_decoding(rwkv, rng):
    ref, path = rwkv
    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    assert isinstance(ours, models.RwkvForCausalLM)
    ids = rng.integers(3, V, size=(2, 23))
    want = hf_logits(ref, ids)
    assert rel(ours(ids).logits, want) < TOL
    state = ours.new_cache(2)
    assert isinstance(state, tfcore.RecurrentState)
    steps = [ours(np.ascontiguousarray(ids[:, :9]), past_key_values=state).logits]
    for t in range(9, 23):
        steps.append(ours(np.ascontiguousarray(ids[:, t : t + 1]), past_key_values=state).logits)
    assert rel(np.concatenate(steps, axis=1), want) < TOL
    assert state.get_seq_length() == 23


def test_state_matches_hf(rwkv, rng):
    """The RecurrentState holds what HF's state list holds: shifts equal, WKV sums equal as
    the (mean, log-total) they represent (HF starts its max at -1e30, tfcore at an empty state)."""
    ref, path = rwkv
    ours = models.RwkvForCausalLM.from_pretrained(path)
    ids = rng.integers(3, V, size=(2, 11))
    with torch.no_grad():
        hf_state = [s.numpy() for s in ref(torch.from_numpy(ids), use_cache=True).state]
    out = ours(ids, use_cache=True)
    st = out.past_key_values
    assert out.state is st
    for i in range(5):
        scale = np.abs(hf_state[1][:, :, i]).max()
        np.testing.assert_allclose(st.get(i, "shift_att"), hf_state[1][:, :, i], atol=1e-5 * scale)
        np.testing.assert_allclose(
            st.get(i, "shift_ffn"), hf_state[0][:, :, i], atol=1e-5 * np.abs(hf_state[0]).max()
        )
        num, den, mx = (st.get(i, n) for n in ("wkv_num", "wkv_den", "wkv_max"))
        hn, hd, hm = (hf_state[j][:, :, i] for j in (2, 3, 4))
        np.testing.assert_allclose(num / den, hn / hd, atol=1e-4 * np.abs(hn / hd).max())
        np.testing.assert_allclose(mx + np.log(den), hm + np.log(hd), atol=1e-4, rtol=1e-5)


def test_greedy_50_tokens_equal_hf(rwkv, rng):
    """Per row against HF (transformers 5.25's batched RWKV generate disagrees with its own
    forward pass: its B=2 greedy tokens are not the argmax of its logits, while B=1 is), and
    tfcore's batched generate against tfcore's per-row runs."""
    ref, path = rwkv
    ours = models.RwkvForCausalLM.from_pretrained(path)
    ids = rng.integers(3, V, size=(2, 7))
    rows = [assert_generate_matches_hf(ref, ours, ids[b : b + 1], max_new_tokens=50) for b in range(2)]
    batched = ours.generate(ids, max_new_tokens=50, eos_token_id=[], pad_token_id=0)
    np.testing.assert_array_equal(batched, np.concatenate(rows))
    with torch.no_grad():  # and HF's B=1 tokens are its own argmax (the reference is sound)
        full = ref(torch.from_numpy(rows[0])).logits.numpy()
    np.testing.assert_array_equal(full[0, 6:-1].argmax(-1), rows[0][0, 7:])


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_beams=3, max_new_tokens=12),
        dict(num_beams=4, num_return_sequences=2, length_penalty=0.5, max_new_tokens=10),
    ],
)
def test_beam_search_equals_hf(rwkv, rng, kw):
    ref, path = rwkv
    ours = models.RwkvForCausalLM.from_pretrained(path)
    ids = rng.integers(3, V, size=(1, 6))
    # HF refuses beam search with RWKV's state ("the cache cannot be reordered"): it runs
    # without a cache (the full sequence each step); tfcore reorders its RecurrentState
    with torch.no_grad():
        want = ref.generate(
            torch.from_numpy(ids), do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=False, **kw
        ).numpy()
    got = ours.generate(ids, eos_token_id=[], pad_token_id=0, **kw)
    np.testing.assert_array_equal(got, want)


def test_left_padding_is_skipped(rwkv, rng):
    """HF's RWKV ignores attention_mask; tfcore skips padding, so a left-padded row's logits
    and greedy continuation equal those of the row without its padding (in HF and tfcore)."""
    ref, path = rwkv
    ours = models.RwkvForCausalLM.from_pretrained(path)
    ids, mask = left_padded(rng, V, B=2, T=12, pad_row=1, pad=5)
    got = ours(ids, attention_mask=mask).logits
    want_row = hf_logits(ref, np.ascontiguousarray(ids[1:, 5:]))
    assert rel(got[1:, 5:], want_row) < TOL
    assert rel(got[:1], hf_logits(ref, ids[:1])) < TOL
    gen = ours.generate(ids, attention_mask=mask, max_new_tokens=15, eos_token_id=[], pad_token_id=0)
    for b, start in ((0, 0), (1, 5)):
        alone = assert_generate_matches_hf(
            ref, ours, np.ascontiguousarray(ids[b : b + 1, start:]), max_new_tokens=15
        )
        np.testing.assert_array_equal(gen[b, 12:], alone[0, 12 - start :])


def test_attention_hidden_size_and_tied_head(tmp_path_factory, rng):
    """attention_hidden_size != hidden_size (HF's cache assumes them equal, so the full forward
    only), rescale_every=0 and a head tied to the embeddings."""
    ref, path = build(
        tmp_path_factory,
        "rwkv_a",
        attention_hidden_size=24,
        rescale_every=0,
        tie_word_embeddings=True,
        num_hidden_layers=2,
    )
    ours = models.RwkvForCausalLM.from_pretrained(path)
    ids = rng.integers(3, V, size=(1, 15))
    assert rel(ours(ids).logits, hf_logits(ref, ids)) < TOL
    st = ours.new_cache(1)
    a = ours(np.ascontiguousarray(ids[:, :8]), past_key_values=st).logits
    b = ours(np.ascontiguousarray(ids[:, 8:]), past_key_values=st).logits
    assert rel(np.concatenate([a, b], axis=1), hf_logits(ref, ids)) < TOL


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("int8", 0.08)])
def test_low_precision_weights(rwkv, rng, dtype, tol):
    # bf16 weights: 8-bit mantissa (2^-9 relative per weight) through 5 blocks; int8: 7-bit
    # per-channel steps. Bounds relative to the largest float32 logit.
    ref, path = rwkv
    ids = rng.integers(3, V, size=(1, 13))
    want = hf_logits(ref, ids)
    ours = models.RwkvForCausalLM.from_pretrained(path, dtype=dtype)
    assert rel(ours(ids).logits, want) < tol


def test_bad_inputs(rwkv, rng):
    ref, path = rwkv
    ours = models.RwkvForCausalLM.from_pretrained(path)
    ids = rng.integers(3, V, size=(2, 5))
    with pytest.raises(tfcore.TfcoreValueError, match="float32"):
        ours.new_cache(2, dtype="bfloat16")
    with pytest.raises(tfcore.TfcoreValueError, match="batch_size"):
        ours(ids, past_key_values=ours.new_cache(3))
    with pytest.raises(tfcore.TfcoreTypeError, match="RecurrentState"):
        ours(ids, past_key_values=[np.zeros(3)])
    with pytest.raises(tfcore.TfcoreValueError, match="new_cache"):
        ours(ids, past_key_values=tfcore.RecurrentState(5, 2, {"state": (3,)}))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask"):
        ours(ids, attention_mask=np.ones((2, 9)))
    with pytest.raises((tfcore.TfcoreValueError, tfcore.TfcoreTypeError), match="input_ids"):
        ours(np.full((2, 3), V + 4))
