"""BART against Hugging Face: odd sizes (head_dim 5, ffn 37, 2 encoder and 3 decoder layers),
right-padded batches, with and without scale_embedding; BartModel and
BartForConditionalGeneration forwards with hidden states and attentions; cached decoding
equal to the full forward; greedy and beam generate() token for token with HF's constraints
(forced BOS/EOS, no_repeat_ngram_size, min_length / min_new_tokens, length_penalty) given
as arguments and read from the checkpoint; bf16 / int8 load and run; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 5e-5  # relative to the output scale: float32 both sides through 2-3 post-norm layers

V = 97
BASE = dict(
    vocab_size=V,
    d_model=20,
    encoder_layers=2,
    decoder_layers=3,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=29,
    max_position_embeddings=80,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    decoder_start_token_id=2,
    forced_bos_token_id=None,
    forced_eos_token_id=None,
    no_repeat_ngram_size=0,
    attn_implementation="eager",
)
CONFIGS = {
    "bart": dict(),
    "bart-scaled-relu": dict(scale_embedding=True, activation_function="relu"),
}


def build(
    tmp_path, name="bart", cls="BartForConditionalGeneration", seed=0, spread=1.5, dtype="float32", **kw
):
    """A tiny random HF BART saved to tmp_path and tfcore's class of the same name loaded from
    it; spread scales the projections. spread=None: the generation model, untied head, small
    embeddings and biases (random post-norm BARTs mostly repeat one token; this one varies)."""
    gen = spread is None
    if gen:
        spread = 1.0
        kw.setdefault("tie_word_embeddings", False)
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BartConfig(**{**BASE, **CONFIGS[name], **kw})
    ref = getattr(transformers, cls)(cfg).eval()
    with torch.no_grad():
        for pname, p in ref.named_parameters():
            if "norm" in pname:
                p.copy_((1 if pname.endswith("weight") else 0) + 0.2 * torch.randn_like(p))
                if gen and pname.endswith("bias"):
                    p.zero_()
            elif pname.endswith("bias"):
                p.normal_(0, 0.02 if gen else 0.2)
            else:
                embed = "shared" in pname or "positions" in pname
                p.normal_(0, p.shape[-1] ** -0.5 * ((0.3 if gen else 1.0) if embed else spread))
        if hasattr(ref, "final_logits_bias"):
            ref.final_logits_bias.normal_(0, 0.0 if gen else 0.5)
    ref.save_pretrained(tmp_path)
    return ref, getattr(models, cls).from_pretrained(tmp_path, dtype=dtype)


def inputs(rng, B=2, S=53, pad=17):
    ids = rng.integers(3, V, size=(B, S))
    ids[:, -1] = 2  # </s>, as BART tokenizers end inputs
    mask = np.ones((B, S), np.int64)
    if B > 1 and pad:
        mask[1, S - pad :] = 0  # right padding, as BART tokenizers pad
        ids[1, S - pad :] = 1
        ids[1, S - pad - 1] = 2
    return ids, mask


def t(a):
    return torch.from_numpy(np.asarray(a))


def close(got, want, tol=TOL):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert err < tol, err


def assert_same_tokens(got, ref, ids, mask, **kw):
    """got equals HF's generate(); where HF's float32 and float64 runs disagree (beams or
    logits that tie within float32 rounding) it must equal one of them."""
    with torch.no_grad():
        want = ref.generate(t(ids), attention_mask=t(mask), do_sample=False, **kw).numpy()
        if np.array_equal(got, want):
            return
        exact = ref.double().generate(t(ids), attention_mask=t(mask), do_sample=False, **kw).numpy()
        ref.float()
    assert not np.array_equal(want, exact), (
        f"tfcore differs from HF where float32 and float64 agree:\n{got}\n{want}"
    )
    np.testing.assert_array_equal(got, exact)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_conditional_generation_forward(rng, tmp_path, name):
    ref, ours = build(tmp_path, name)
    ids, mask = inputs(rng)
    dec = rng.integers(3, V, size=(2, 23))
    dmask = np.ones((2, 23), np.int64)
    dmask[0, -4:] = 0
    kw = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        want = ref(
            input_ids=t(ids),
            attention_mask=t(mask),
            decoder_input_ids=t(dec),
            decoder_attention_mask=t(dmask),
            **kw,
        )
    got = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dmask, **kw)
    close(got.logits, want.logits)
    close(got.encoder_last_hidden_state, want.encoder_last_hidden_state)
    for field in (
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_attentions",
        "decoder_attentions",
    ):
        assert len(got[field]) == len(want[field]), field
        for a, b in zip(got[field], want[field]):
            if "attentions" in field and field.startswith("encoder"):
                b = b * t(mask[:, None, :, None])  # padded query rows: HF keeps their weights, unused
                a = a * mask[:, None, :, None]
            close(a, b)
    for a, b in zip(got.cross_attentions, want.cross_attentions):
        close(a, b)


def test_bart_model_shifts_input_ids(rng, tmp_path):
    """Without decoder_input_ids BartModel decodes input_ids shifted right (HF)."""
    ref, ours = build(tmp_path, "bart-scaled-relu", cls="BartModel")
    ids, mask = inputs(rng, S=31, pad=7)
    with torch.no_grad():
        want = ref(input_ids=t(ids), attention_mask=t(mask))
    got = ours(input_ids=ids, attention_mask=mask)
    close(got.last_hidden_state, want.last_hidden_state)
    close(got.encoder_last_hidden_state, want.encoder_last_hidden_state)


def test_cached_decoding_equals_full_forward(rng, tmp_path):
    _, ours = build(tmp_path, "bart-scaled-relu")
    ids, mask = inputs(rng, S=19, pad=5)
    dec = rng.integers(3, V, size=(2, 9))
    full = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    first = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec[:, :5], use_cache=True)
    cache = first.past_key_values
    assert isinstance(cache, models.seq2seq.EncoderDecoderCache) and cache.get_seq_length() == 5
    rest = ours(
        encoder_outputs=first.encoder_last_hidden_state,
        attention_mask=mask,
        decoder_input_ids=dec[:, 5:],
        past_key_values=cache,
    ).logits
    scale = np.abs(full).max()
    np.testing.assert_allclose(first.logits, full[:, :5], atol=2e-5 * scale)
    np.testing.assert_allclose(rest, full[:, 5:], atol=2e-5 * scale)


GREEDY = [
    dict(),
    dict(no_repeat_ngram_size=2),
    dict(forced_bos_token_id=0, forced_eos_token_id=2),
    dict(min_length=15),
    dict(min_new_tokens=12, no_repeat_ngram_size=3),
]


@pytest.mark.parametrize("kw", GREEDY)
def test_greedy_generation_matches_hf(rng, tmp_path, kw):
    ref, ours = build(tmp_path, "bart", spread=None)
    ids, mask = inputs(rng, S=29, pad=9)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=18, **kw)
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=18, **kw)
    if "forced_bos_token_id" in kw:
        assert (got[:, 1] == 0).all()
    # no eos: every row runs to the end
    free = ours.generate(ids, attention_mask=mask, max_new_tokens=18, eos_token_id=[], **kw)
    assert free.shape == (2, 19)
    if not kw:  # the test model is not trivial: row 1 varies (forced tokens may pin both rows)
        assert len(np.unique(free[:, 1:])) > 5
    if "no_repeat_ngram_size" in kw:
        n = kw["no_repeat_ngram_size"]
        for row in free:
            grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
            assert len(grams) == len(set(grams))
    assert_same_tokens(free, ref, ids, mask, max_new_tokens=18, eos_token_id=99 + V, **kw)


BEAMS = [
    dict(num_beams=4),
    dict(num_beams=4, no_repeat_ngram_size=3, length_penalty=2.0, min_length=10),
    dict(num_beams=3, forced_bos_token_id=0, forced_eos_token_id=2, early_stopping=True),
    dict(num_beams=3, min_new_tokens=6, length_penalty=0.5, num_return_sequences=2),
]


@pytest.mark.parametrize("kw", BEAMS)
def test_beam_search_matches_hf(rng, tmp_path, kw):
    ref, ours = build(tmp_path, "bart", spread=None)
    ids, mask = inputs(rng, S=29, pad=9)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=16, **kw)
    assert got.shape[0] == 2 * kw.get("num_return_sequences", 1)
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=16, **kw)


def test_checkpoint_generation_defaults(rng, tmp_path):
    """forced BOS/EOS and no_repeat_ngram_size stated by the checkpoint apply without
    arguments, as in HF; AutoModelForSeq2SeqLM loads the class."""
    ref, _ = build(tmp_path, "bart", spread=None)
    # transformers 5 keeps generation settings in generation_config.json only
    ref.generation_config.update(forced_bos_token_id=0, forced_eos_token_id=2, no_repeat_ngram_size=2)
    ref.generation_config.save_pretrained(tmp_path)
    ours = models.BartForConditionalGeneration.from_pretrained(tmp_path)
    ids, mask = inputs(rng, S=29, pad=9)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=12)
    assert (got[:, 1] == 0).all()
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=12)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=12, num_beams=3)
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=12, num_beams=3)
    auto = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert isinstance(auto, models.BartForConditionalGeneration)
    assert isinstance(tfcore.AutoModel.from_pretrained(tmp_path), models.BartModel)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_low_precision_load_and_run(rng, tmp_path, dtype):
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"no fast {dtype} matmul on this CPU")
    _, ours = build(tmp_path, "bart-scaled-relu")
    low = models.BartForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    ids, mask = inputs(rng, S=31, pad=7)
    dec = rng.integers(3, V, size=(2, 11))
    want = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    got = low(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    # bf16 (8-bit mantissa) or int8 (per-channel 8-bit) weights and GEMM inputs through 5 layers
    # of a random model whose logits span ~10: a few percent of the scale, argmax mostly kept
    assert np.abs(got - want).max() < 0.15 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.7
    out = low.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=2, no_repeat_ngram_size=2)
    assert out.shape[0] == 2 and out.shape[1] <= 7


def test_errors(rng, tmp_path):
    _, ours = build(tmp_path, "bart")
    ids, mask = inputs(rng, S=11, pad=3)
    with pytest.raises(tfcore.TfcoreValueError, match="position embeddings for 80"):
        ours(input_ids=np.full((1, 81), 5), decoder_input_ids=np.array([[2]]))
    with pytest.raises(tfcore.TfcoreValueError, match="position embeddings for 80"):
        ours.generate(np.full((1, 81), 5), max_new_tokens=2)
    with pytest.raises(tfcore.TfcoreValueError, match="max_new_tokens=81"):
        ours.generate(ids, max_new_tokens=81)
    with pytest.raises(tfcore.TfcoreValueError, match="outside"):
        ours(input_ids=np.array([[5, V]]), decoder_input_ids=np.array([[2]]))
    with pytest.raises(tfcore.TfcoreValueError, match="no_repeat_ngram_size"):
        ours.generate(ids, max_new_tokens=2, no_repeat_ngram_size=-1)
    with pytest.raises(tfcore.TfcoreValueError, match="min_length"):
        ours.generate(ids, max_new_tokens=2, min_length=1.5)
    with pytest.raises(tfcore.TfcoreValueError, match="forced_bos_token_id"):
        ours.generate(ids, max_new_tokens=2, forced_bos_token_id=V)
    with pytest.raises(tfcore.TfcoreValueError, match="forced_eos_token_id"):
        ours.generate(ids, max_new_tokens=2, forced_eos_token_id="2")
    with pytest.raises(tfcore.TfcoreValueError, match="cache_policy"):
        ours.generate(ids, max_new_tokens=2, cache_policy="sink_window", cache_budget=8)
    with pytest.raises(tfcore.TfcoreTypeError, match="EncoderDecoderCache"):
        ours(input_ids=ids, decoder_input_ids=ids, past_key_values=ours.new_cache(2))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(input_ids=ids, attention_mask=mask[:, :3], decoder_input_ids=ids)
