"""Task heads on the encoder families (sequence classification, token classification,
question answering) and the camembert alias, against Hugging Face transformers: tiny random
models with odd sizes written with save_pretrained, loaded through the Auto classes.

Tolerances: float32 on both sides through 2 layers of width <= 60; heads are one or two
small GEMMs on top, logits are O(0.1)-O(1). Observed max abs differences ~1e-6; 3e-5 leaves
headroom without hiding a wrong weight, activation or token position (those move logits by
O(0.1)). bfloat16 / int8: weights rounded to 8 / 7 bits, so the check is closeness to the
float32 logits relative to their spread (0.05 bf16, 0.1 int8 of max |logit|)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 3e-5
T = 23  # odd sequence length; rows padded to 23, 11 and 4 tokens


def _bert(**kw):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=101,
        hidden_size=60,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=97,
        max_position_embeddings=64,
        attn_implementation="eager",
        **kw,
    )


def _roberta(cls_name="RobertaConfig", **kw):
    import transformers

    return getattr(transformers, cls_name)(
        vocab_size=99,
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=67,
        max_position_embeddings=64,
        type_vocab_size=1,
        pad_token_id=1,
        attn_implementation="eager",
        **kw,
    )


def _distilbert(**kw):
    from transformers import DistilBertConfig

    return DistilBertConfig(
        vocab_size=77,
        dim=60,
        n_layers=2,
        n_heads=3,
        hidden_dim=131,
        max_position_embeddings=64,
        attn_implementation="eager",
        **kw,
    )


def _big_bird(**kw):
    from transformers import BigBirdConfig

    return BigBirdConfig(
        vocab_size=61,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=61,
        max_position_embeddings=64,
        hidden_act="gelu_new",  # the sequence head applies hidden_act: a non-default one shows it
        attention_type="original_full",
        sep_token_id=3,
        attn_implementation="eager",
        **kw,
    )


def _longformer(**kw):
    from transformers import LongformerConfig

    return LongformerConfig(
        vocab_size=101,
        hidden_size=60,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=97,
        max_position_embeddings=64,
        attention_window=[8, 4],
        sep_token_id=2,
        attn_implementation="eager",
        **kw,
    )


def _electra(**kw):
    from transformers import ElectraConfig

    # embedding_size != hidden_size: the embeddings_project path
    return ElectraConfig(
        vocab_size=97,
        embedding_size=28,
        hidden_size=44,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=71,
        max_position_embeddings=64,
        attn_implementation="eager",
        **kw,
    )


def _albert(**kw):
    from transformers import AlbertConfig

    # 3 layers over 2 groups of 2 inner layers: HF's group arithmetic and sharing both matter
    return AlbertConfig(
        vocab_size=89,
        embedding_size=20,
        hidden_size=36,
        num_hidden_layers=3,
        num_hidden_groups=2,
        inner_group_num=2,
        num_attention_heads=3,
        intermediate_size=53,
        max_position_embeddings=64,
        attn_implementation="eager",
        **kw,
    )


def _mpnet(**kw):
    from transformers import MPNetConfig

    return MPNetConfig(
        vocab_size=83,
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=67,
        max_position_embeddings=64,
        attn_implementation="eager",
        **kw,
    )


# (HF class, config factory, pad id, extra vocabulary floor)
CASES = {
    "BertForTokenClassification": (_bert, 0),
    "BertForQuestionAnswering": (_bert, 0),
    "RobertaForSequenceClassification": (_roberta, 1),
    "RobertaForTokenClassification": (_roberta, 1),
    "RobertaForQuestionAnswering": (_roberta, 1),
    "XLMRobertaForSequenceClassification": (lambda **kw: _roberta("XLMRobertaConfig", **kw), 1),
    "XLMRobertaForTokenClassification": (lambda **kw: _roberta("XLMRobertaConfig", **kw), 1),
    "XLMRobertaForQuestionAnswering": (lambda **kw: _roberta("XLMRobertaConfig", **kw), 1),
    "CamembertForSequenceClassification": (lambda **kw: _roberta("CamembertConfig", **kw), 1),
    "CamembertForTokenClassification": (lambda **kw: _roberta("CamembertConfig", **kw), 1),
    "CamembertForQuestionAnswering": (lambda **kw: _roberta("CamembertConfig", **kw), 1),
    "DistilBertForSequenceClassification": (_distilbert, 0),
    "DistilBertForTokenClassification": (_distilbert, 0),
    "DistilBertForQuestionAnswering": (_distilbert, 0),
    "BigBirdForSequenceClassification": (_big_bird, 0),
    "BigBirdForTokenClassification": (_big_bird, 0),
    "LongformerForSequenceClassification": (_longformer, 1),
    "LongformerForTokenClassification": (_longformer, 1),
    "LongformerForQuestionAnswering": (_longformer, 1),
    "ElectraForSequenceClassification": (_electra, 0),
    "ElectraForTokenClassification": (_electra, 0),
    "ElectraForQuestionAnswering": (_electra, 0),
    "AlbertForSequenceClassification": (_albert, 0),
    "AlbertForTokenClassification": (_albert, 0),
    "AlbertForQuestionAnswering": (_albert, 0),
    "MPNetForSequenceClassification": (_mpnet, 1),
    "MPNetForTokenClassification": (_mpnet, 1),
    "MPNetForQuestionAnswering": (_mpnet, 1),
}

AUTO = {
    "SequenceClassification": tfcore.AutoModelForSequenceClassification,
    "TokenClassification": tfcore.AutoModelForTokenClassification,
    "QuestionAnswering": tfcore.AutoModelForQuestionAnswering,
}


def _task(name):
    return next(t for t in AUTO if name.endswith(t))


def _build(name, path, **kw):
    import transformers

    make, pad = CASES[name]
    if _task(name) != "QuestionAnswering":
        kw.setdefault("num_labels", 5 if _task(name) == "TokenClassification" else 3)
    torch.manual_seed(0)
    ref = getattr(transformers, name)(make(**kw)).eval()
    ref.save_pretrained(path, safe_serialization=True)
    return ref, pad


def _inputs(rng, ref, pad, longformer_qa=False):
    V = ref.config.vocab_size
    lengths = np.array([T, 11, 4])
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(3, V, size=(3, T))
    if longformer_qa:  # question </s></s> context </s>: HF's default global mask needs three seps
        sep = ref.config.sep_token_id
        for row, n in enumerate(lengths):
            ids[row, [1, 2, n - 1]] = sep
    return np.where(mask == 1, ids, pad), mask


def _fields(out):
    return {k: v for k, v in out.items() if k.endswith("logits")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_head_matches_hf(rng, tmp_path, name):
    ref, pad = _build(name, tmp_path)
    ours = AUTO[_task(name)].from_pretrained(tmp_path)
    assert type(ours).__name__ == name and ours.unexpected_keys == []
    ids, mask = _inputs(rng, ref, pad, longformer_qa=name == "LongformerForQuestionAnswering")
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True)
    real = mask.astype(bool)
    per_token = _task(name) != "SequenceClassification"
    kwargs = {} if name.startswith("Longformer") else dict(padding_free=False)
    # every position computed like HF (padded path)
    got = ours(ids, attention_mask=mask, output_hidden_states=True, **kwargs)
    assert set(_fields(got)) == {k for k in want.keys() if k.endswith("logits")}
    for key, value in _fields(got).items():
        assert value.shape == tuple(want[key].shape), key
        assert np.abs(value - want[key].numpy()).max() < TOL, key
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert np.abs(a - b.numpy()).max() < TOL
    if not name.startswith("Longformer"):
        # padding-free default: the real tokens (and the first-token classifiers) equal HF
        fast = ours(ids, attention_mask=mask)
        for key, value in _fields(fast).items():
            sel = real if per_token else slice(None)
            assert np.abs(value[sel] - want[key].numpy()[sel]).max() < TOL, key
    # one unpadded row alone equals its row of the batch
    alone = ours(ids[1:2, :11])
    for key, value in _fields(alone).items():
        row = _fields(got)[key][1, :11] if per_token else _fields(got)[key][1]
        assert np.abs(value[0] - row).max() < TOL, key


@pytest.mark.parametrize(
    "name",
    [
        "RobertaForSequenceClassification",
        "DistilBertForTokenClassification",
        "BertForQuestionAnswering",
        "ElectraForSequenceClassification",
        "AlbertForTokenClassification",
        "MPNetForQuestionAnswering",
    ],
)
@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("int8", 0.1)])
def test_heads_in_bf16_and_int8(rng, tmp_path, name, dtype, tol):
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} is not supported on this CPU")
    ref, pad = _build(name, tmp_path)
    ids, mask = _inputs(rng, ref, pad)
    full = AUTO[_task(name)].from_pretrained(tmp_path)
    low = AUTO[_task(name)].from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    a, b = _fields(full(ids, attention_mask=mask)), _fields(low(ids, attention_mask=mask))
    real = mask.astype(bool)
    for key in a:
        sel = real if a[key].ndim == 2 and _task(name) != "SequenceClassification" else slice(None)
        x, y = a[key][sel], b[key][sel]
        assert np.isfinite(y).all()
        assert np.abs(x - y).max() < tol * np.abs(x).max(), key


def test_id2label_and_label2id(tmp_path):
    from transformers import RobertaForSequenceClassification

    labels = {0: "negative", 1: "neutral", 2: "positive"}
    torch.manual_seed(0)
    cfg = _roberta(id2label=labels, label2id={v: k for k, v in labels.items()})
    RobertaForSequenceClassification(cfg).save_pretrained(tmp_path)
    ours = tfcore.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert ours.id2label == labels and ours.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert ours.num_labels == 3
    # without names: HF's LABEL_i
    bert = models.BertForSequenceClassification
    from transformers import BertForSequenceClassification

    BertForSequenceClassification(_bert(num_labels=2)).save_pretrained(tmp_path / "b")
    assert bert.from_pretrained(tmp_path / "b").id2label == {0: "LABEL_0", 1: "LABEL_1"}


def test_camembert_model_is_roberta_math(rng, tmp_path):
    from transformers import CamembertModel

    torch.manual_seed(0)
    ref = CamembertModel(_roberta("CamembertConfig")).eval()
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert isinstance(ours, models.CamembertModel)
    ids, mask = _inputs(rng, ref, 1)
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    got = ours(ids, attention_mask=mask, padding_free=False).last_hidden_state
    assert np.abs(got - want).max() < TOL


def test_longformer_sequence_classifier_makes_first_token_global(rng, tmp_path):
    """HF's LongformerForSequenceClassification puts global attention on <s> when no mask is
    given; an explicit mask with only <s> global is the same call."""
    ref, pad = _build("LongformerForSequenceClassification", tmp_path)
    ours = models.LongformerForSequenceClassification.from_pretrained(tmp_path)
    ids, mask = _inputs(rng, ref, pad)
    glob = np.zeros_like(mask)
    glob[:, 0] = 1
    a = ours(ids, attention_mask=mask).logits
    b = ours(ids, attention_mask=mask, global_attention_mask=glob).logits
    assert np.array_equal(a, b)
    c = ours(ids, attention_mask=mask, global_attention_mask=np.zeros_like(mask)).logits
    assert np.abs(a - c).max() > 1e-4  # the default does change the computation


def test_bad_head_checkpoints_and_inputs(rng, tmp_path):
    import json

    ref, pad = _build("BertForQuestionAnswering", tmp_path / "qa")
    cfg = json.loads((tmp_path / "qa" / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (tmp_path / "qa" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tfcore.CheckpointError, match="needs num_labels=2"):
        tfcore.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "qa")
    cfg["id2label"] = {"zero": "a", "1": "b"}
    (tmp_path / "qa" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tfcore.CheckpointError, match="id2label keys must be integers"):
        tfcore.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "qa")
    cfg["id2label"] = {"0": "a", "2": "b"}
    (tmp_path / "qa" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tfcore.CheckpointError, match=r"id2label keys must be 0\.\.1"):
        tfcore.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "qa")
    # a base checkpoint has no head: the missing key is named
    from transformers import RobertaModel

    RobertaModel(_roberta()).save_pretrained(tmp_path / "base")
    with pytest.raises(tfcore.CheckpointError, match="classifier.dense.weight"):
        tfcore.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base")
    # a family without the task: the supported ones are listed
    from tiny_models import save_tiny

    save_tiny("gpt2", tmp_path / "gpt2")
    with pytest.raises(tfcore.CheckpointError, match="not a supported token classifier.*bert"):
        tfcore.AutoModelForTokenClassification.from_pretrained(tmp_path / "gpt2")
    # inputs are checked like the encoder's
    ref, pad = _build("DistilBertForTokenClassification", tmp_path / "tok")
    ours = tfcore.AutoModelForTokenClassification.from_pretrained(tmp_path / "tok")
    with pytest.raises(tfcore.TfcoreTypeError, match="input_ids must hold integers"):
        ours(np.array([[1.5, 2.0]]))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(np.array([[1, 2]]), attention_mask=np.ones((1, 3)))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        ours(np.zeros((1, 0), np.int64))
    # Longformer QA without a global mask needs HF's three separators per row
    ref, pad = _build("LongformerForQuestionAnswering", tmp_path / "lqa")
    ours = tfcore.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "lqa")
    with pytest.raises(tfcore.TfcoreValueError, match="exactly three sep tokens"):
        ours(np.full((1, 9), 5))
