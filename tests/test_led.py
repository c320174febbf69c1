"""LED against Hugging Face: odd sizes (head_dim 5, ffn 37 / 29, 2 encoder and 3 decoder
layers with different attention windows), inputs longer than the window and not a multiple of
it, right-padded batches, global tokens (none, one per row, different counts per row);
LEDModel and LEDForConditionalGeneration forwards with hidden states, local / global / cross
attentions; the shifted default decoder input; greedy and beam generate() token for token
with global_attention_mask; bf16 / int8 load and run; errors."""

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
    max_encoder_position_embeddings=160,
    max_decoder_position_embeddings=40,
    # HF pads the input to a multiple of the largest window, which every layer's window must
    # divide: 8 and 16 (one-sided 4 and 8)
    attention_window=[8, 16],
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    decoder_start_token_id=2,
    attn_implementation="eager",
)


def build(tmp_path, cls="LEDForConditionalGeneration", seed=0, gen=False, dtype="float32", **kw):
    """A tiny random HF LED saved to tmp_path and tfcore's class of the same name loaded from
    it. gen=True: the generation model (untied head, small embeddings, zero norm biases;
    HF's initialisation makes random LEDs repeat one token)."""
    import transformers

    if gen:
        kw.setdefault("tie_word_embeddings", False)
    torch.manual_seed(seed)
    cfg = transformers.LEDConfig(**{**BASE, **kw})
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
                p.normal_(0, p.shape[-1] ** -0.5 * (0.3 if gen and embed else 1.0))
        if hasattr(ref, "final_logits_bias"):
            ref.final_logits_bias.normal_(0, 0.0 if gen else 0.5)
    ref.save_pretrained(tmp_path)
    return ref, getattr(models, cls).from_pretrained(tmp_path, dtype=dtype)


def inputs(rng, B=2, S=53, pad=17):
    """(ids, mask, global mask): row 1 right-padded by pad; globals at token 0 of every row
    and token 17 of row 0 (different counts per row)."""
    ids = rng.integers(3, V, size=(B, S))
    ids[:, -1] = 2
    mask = np.ones((B, S), np.int64)
    if B > 1 and pad:
        mask[1, S - pad :] = 0
        ids[1, S - pad :] = 1
        ids[1, S - pad - 1] = 2
    glob = np.zeros((B, S), np.int64)
    glob[:, 0] = 1
    if S > 17:
        glob[0, 17] = 1
    return ids, mask, glob


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


