"""GGUF reader (tfcore.gguf) against the ``gguf`` package (llama.cpp's Python reader/writer)
and transformers' own GGUF loading (``from_pretrained(dir, gguf_file=...)``, which
dequantizes with the ``gguf`` package): every supported tensor type bit-equal, logits and
greedy tokens of tiny random Llamas equal; malformed files -> CheckpointError."""

from __future__ import annotations

import os
import struct
import sys

import numpy as np
import pytest

import tfcore
from tfcore import gguf as G
from tfcore.safetensors import CheckpointError

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))
import harness  # noqa: E402
from gguf_files import BLOCK_TYPES, FLOAT_TYPES, K_QUANTS, encode, tiny_llama, write_llama_gguf  # noqa: E402

ALL_TYPES = FLOAT_TYPES + BLOCK_TYPES


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_dequantize_bit_equal_to_gguf_package(tmp_path, qtype):
    """Odd row counts, several blocks per row: tfcore's float32 == gguf.quants.dequantize."""
    rng = np.random.default_rng(1)
    cols = 512 if qtype in K_QUANTS else 96
    w = rng.standard_normal((7, cols)).astype(np.float32)
    if qtype == "BF16":
        data, raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType.BF16), gguf.GGMLQuantizationType.BF16
    else:
        data, raw = encode(w, qtype, rng)
    path = str(tmp_path / "t.gguf")
    wr = gguf.GGUFWriter(path, arch="llama")
    wr.add_tensor("w", data, raw_dtype=raw)
    wr.add_tensor("v", rng.standard_normal(5).astype(np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    f = G.GGUFFile(path)
    reader = gguf.GGUFReader(path)
    t = next(t for t in reader.tensors if t.name == "w")
    ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(7, cols)
    got = f.float32("w")
    assert f.info("w").dtype == qtype and got.shape == (7, cols) and got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), ref.astype(np.float32).view(np.uint32))  # bit for bit
    assert np.array_equal(f.float32("v"), next(t for t in reader.tensors if t.name == "v").data)
    if qtype in ("F32", "F16", "BF16", "Q8_0"):  # near-lossless types stay near the source
        tol = {"F32": 0, "F16": 1e-3, "BF16": 1e-2, "Q8_0": 2e-2}[qtype]
        np.testing.assert_allclose(got, w, atol=tol * np.abs(w).max())


@pytest.fixture(scope="module")
def hf_gguf():
    from transformers import AutoModelForCausalLM

    def load(path):
        d, name = os.path.split(path)
        return AutoModelForCausalLM.from_pretrained(d, gguf_file=name, attn_implementation="eager").eval()

    return load


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_tiny_llama_vs_transformers_gguf(tmp_path, hf_gguf, qtype):
    """Same file through transformers and tfcore: every weight bit-equal (after undoing
    llama.cpp's q/k row permutation), logits <= 1e-4 relative, greedy 24 tokens equal."""
    kq = qtype in K_QUANTS
    model = tiny_llama(seed=3, hidden=256 if kq else 64, inter=512 if kq else 96, tie=qtype == "Q4_1")
    path = write_llama_gguf(model, tmp_path / f"tiny-{qtype}.gguf", qtype)
    hf = hf_gguf(path)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    _, ck = G.load(path)
    assert set(ck) == set(sd) - ({"lm_head.weight"} if qtype == "Q4_1" else set())
    for k in ck:
        a = ck.float32(k)
        assert a.shape == sd[k].shape and np.array_equal(a, sd[k]), k
    tm = tfcore.AutoModelForCausalLM.from_pretrained(path)
    assert type(tm).__name__ == "LlamaForCausalLM" and tm.config.tie_word_embeddings == (qtype == "Q4_1")
    ids = np.array([[3, 5, 7, 11, 13, 17, 19], [2, 4, 8, 16, 32, 64, 1]])
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    got = tm(ids).logits
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    with torch.no_grad():
        ref_ids = hf.generate(torch.tensor(ids[:1]), max_new_tokens=24, do_sample=False).numpy()
    assert tm.generate(ids[:1], max_new_tokens=24).tolist() == ref_ids.tolist()


