"""Encoder families against Hugging Face transformers (tiny random models written with
save_pretrained, loaded by tfcore): every hidden state, attention map, pooler and head.

Tolerances: float32 on both sides through 2-3 layers of width <= 60; observed max abs
differences are ~1e-6; 3e-5 (hidden states) and 1e-5 (probabilities) leave headroom
without hiding a wrong mask or a transposed weight (those change outputs by O(0.1))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 3e-5


def save(model, path):
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return path


def ids_and_mask(rng, vocab, B=3, T=97, lengths=(97, 7, 1), pad=0, low=3):
    ids = rng.integers(low, vocab, size=(B, T))
    mask = (np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, pad)
    return ids, mask


def compare(out, ref, mask, pooled=True, real_only=False):
    """All positions (the padded path computes padded rows like HF), or only the real
    tokens (padding-free path: padded rows are zeros there)."""
    sel = mask.astype(bool) if real_only else np.ones(mask.shape, bool)
    assert np.abs(out.last_hidden_state[sel] - ref.last_hidden_state.numpy()[sel]).max() < TOL
    assert len(out.hidden_states) == len(ref.hidden_states)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert np.abs(a[sel] - b.numpy()[sel]).max() < TOL
    for a, b in zip(out.get("attentions", ()), ref.attentions):
        assert a.shape == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() < 1e-5
    if pooled:
        assert np.abs(out.pooler_output - ref.pooler_output.numpy()).max() < TOL
    if real_only:
        assert np.all(out.last_hidden_state[~mask.astype(bool)] == 0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def bert_config(**kw):
    from transformers import BertConfig

    base = dict(
        vocab_size=101,
        hidden_size=60,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=97,
        max_position_embeddings=128,
        type_vocab_size=2,
        attn_implementation="eager",
    )
    base.update(kw)
    return BertConfig(**base)


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_bert_model(rng, tmp_path, act):
    from transformers import BertModel

    ref = BertModel(bert_config(hidden_act=act)).eval()
    path = save(ref, tmp_path)
    ours = models.BertModel.from_pretrained(path)
    ids, mask = ids_and_mask(rng, 101)
    tt = rng.integers(0, 2, size=ids.shape)
    out = ours(ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        want = ref(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(tt),
            output_hidden_states=True,
            output_attentions=True,
        )
    compare(out, want, mask)
    assert ours.unexpected_keys == []
    # padding-free path (default without output_attentions): the real tokens match HF
    packed = ours(ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    compare(packed, want, mask, real_only=True)
    padded = ours(ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True, padding_free=False)
    compare(padded, want, mask)


@pytest.mark.parametrize("T", [1, 7, 97])
def test_bert_lengths_and_auto(rng, tmp_path, T):
    from transformers import BertModel

    ref = BertModel(bert_config(hidden_size=48, num_attention_heads=3)).eval()
    path = save(ref, tmp_path)
    ours = tfcore.AutoModel.from_pretrained(path)
    assert isinstance(ours, models.BertModel)
    ids = rng.integers(0, 101, size=(2, T))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), output_hidden_states=True, output_attentions=True)
    compare(ours(ids, output_hidden_states=True, output_attentions=True), want, np.ones((2, T)))


def test_bert_heads(rng, tmp_path):
    from transformers import BertForMaskedLM, BertForSequenceClassification

    ids, mask = ids_and_mask(rng, 101, T=31, lengths=(31, 20, 5))
    mlm = BertForMaskedLM(bert_config()).eval()
    ours = models.BertForMaskedLM.from_pretrained(save(mlm, tmp_path / "mlm"))
    with torch.no_grad():
        want = mlm(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    got = ours(ids, attention_mask=mask).logits
    real = mask.astype(bool)  # padding-free: logits of padded positions are not computed like HF
    assert got.shape == (3, 31, 101) and np.abs(got[real] - want[real]).max() < 1e-4  # logits are O(1)-O(10)
    got = ours(ids, attention_mask=mask, padding_free=False).logits
    assert np.abs(got - want).max() < 1e-4

    cls = BertForSequenceClassification(bert_config(num_labels=3)).eval()
    ours = models.BertForSequenceClassification.from_pretrained(save(cls, tmp_path / "cls"))
    with torch.no_grad():
        want = cls(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    got = ours(ids, attention_mask=mask).logits
    assert got.shape == (3, 3) and np.abs(got - want).max() < TOL


@pytest.mark.parametrize("kind", ["roberta", "xlm-roberta"])
def test_roberta_positions_skip_padding(rng, tmp_path, kind):
    from transformers import RobertaConfig, RobertaModel, XLMRobertaConfig, XLMRobertaModel

    Cfg, Model = (RobertaConfig, RobertaModel) if kind == "roberta" else (XLMRobertaConfig, XLMRobertaModel)
    cfg = Cfg(
        vocab_size=99,
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=64,
        max_position_embeddings=100,
        type_vocab_size=1,
        pad_token_id=1,
        attn_implementation="eager",
    )
    ref = Model(cfg).eval()
    ours = tfcore.AutoModel.from_pretrained(save(ref, tmp_path))
    assert type(ours).__name__ == Model.__name__
    ids, mask = ids_and_mask(rng, 99, T=97, pad=1)
    with torch.no_grad():
        want = ref(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            output_hidden_states=True,
            output_attentions=True,
        )
    compare(ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True), want, mask)
    compare(ours(ids, attention_mask=mask, output_hidden_states=True), want, mask, real_only=True)


def test_distilbert(rng, tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(
        vocab_size=77,
        dim=60,
        n_layers=3,
        n_heads=3,
        hidden_dim=131,
        max_position_embeddings=128,
        attn_implementation="eager",
    )
    ref = DistilBertModel(cfg).eval()
    ours = tfcore.AutoModel.from_pretrained(save(ref, tmp_path))
    ids, mask = ids_and_mask(rng, 77)
    with torch.no_grad():
        want = ref(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            output_hidden_states=True,
            output_attentions=True,
        )
    compare(
        ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True),
        want,
        mask,
        pooled=False,
    )
    compare(
        ours(ids, attention_mask=mask, output_hidden_states=True), want, mask, pooled=False, real_only=True
    )


def test_padding_free_left_padding_and_empty_rows(rng, tmp_path):
    from transformers import BertModel

    ref = BertModel(bert_config()).eval()
    ours = models.BertModel.from_pretrained(save(ref, tmp_path))
    T = 40
    mask = np.ones((4, T), np.int64)
    mask[0, :31] = 0  # left padding
    mask[1, 10:20] = 0  # a hole
    mask[2, :] = 0  # nothing real
    ids = rng.integers(3, 101, size=(4, T))
    a = ours(ids, attention_mask=mask).last_hidden_state
    b = ours(ids, attention_mask=mask, padding_free=False).last_hidden_state
    real = mask.astype(bool)
    assert np.abs(a[real] - b[real]).max() < 1e-5  # same math on the real tokens
    assert np.all(a[~real] == 0)


def test_bad_inputs(rng, tmp_path):
    from transformers import BertModel

    ours = models.BertModel.from_pretrained(save(BertModel(bert_config()), tmp_path))
    with pytest.raises(tfcore.TfcoreValueError, match=r"input_ids holds 101, outside \[0, 101\)"):
        ours(np.array([[1, 101]]))
    with pytest.raises(tfcore.TfcoreTypeError, match="input_ids must hold integers"):
        ours(np.array([[1.0, 2.0]]))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(np.array([[1, 2]]), attention_mask=np.ones((1, 3)))
    with pytest.raises(tfcore.TfcoreValueError, match="exceeds max_position_embeddings=128"):
        ours(np.ones((1, 129), np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        ours(np.zeros((1, 0), np.int64))


def test_bf16_checkpoint_and_unexpected_keys(rng, tmp_path, caplog):
    from transformers import BertModel

    ref = BertModel(bert_config()).eval()
    ref.to(torch.bfloat16).save_pretrained(tmp_path)  # weights stored as BF16
    ours = models.BertModel.from_pretrained(tmp_path)  # converted to float32 in C
    ref32 = BertModel.from_pretrained(tmp_path, dtype=torch.float32, attn_implementation="eager").eval()
    ids = rng.integers(0, 101, size=(2, 9))
    with torch.no_grad():
        want = ref32(torch.from_numpy(ids)).last_hidden_state.numpy()
    assert np.abs(ours(ids).last_hidden_state - want).max() < TOL
    # a tensor the model does not use is reported, not fatal
    from tfcore.safetensors import SafetensorsFile, save_file

    f = SafetensorsFile(tmp_path / "model.safetensors")
    tensors = {k: f.float32(k) if f.info(k).dtype == "BF16" else f.raw(k).copy() for k in f.keys()}
    tensors["extra.head.weight"] = np.zeros((2, 2), np.float32)
    del f
    save_file(tensors, tmp_path / "model.safetensors")
    with caplog.at_level("WARNING", logger="tfcore"):
        ours = models.BertModel.from_pretrained(tmp_path)
    assert ours.unexpected_keys == ["extra.head.weight"]
    assert "extra.head.weight" in caplog.text


def test_pickle_by_path_and_repr(rng, tmp_path):
    import multiprocessing as mp
    import pickle

    from transformers import BertModel

    path = save(BertModel(bert_config()), tmp_path)
    ours = models.BertModel.from_pretrained(path)
    blob = pickle.dumps(ours)
    assert len(blob) < 4096  # the path and dtype, not the weights
    ids = rng.integers(0, 101, size=(2, 9))
    again = pickle.loads(blob)
    assert np.array_equal(again(ids).last_hidden_state, ours(ids).last_hidden_state)
    # and in a fresh process (spawn: libgomp is not fork-safe)
    with mp.get_context("spawn").Pool(1) as pool:
        out = pool.apply(_run_pickled, (blob, ids, tfcore.get_num_threads()))
    assert np.array_equal(out, ours(ids).last_hidden_state)
    assert "BertModel(model_type='bert'" in repr(ours) and "parameters=" in repr(ours)
    assert "<table>" in ours._repr_html_() and ours.num_parameters() > 0


def _run_pickled(blob, ids, threads):
    import pickle

    import tfcore

    # the parent's explicit thread count (conftest): with the default, the child would use the
    # CPUs other processes leave free, and another split of the work rounds differently
    tfcore.set_num_threads(threads)
    return pickle.loads(blob)(ids).last_hidden_state