@pytest.mark.parametrize("S, use_global", [(53, True), (53, False), (16, True), (7, False)])
def test_conditional_generation_forward(rng, tmp_path, S, use_global):
    """Every output within TOL of HF's; S=53 is past both windows and not a multiple of
    either, 16 equals the largest, 7 is shorter than both."""
    ref, ours = build(tmp_path)
    ids, mask, glob = inputs(rng, S=S, pad=min(17, S // 2))
    if not use_global:
        glob = None
    dec = rng.integers(3, V, size=(2, 23))
    dmask = np.ones((2, 23), np.int64)
    dmask[0, -4:] = 0
    kw = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        want = ref(
            input_ids=t(ids),
            attention_mask=t(mask),
            global_attention_mask=None if glob is None else t(glob),
            decoder_input_ids=t(dec),
            decoder_attention_mask=t(dmask),
            **kw,
        )
    got = ours(
        input_ids=ids,
        attention_mask=mask,
        global_attention_mask=glob,
        decoder_input_ids=dec,
        decoder_attention_mask=dmask,
        **kw,
    )
    close(got.logits, want.logits)
    close(got.encoder_last_hidden_state, want.encoder_last_hidden_state)
    real = mask.astype(bool)
    for field in (
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_attentions",
        "decoder_attentions",
    ):
        assert len(got[field]) == len(want[field]), field
        for a, b in zip(got[field], want[field]):
            if field == "encoder_attentions":  # padded query rows: HF keeps weights nobody uses
                b = b * t(real[:, None, :, None])
                a = a * real[:, None, :, None]
            if field == "encoder_hidden_states":  # padding rows are computed but never read
                b = b * t(real[:, :, None])
                a = a * real[:, :, None]
            close(a, b)
    for a, b in zip(got.cross_attentions, want.cross_attentions):
        close(a, b)
    if use_global:
        assert len(got.encoder_global_attentions) == len(want.encoder_global_attentions) == 2
        for a, b in zip(got.encoder_global_attentions, want.encoder_global_attentions):
            close(a, b)  # (B, H, T', G): each global token's weights over every key
    else:
        assert "encoder_global_attentions" not in got


def test_led_model_shifts_input_ids_and_takes_encoder_outputs(rng, tmp_path):
    """Without decoder_input_ids LEDModel decodes input_ids shifted right (HF); encoder_outputs
    skips the encoder."""
    ref, ours = build(tmp_path, cls="LEDModel")
    ids, mask, glob = inputs(rng, S=37, pad=7)  # the shifted input fits the decoder's 40 positions
    with torch.no_grad():
        want = ref(input_ids=t(ids), attention_mask=t(mask), global_attention_mask=t(glob))
    got = ours(input_ids=ids, attention_mask=mask, global_attention_mask=glob)
    close(got.last_hidden_state, want.last_hidden_state)
    close(got.encoder_last_hidden_state, want.encoder_last_hidden_state)
    dec = rng.integers(3, V, size=(2, 5))
    again = ours(encoder_outputs=got.encoder_last_hidden_state, attention_mask=mask, decoder_input_ids=dec)
    with torch.no_grad():
        want = ref(
            input_ids=t(ids), attention_mask=t(mask), global_attention_mask=t(glob), decoder_input_ids=t(dec)
        )
    close(again.last_hidden_state, want.last_hidden_state)
    assert isinstance(tfcore.AutoModel.from_pretrained(tmp_path), models.LEDModel)


def test_cached_decoding_equals_full_forward(rng, tmp_path):
    _, ours = build(tmp_path)
    ids, mask, glob = inputs(rng, S=37, pad=5)
    dec = rng.integers(3, V, size=(2, 9))
    full = ours(input_ids=ids, attention_mask=mask, global_attention_mask=glob, decoder_input_ids=dec).logits
    first = ours(
        input_ids=ids,
        attention_mask=mask,
        global_attention_mask=glob,
        decoder_input_ids=dec[:, :5],
        use_cache=True,
    )
    rest = ours(
        encoder_outputs=first.encoder_last_hidden_state,
        attention_mask=mask,
        decoder_input_ids=dec[:, 5:],
        past_key_values=first.past_key_values,
    ).logits
    scale = np.abs(full).max()
    np.testing.assert_allclose(first.logits, full[:, :5], atol=2e-5 * scale)
    np.testing.assert_allclose(rest, full[:, 5:], atol=2e-5 * scale)


GENERATE = [
    dict(),
    dict(no_repeat_ngram_size=2, min_new_tokens=8),
    dict(num_beams=4),
    dict(num_beams=3, no_repeat_ngram_size=3, length_penalty=2.0, num_return_sequences=2),
]


@pytest.mark.parametrize("kw", GENERATE)
@pytest.mark.parametrize("use_global", [True, False])
def test_generation_matches_hf(rng, tmp_path, kw, use_global):
    """Greedy and beam search token for token on a padded batch of 45 tokens (past both
    windows, a multiple of neither), with and without global tokens."""
    ref, ours = build(tmp_path, gen=True)
    ids, mask, glob = inputs(rng, S=45, pad=11)
    extra = dict(global_attention_mask=glob) if use_global else {}
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=14, **extra, **kw)
    assert got.shape[0] == 2 * kw.get("num_return_sequences", 1)
    hf_extra = {k: t(v) for k, v in extra.items()}
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=14, **hf_extra, **kw)
    if not kw:  # the test model is not trivial: it runs without end of sequence and varies
        free = ours.generate(ids, attention_mask=mask, max_new_tokens=14, eos_token_id=[], **extra)
        assert len(np.unique(free[:, 1:])) > 5
        assert_same_tokens(free, ref, ids, mask, max_new_tokens=14, eos_token_id=V + 5, **hf_extra)


