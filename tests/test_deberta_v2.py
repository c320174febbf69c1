"""DeBERTa-v2/v3 (DebertaV2Model, ...ForSequenceClassification, ...ForTokenClassification)
against Hugging Face in eval mode: tiny random checkpoints with odd sizes, every hidden state,
attention map and head; lengths past the bucket range; padded batches; bf16/int8.

Tolerance: 1e-4 relative to the largest |value| of each compared tensor (the issue's bar).
float32 GEMMs over C <= 52 terms and LayerNorms give errors of a few 1e-7 here; the weights
are drawn with std 0.3 so the attention is far from uniform and a wrong bias shows up."""

import numpy as np
import pytest
import torch

import tfcore
from tfcore.safetensors import CheckpointError

transformers = pytest.importorskip("transformers")

BASE = dict(
    vocab_size=97,
    hidden_size=36,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=52,
    max_position_embeddings=128,
    relative_attention=True,
    position_buckets=8,
    max_relative_positions=20,
    pos_att_type=["p2c", "c2p"],
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    position_biased_input=False,
    type_vocab_size=0,
    hidden_act="gelu",
)

# DeBERTa-v3's settings, and the variations of the config keys HF reads
CONFIGS = {
    "v3": {},
    "separate_pos_proj": dict(share_att_key=False),
    "c2p_only": dict(pos_att_type=["c2p"], share_att_key=False),
    "p2c_only": dict(pos_att_type="p2c"),
    "no_buckets": dict(position_buckets=-1, max_relative_positions=24),
    "v2_style": dict(
        position_biased_input=True,
        type_vocab_size=2,
        norm_rel_ebd="none",
        embedding_size=28,
        position_buckets=-1,
        max_relative_positions=-1,
    ),
    "no_relative": dict(relative_attention=False),
}


def save(path, cls=transformers.DebertaV2Model, seed=0, **over):
    torch.manual_seed(seed)
    cfg = transformers.DebertaV2Config(**{**BASE, **over})
    m = cls(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    m.save_pretrained(path)
    return m


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def compare_real(got, ref, mask):
    """Compare at real (unpadded) tokens; padded ones differ by design (deberta_v2.py)."""
    m = mask.astype(bool)
    return rel_err(got[m], ref[m])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_matches_hf(tmp_path, name):
    ref_model = save(tmp_path, **CONFIGS[name])
    model = tfcore.AutoModel.from_pretrained(tmp_path)
    assert type(model).__name__ == "DebertaV2Model"
    rng = np.random.default_rng(1)
    T = 61  # past the bucket range: |i - j| up to 60 > max_relative_positions=20
    ids = rng.integers(0, 97, (2, T))
    mask = np.ones((2, T), np.int64)
    mask[1, 40:] = 0
    kw = {}
    if CONFIGS[name].get("type_vocab_size"):
        kw["token_type_ids"] = (np.arange(T) >= 20).astype(np.int64)[None].repeat(2, 0)
    with torch.no_grad():
        ref = ref_model(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            output_hidden_states=True,
            output_attentions=True,
            **{k: torch.tensor(v) for k, v in kw.items()},
        )
    out = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, **kw)
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for got, want in zip(out.hidden_states, ref.hidden_states):
        assert compare_real(got, want.numpy(), mask) <= 1e-4
    assert compare_real(out.last_hidden_state, ref.last_hidden_state.numpy(), mask) <= 1e-4
    for got, want in zip(out.attentions, ref.attentions):
        want = want.numpy()
        # rows of real queries; their weights on padded keys are 0 in both
        assert np.abs(got[0] - want[0]).max() <= 1e-4
        assert np.abs(got[1, :, :40] - want[1, :, :40]).max() <= 1e-4


def test_unpadded_batch_and_single_row_equal(tmp_path):
    """The same sequence alone and in a padded batch gives the same hidden states."""
    save(tmp_path)
    model = tfcore.models.DebertaV2Model.from_pretrained(tmp_path)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 97, 50), rng.integers(0, 97, 33)
    ids = np.zeros((2, 50), np.int64)
    ids[0], ids[1, :33] = a, b
    mask = np.zeros((2, 50), np.int64)
    mask[0], mask[1, :33] = 1, 1
    batch = model(ids, attention_mask=mask).last_hidden_state
    alone = model(b[None]).last_hidden_state
    assert rel_err(batch[1, :33], alone[0]) <= 1e-5


def test_long_input_past_buckets(tmp_path):
    """DeBERTa-v3's buckets (256 over 512) on a 600-token input: no (H, L, L) bias is built."""
    ref_model = save(
        tmp_path,
        position_buckets=32,
        max_relative_positions=128,
        max_position_embeddings=1024,
        num_hidden_layers=1,
    )
    model = tfcore.AutoModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(4).integers(0, 97, (1, 600))
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids)).last_hidden_state.numpy()
    assert rel_err(model(ids).last_hidden_state, ref) <= 1e-4