def test_config_from_metadata(tmp_path):
    model = tiny_llama(seed=0)
    path = write_llama_gguf(model, tmp_path / "c.gguf", "F32")
    cfg = G.read_config(path)
    hc = model.config
    for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size"):
        assert cfg.get(k) == getattr(hc, k), k
    assert cfg.num_key_value_heads == 2 and cfg.model_type == "llama" and cfg.rope_theta == 10000.0
    assert cfg.tie_word_embeddings is False and cfg.bos_token_id == 0 and cfg.eos_token_id == 1
    m = tfcore.AutoModelForCausalLM.from_pretrained(path, dtype="bfloat16")  # other dtypes from float32
    assert m.dtype == "bfloat16"


def test_kept_as_view_and_pages_released(tmp_path):
    path = harness.tiny_llama_gguf(2)
    p = tmp_path / "v.gguf"
    p.write_bytes(path)
    f = G.GGUFFile(p)
    raw = f.raw("blk.0.ffn_down.weight")  # Q4_0 (C=32 rows of F=64): 2 blocks of 18 bytes a row
    assert raw.shape == (32, 36) and raw.dtype == np.uint8 and not raw.flags.writeable
    f.release_pages()
    assert f.float32("blk.0.ffn_down.weight").shape == (32, 64)


# ---------------------------------------------------------------- malformed files
S = harness.gguf_string


def _kv_u32(key, v):
    return (key, 4, struct.pack("<I", v))


GOOD = harness.tiny_llama_gguf(2)
F32_4 = np.ones(32, np.float32).tobytes()


def _one(dims=(32,), tid=0, offset=0, raw=F32_4, **kw):
    return harness.gguf_bytes([], [("t", dims, tid, offset, raw)], **kw)


MALFORMED = [
    ("truncated header", GOOD[:100], "truncated"),
    ("truncated data", GOOD[:-40], "beyond the file"),
    ("empty", b"", "too short"),
    ("wrong magic", b"GGML" + GOOD[4:], "not a GGUF file"),
    ("version 1", GOOD[:4] + struct.pack("<I", 1) + GOOD[8:], "version 1"),
    ("version 99", GOOD[:4] + struct.pack("<I", 99) + GOOD[8:], "version 99"),
    ("huge tensor count", GOOD[:8] + struct.pack("<Q", 2**62) + GOOD[16:], "more than"),
    ("huge kv count", GOOD[:16] + struct.pack("<Q", 2**63) + GOOD[24:], "more than"),
    ("huge string", harness.gguf_bytes([("k", 8, struct.pack("<Q", 2**60))]), "claims|needs"),
    ("huge array", harness.gguf_bytes([("k", 9, struct.pack("<IQ", 4, 2**61))]), "claims"),
    ("unknown value type", harness.gguf_bytes([("k", 13, b"\0" * 8)]), "unknown value type 13"),
    (
        "nested arrays",
        harness.gguf_bytes(
            [("k", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 0))]
        ),
        "nests arrays",
    ),
    ("invalid UTF-8 key", harness.gguf_bytes([(b"\xff\xfe", 4, b"\0" * 4)]), "UTF-8"),
    ("duplicate key", harness.gguf_bytes([_kv_u32("a", 1), _kv_u32("a", 2)]), "appears twice"),
    ("bad alignment", harness.gguf_bytes([_kv_u32("general.alignment", 3)], alignment=1), "power of two"),
    (
        "alignment wrong type",
        harness.gguf_bytes([("general.alignment", 6, struct.pack("<f", 32.0))]),
        "power of two",
    ),
    ("unknown ggml type", _one(tid=77), "unknown ggml type 77"),
    ("zero dims", _one(dims=()), "0 dimensions"),
    ("five dims", _one(dims=(1, 1, 1, 1, 32)), "5 dimensions"),
    ("zero-sized dim", _one(dims=(32, 0)), "invalid dimensions"),
    ("huge dims", _one(dims=(2**40, 2**40)), "invalid dimensions"),
    ("row not whole blocks", _one(dims=(33,), tid=2, raw=b"\0" * 36), "blocks of 32"),
    ("misaligned offset", _one(offset=4), "not a multiple of the alignment"),
    ("offset past the end", _one(offset=2**40, raw=b""), "beyond the file"),
    (
        "overlapping tensors",
        harness.gguf_bytes(
            [], [("a", (32,), 0, 0, F32_4), ("b", (32,), 0, 96, F32_4), ("c", (32,), 0, 64, F32_4)]
        ),
        "overlap",
    ),
    (
        "duplicate tensor",
        harness.gguf_bytes([], [("a", (8,), 0, 0, F32_4[:32]), ("a", (8,), 0, 32, F32_4[:32])]),
        "appears twice",
    ),
]