def test_global_tokens_change_the_output(rng, tmp_path):
    """global_attention_mask reaches the encoder in generate() (a token far outside every
    window becomes visible), and a 1-D input with a 1-D mask is one batch row."""
    _, ours = build(tmp_path)
    ids, _, glob = inputs(rng, B=1, S=90, pad=0)
    a = ours(input_ids=ids, decoder_input_ids=np.array([[2]])).encoder_last_hidden_state
    b = ours(
        input_ids=ids, global_attention_mask=glob, decoder_input_ids=np.array([[2]])
    ).encoder_last_hidden_state
    assert np.abs(a - b)[0, 40:].max() > 1e-3
    one = ours.generate(ids[0], global_attention_mask=glob[0], max_new_tokens=5)
    two = ours.generate(ids, global_attention_mask=glob, max_new_tokens=5)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_low_precision_load_and_run(rng, tmp_path, dtype):
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"no fast {dtype} matmul on this CPU")
    _, ours = build(tmp_path)
    low = models.LEDForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    ids, mask, glob = inputs(rng, S=31, pad=7)
    dec = rng.integers(3, V, size=(2, 11))
    want = ours(input_ids=ids, attention_mask=mask, global_attention_mask=glob, decoder_input_ids=dec).logits
    got = low(input_ids=ids, attention_mask=mask, global_attention_mask=glob, decoder_input_ids=dec).logits
    # bf16 (8-bit mantissa) or int8 (per-channel 8-bit) weights and GEMM inputs through 5 layers
    # of a random model whose logits span ~10: a few percent of the scale, argmax mostly kept
    assert np.abs(got - want).max() < 0.15 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.7
    out = low.generate(ids, attention_mask=mask, global_attention_mask=glob, max_new_tokens=6, num_beams=2)
    assert out.shape[0] == 2 and out.shape[1] <= 7


def test_errors(rng, tmp_path):
    _, ours = build(tmp_path)
    ids, mask, glob = inputs(rng, S=11, pad=3)
    dec = np.array([[2], [2]])
    with pytest.raises(tfcore.TfcoreValueError, match="position embeddings for 160"):
        ours(input_ids=np.full((1, 161), 5), decoder_input_ids=np.array([[2]]))
    with pytest.raises(tfcore.TfcoreValueError, match="position embeddings for 160"):
        ours.generate(np.full((1, 161), 5), max_new_tokens=2)
    # the encoder reads up to 160 tokens, the decoder 40
    assert ours.generate(np.full((1, 120), 5), max_new_tokens=2).shape == (1, 3)
    with pytest.raises(tfcore.TfcoreValueError, match="max_new_tokens=41"):
        ours.generate(ids, max_new_tokens=41)
    with pytest.raises(tfcore.TfcoreValueError, match="global_attention_mask has shape"):
        ours(input_ids=ids, global_attention_mask=glob[:, :3], decoder_input_ids=dec)
    with pytest.raises(tfcore.TfcoreValueError, match="global_attention_mask has shape"):
        ours.generate(ids, global_attention_mask=glob[:1], max_new_tokens=2)
    with pytest.raises(tfcore.TfcoreTypeError, match="global_attention_mask must hold 0/1"):
        ours(input_ids=ids, global_attention_mask=glob.astype(str), decoder_input_ids=dec)
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(input_ids=ids, attention_mask=mask[:, :3], decoder_input_ids=dec)
    with pytest.raises(tfcore.TfcoreValueError, match="cache_policy"):
        ours.generate(ids, max_new_tokens=2, cache_policy="sink_window", cache_budget=8)
    # a failed call leaves no global mask behind for the next one
    a = ours.generate(ids, max_new_tokens=3)
    with pytest.raises(tfcore.TfcoreValueError):
        ours.generate(ids, global_attention_mask=glob, max_new_tokens=-1)
    np.testing.assert_array_equal(ours.generate(ids, max_new_tokens=3), a)