@pytest.mark.parametrize("task", ["sequence", "token"])
def test_heads_match_hf(tmp_path, task):
    cls = {
        "sequence": transformers.DebertaV2ForSequenceClassification,
        "token": transformers.DebertaV2ForTokenClassification,
    }[task]
    id2label = {0: "neg", 1: "neutral", 2: "pos"}
    ref_model = save(
        tmp_path, cls=cls, num_labels=3, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    auto = {
        "sequence": tfcore.AutoModelForSequenceClassification,
        "token": tfcore.AutoModelForTokenClassification,
    }[task]
    model = auto.from_pretrained(tmp_path)
    assert type(model).__name__ == cls.__name__
    assert model.id2label == id2label
    ids = np.random.default_rng(5).integers(0, 97, (2, 29))
    mask = np.ones_like(ids)
    mask[0, 20:] = 0
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    got = model(ids, attention_mask=mask).logits
    assert got.shape == ref.shape
    if task == "sequence":
        assert rel_err(got, ref) <= 1e-4
    else:
        assert compare_real(got, ref, mask) <= 1e-4


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("int8", 0.1)])
def test_bf16_and_int8_close_to_float32(tmp_path, dtype, tol):
    """bf16 keeps 8 mantissa bits, int8 weights 7: closeness to the float32 model relative to
    the largest |value| (not 1e-4: the rounding of every projection adds up over layers)."""
    save(tmp_path, cls=transformers.DebertaV2ForSequenceClassification, num_labels=4)
    ids = np.random.default_rng(6).integers(0, 97, (2, 40))
    ref = tfcore.AutoModelForSequenceClassification.from_pretrained(tmp_path)(ids).logits
    low = tfcore.AutoModelForSequenceClassification.from_pretrained(tmp_path, dtype=dtype)
    got = low(ids).logits
    assert np.isfinite(got).all()
    assert rel_err(got, ref) <= tol


def test_refuses_unsupported_configs(tmp_path):
    save(tmp_path, conv_kernel_size=3)
    with pytest.raises(CheckpointError, match="conv_kernel_size"):
        tfcore.AutoModel.from_pretrained(tmp_path)


def test_bad_inputs(tmp_path):
    save(tmp_path)
    model = tfcore.AutoModel.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreError, match="outside"):
        model(np.array([[1, 200]]))
    with pytest.raises(tfcore.TfcoreError, match="attention_mask"):
        model(np.array([[1, 2, 3]]), attention_mask=np.ones((1, 2)))
    with pytest.raises(tfcore.TfcoreError, match="integers"):
        model(np.array([[1.5, 2.0]]))


def test_question_answering_matches_hf(tmp_path):
    ref_model = save(tmp_path, cls=transformers.DebertaV2ForQuestionAnswering, num_labels=2)
    model = tfcore.AutoModelForQuestionAnswering.from_pretrained(tmp_path)
    assert type(model).__name__ == "DebertaV2ForQuestionAnswering"
    ids = np.random.default_rng(7).integers(0, 97, (2, 31))
    mask = np.ones_like(ids)
    mask[1, 23:] = 0
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    for name in ("start_logits", "end_logits"):
        got, want = out[name], getattr(ref, name).numpy()
        assert got.shape == want.shape == (2, 31)
        assert compare_real(got, want, mask) <= 1e-4
    assert compare_real(out.hidden_states[-1], ref.hidden_states[-1].numpy(), mask) <= 1e-4


def test_question_answering_needs_two_labels(tmp_path):
    save(tmp_path, cls=transformers.DebertaV2ForQuestionAnswering, num_labels=3)
    with pytest.raises(CheckpointError, match="num_labels=2"):
        tfcore.models.DebertaV2ForQuestionAnswering.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "over",
    [
        dict(legacy=True),  # cls.predictions, decoder tied to the word embeddings
        dict(legacy=True, embedding_size=28, position_buckets=-1, max_relative_positions=-1),
        dict(legacy=True, tie_word_embeddings=False),  # the checkpoint's own decoder
        dict(legacy=False),  # lm_predictions.lm_head: word embeddings transposed
    ],
    ids=["legacy", "legacy_embedding_size", "legacy_untied", "lm_head"],
)
def test_masked_lm_matches_hf(tmp_path, over):
    ref_model = save(tmp_path, cls=transformers.DebertaV2ForMaskedLM, **over)
    with torch.no_grad():  # HF initialises the head biases to zero: make them count
        for name, p in ref_model.named_parameters():
            if name.endswith("bias") and ("cls." in name or "lm_predictions." in name):
                p.normal_(0, 0.5)
    ref_model.save_pretrained(tmp_path)
    model = tfcore.models.DebertaV2ForMaskedLM.from_pretrained(tmp_path)
    assert model.legacy == over["legacy"]
    ids = np.random.default_rng(8).integers(0, 97, (2, 37))
    mask = np.ones_like(ids)
    mask[0, 30:] = 0
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    got = model(ids, attention_mask=mask).logits
    assert got.shape == ref.shape == (2, 37, 97)
    assert compare_real(got, ref, mask) <= 1e-4


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("int8", 0.2)])
@pytest.mark.parametrize("cls", ["DebertaV2ForQuestionAnswering", "DebertaV2ForMaskedLM"])
def test_new_heads_bf16_and_int8(tmp_path, cls, dtype, tol):
    """The new heads load and run at low precision, close to their float32 selves (bounds as
    test_bf16_and_int8_close_to_float32; int8 0.2: the MLM decoder quantizes the word
    embeddings too, and its 97 logits per token sum 36 rounded products each; measured 0.15)."""
    kw = dict(num_labels=2) if cls.endswith("Answering") else {}
    save(tmp_path, cls=getattr(transformers, cls), **kw)
    ids = np.random.default_rng(9).integers(0, 97, (2, 40))
    ours = getattr(tfcore.models, cls)
    ref = ours.from_pretrained(tmp_path)(ids)
    got = ours.from_pretrained(tmp_path, dtype=dtype)(ids)
    for name in ("start_logits", "end_logits") if kw else ("logits",):
        assert np.isfinite(got[name]).all()
        assert rel_err(got[name], ref[name]) <= tol