@pytest.mark.parametrize("data,match", [(d, m) for _, d, m in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_file(tmp_path, data, match):
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(CheckpointError, match=match):
        G.GGUFFile(p)
    with pytest.raises(CheckpointError):
        tfcore.AutoModelForCausalLM.from_pretrained(p)


SEMANTIC = [
    ("no architecture", harness.gguf_bytes([], [("t", (32,), 0, 0, F32_4)]), "general.architecture"),
    (
        "unknown architecture",
        harness.gguf_bytes([("general.architecture", 8, S("mamba9"))]),
        "'mamba9' is not supported",
    ),
    (
        "missing head count",
        harness.gguf_bytes([("general.architecture", 8, S("llama"))]),
        "must be a positive integer",
    ),
]


@pytest.mark.parametrize("data,match", [(d, m) for _, d, m in SEMANTIC], ids=[n for n, _, _ in SEMANTIC])
def test_unusable_metadata(tmp_path, data, match):
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    G.GGUFFile(p)  # a valid file ...
    with pytest.raises(CheckpointError, match=match):  # ... that describes no model tfcore has
        tfcore.AutoModelForCausalLM.from_pretrained(p)


def test_unsupported_type_and_nan_scales(tmp_path):
    p = tmp_path / "q5.gguf"
    p.write_bytes(_one(dims=(32,), tid=6, raw=b"\0" * 22))  # Q5_0: valid, not dequantized by tfcore
    with pytest.raises(CheckpointError, match="Q5_0, which tfcore cannot dequantize"):
        G.GGUFFile(p).float32("t")
    p.write_bytes(_one(dims=(32,), tid=2, raw=np.float16(np.nan).tobytes() + b"\x11" * 16))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        G.GGUFFile(p).float32("t")


def test_revision_and_missing_file(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(GOOD)
    with pytest.raises(CheckpointError, match="revision"):
        tfcore.models.LlamaForCausalLM.from_pretrained(p, revision="main")
    with pytest.raises(CheckpointError):
        tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "missing.gguf")


# ---------------------------------------------------------------- tokenizer and chat template


def test_tokenizer_from_metadata(tmp_path):
    p = tmp_path / "tok.gguf"
    p.write_bytes(GOOD)
    tok = tfcore.text.load_tokenizer(p)
    assert tok.encode("ab").ids == [3]  # the merge a+b
    assert tok.encode("<s>abc</s>", add_special_tokens=False).ids == [4, 3, 2, 5]  # control tokens whole
    assert tok.decode([3, 2]) == "abc"


def test_tokenizer_kind_refused():
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"]}
    from tfcore.gguf_tokenizer import tokenizer_from_metadata

    with pytest.raises(CheckpointError, match="'llama'"):
        tokenizer_from_metadata(md)
    with pytest.raises(CheckpointError, match="merge"):
        tokenizer_from_metadata(
            {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a"], "tokenizer.ggml.merges": ["a"]}
        )


def test_chat_template_rendering_and_errors():
    from tfcore.gguf_tokenizer import apply_chat_template

    tpl = (
        "{% for m in messages %}{% if m['role'] == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}"
        "<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    msgs = [{"role": "user", "content": "hi"}]
    assert apply_chat_template(tpl, msgs, eos_token="</s>") == "<user>hi</s>\n"
    assert apply_chat_template(tpl, msgs, add_generation_prompt=True, eos_token="</s>").endswith(
        "<assistant>"
    )
    with pytest.raises(tfcore.TfcoreValueError, match="no bad roles"):
        apply_chat_template(tpl, [{"role": "bad", "content": ""}])
    with pytest.raises(tfcore.TfcoreTypeError, match="messages"):
        apply_chat_template(tpl, "hi")
    with pytest.raises(tfcore.TfcoreValueError, match=r"messages\[0\]"):
        apply_chat_template(tpl, [{"content": "x"}])
    with pytest.raises(tfcore.TfcoreValueError, match="could not be rendered"):
        apply_chat_template("{% for %}", msgs)
    with pytest.raises(tfcore.TfcoreValueError, match="no chat template"):
        apply_chat_template(None, msgs)
    # the sandbox refuses attribute access into Python internals
    with pytest.raises(tfcore.TfcoreValueError):
        apply_chat_template("{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}", msgs)
