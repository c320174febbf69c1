"""mBART, Marian and Pegasus (BART's assembly with pre-norm / final norms / sinusoidal
positions) against Hugging Face: odd sizes (head_dim 5, ffn 37), right-padded batches;
forward logits, every hidden state and attention map; the Model class without
decoder_input_ids (each family's shift right); greedy and beam generate() token for token
with and without HF's constraints; bf16 / int8 load and run; Marian's separate decoder
vocabulary refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 5e-5  # relative to the output scale: float32 both sides through 2-3 layers

V = 97
SIZES = dict(
    vocab_size=V,
    d_model=20,
    encoder_layers=2,
    decoder_layers=3,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=29,
    max_position_embeddings=80,
    forced_eos_token_id=None,
    attn_implementation="eager",
)
FAMILIES = {  # HF config class, its model classes, special tokens (pad, eos, decoder start)
    "mbart": (
        "MBartConfig",
        "MBartModel",
        "MBartForConditionalGeneration",
        dict(pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, scale_embedding=True),
    ),
    "marian": (
        "MarianConfig",
        "MarianModel",
        "MarianMTModel",
        dict(pad_token_id=1, eos_token_id=2, decoder_start_token_id=1),
    ),
    "pegasus": (
        "PegasusConfig",
        "PegasusModel",
        "PegasusForConditionalGeneration",
        dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, scale_embedding=True),
    ),
}


def build(tmp_path, family, lm=True, gen=False, seed=0, **kw):
    """A tiny random HF model of the family saved to tmp_path, and tfcore's class of the same
    name. gen: untied head, small embeddings and biases, so that greedy decoding varies."""
    import transformers

    config_name, base, head, tokens = FAMILIES[family]
    if gen:
        kw.setdefault("tie_word_embeddings", False)
    torch.manual_seed(seed)
    cfg = getattr(transformers, config_name)(**{**SIZES, **tokens, **kw})
    cls = head if lm else base
    ref = getattr(transformers, cls)(cfg).eval()
    with torch.no_grad():
        for pname, p in ref.named_parameters():
            if "embed_positions" in pname and family != "mbart":
                continue  # the sinusoidal table
            if "norm" in pname:
                p.copy_((1 if pname.endswith("weight") else 0) + 0.2 * torch.randn_like(p))
                if gen and pname.endswith("bias"):
                    p.zero_()
            elif pname.endswith("bias"):
                p.normal_(0, 0.02 if gen else 0.2)
            else:
                embed = "shared" in pname or "embed" in pname
                p.normal_(0, p.shape[-1] ** -0.5 * ((0.3 if gen else 1.0) if embed else 1.5))
        if hasattr(ref, "final_logits_bias") and not gen:
            ref.final_logits_bias.normal_(0, 0.5)
    ref.save_pretrained(tmp_path)
    return ref, getattr(models, cls).from_pretrained(tmp_path)


def inputs(rng, family, B=2, S=37, pad=11):
    _, _, _, tokens = FAMILIES[family]
    ids = rng.integers(3, V, size=(B, S))
    ids[:, -1] = tokens["eos_token_id"]
    mask = np.ones((B, S), np.int64)
    if B > 1 and pad:
        mask[1, S - pad :] = 0
        ids[1, S - pad :] = tokens["pad_token_id"]
        ids[1, S - pad - 1] = tokens["eos_token_id"]
    return ids, mask


def t(a):
    return torch.from_numpy(np.asarray(a))


def close(got, want, tol=TOL):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert err < tol, err


def assert_same_tokens(got, ref, ids, mask, **kw):
    """got equals HF's generate(); where HF's float32 and float64 runs disagree it must equal
    one of them."""
    with torch.no_grad():
        want = ref.generate(t(ids), attention_mask=t(mask), do_sample=False, **kw).numpy()
        if np.array_equal(got, want):
            return
        exact = ref.double().generate(t(ids), attention_mask=t(mask), do_sample=False, **kw).numpy()
        ref.float()
    assert not np.array_equal(want, exact), f"tfcore differs from HF:\n{got}\n{want}"
    np.testing.assert_array_equal(got, exact)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_forward_matches_hf(rng, tmp_path, family):
    ref, ours = build(tmp_path, family)
    ids, mask = inputs(rng, family)
    dec = rng.integers(3, V, size=(2, 23))
    kw = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        want = ref(input_ids=t(ids), attention_mask=t(mask), decoder_input_ids=t(dec), **kw)
    got = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, **kw)
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
            if field == "encoder_attentions":  # padded query rows: HF keeps their weights, unused
                a, b = a * mask[:, None, :, None], b * t(mask[:, None, :, None])
            close(a, b)
    for a, b in zip(got.cross_attentions, want.cross_attentions):
        close(a, b)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_model_shifts_input_ids(rng, tmp_path, family):
    """Without decoder_input_ids mBART decodes input_ids shifted right with the language id
    wrapped to the front; Marian and Pegasus need decoder_input_ids, as in HF."""
    ref, ours = build(tmp_path, family, lm=False)
    ids, mask = inputs(rng, family, S=19, pad=5)
    if family != "mbart":
        with pytest.raises(tfcore.TfcoreValueError, match="decoder_input_ids is required"):
            ours(input_ids=ids, attention_mask=mask)
        return
    with torch.no_grad():
        want = ref(input_ids=t(ids), attention_mask=t(mask))
    close(ours(input_ids=ids, attention_mask=mask).last_hidden_state, want.last_hidden_state)


CASES = [
    dict(),
    dict(no_repeat_ngram_size=2, min_new_tokens=6),
    dict(num_beams=3),
    dict(num_beams=4, no_repeat_ngram_size=3, length_penalty=2.0, min_length=8),
]


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_generation_matches_hf(rng, tmp_path, family, kw):
    ref, ours = build(tmp_path, family, gen=True)
    ids, mask = inputs(rng, family, S=29, pad=9)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=14, **kw)
    assert_same_tokens(got, ref, ids, mask, max_new_tokens=14, **kw)
    assert got[0, 0] == FAMILIES[family][3]["decoder_start_token_id"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_low_precision_load_and_run(rng, tmp_path, family):
    _, ours = build(tmp_path, family)
    ids, mask = inputs(rng, family, S=23, pad=5)
    dec = rng.integers(3, V, size=(2, 9))
    want = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    ran = 0
    for dtype in ("bfloat16", "int8"):
        if dtype not in tfcore.supported_dtypes():
            continue
        low = type(ours).from_pretrained(tmp_path, dtype=dtype)
        got = low(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        # 8-bit mantissa (bf16) or 8-bit weights (int8) through 5 layers: a few % of the scale
        assert np.abs(got - want).max() < 0.15 * np.abs(want).max(), dtype
        assert low.generate(ids, attention_mask=mask, max_new_tokens=4, num_beams=2).shape[0] == 2
        ran += 1
    if not ran:
        pytest.skip("no fast bf16 or int8 matmul on this CPU")


def test_auto_classes_and_marian_separate_vocabulary(tmp_path):
    for family in FAMILIES:
        _, _, head, _ = FAMILIES[family]
        build(tmp_path / family, family)
        assert type(tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / family)).__name__ == head
    with pytest.raises(tfcore.CheckpointError, match="separate decoder vocabulary"):
        build(tmp_path / "split", "marian", share_encoder_decoder_embeddings=False, decoder_vocab_size=50)
