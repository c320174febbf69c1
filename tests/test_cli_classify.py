"""tfcore classify: labels (config.json's id2label) for texts, and per token with --tokens,
equal to the argmax of the Hugging Face model's logits on the same token ids; run as a child
process like tests/test_cli.py."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import cli
from tiny_models import save_tiny_tokenizer

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
TAGS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
TEXTS = ["w5 w17 w3 w40", "w9 w2", "w33 w33 w12 w7 w8 w51 w19"]


def _bert(**kw):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=60,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=37,
        max_position_embeddings=64,
        attn_implementation="eager",
        **kw,
    )


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    from transformers import BertForSequenceClassification, BertForTokenClassification

    root = tmp_path_factory.mktemp("classify")
    torch.manual_seed(0)
    seq = BertForSequenceClassification(_bert(id2label=LABELS, label2id={v: k for k, v in LABELS.items()}))
    seq.eval().save_pretrained(root / "seq")
    tokc = BertForTokenClassification(_bert(id2label=TAGS, label2id={v: k for k, v in TAGS.items()}))
    tokc.eval().save_pretrained(root / "tok")
    for d in ("seq", "tok"):
        save_tiny_tokenizer(root / d)
    return root, seq, tokc


def _hf_logits(model, text_):
    from tokenizers import Tokenizer

    return model(
        torch.tensor([Tokenizer.from_file(str(model.name_or_path) + "/tokenizer.json").encode(text_).ids])
    ).logits[0]


def test_classify_prints_hf_labels(classifiers, tmp_path):
    root, seq, _ = classifiers
    seq.name_or_path = str(root / "seq")
    out = cli("classify", root / "seq", *TEXTS)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and "3 texts classified" in out.stderr
    for line, t in zip(lines, TEXTS):
        with torch.no_grad():
            p = torch.softmax(_hf_logits(seq, t), -1).numpy()
        label, score = line.split("\t")[0].split()
        assert line.endswith("\t" + t)
        assert label == LABELS[int(p.argmax())] and abs(float(score) - p.max()) < 1e-3
    # --top-k and --json; texts from a file and from standard input give the same answers
    (tmp_path / "t.txt").write_text("\n".join(TEXTS) + "\n")
    out = cli("classify", root / "seq", "--file", tmp_path / "t.txt", "--top-k", "3", "--json")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    for r, line in zip(rows, lines):
        assert [x["label"] for x in r["labels"]][0] == line.split()[0]
        assert sorted(x["label"] for x in r["labels"]) == sorted(LABELS.values())
        assert abs(sum(x["score"] for x in r["labels"]) - 1) < 1e-6
    assert cli("classify", root / "seq", stdin="\n".join(TEXTS)).stdout.splitlines() == lines


def test_classify_tokens(classifiers):
    root, _, tokc = classifiers
    tokc.name_or_path = str(root / "tok")
    out = cli("classify", root / "tok", *TEXTS[:2], "--tokens", "--json")
    assert out.returncode == 0, out.stderr
    for line, t in zip(out.stdout.splitlines(), TEXTS):
        row = json.loads(line)
        with torch.no_grad():
            want = [TAGS[int(i)] for i in _hf_logits(tokc, t).argmax(-1)]
        assert [x["token"] for x in row["tokens"]] == t.split()
        assert [x["label"] for x in row["tokens"]] == want


def test_classify_errors(classifiers, tmp_path):
    root, _, _ = classifiers
    bad = cli("classify", root / "seq", "x", "--top-k", "0")
    assert bad.returncode == 1 and "--top-k must be >= 1" in bad.stderr
    bad = cli("classify", root / "seq", stdin="")
    assert bad.returncode == 1 and "no texts to classify" in bad.stderr
    # a token classifier asked for sequence labels: the missing head is named
    bad = cli("classify", root / "tok", "w5")
    assert bad.returncode == 1 and "needs the pooler weights" in bad.stderr
    from tiny_models import save_tiny

    save_tiny("gpt2", tmp_path / "gpt2")
    bad = cli("classify", tmp_path / "gpt2", "w5")
    assert bad.returncode == 1 and "not a supported sequence classifier" in bad.stderr
