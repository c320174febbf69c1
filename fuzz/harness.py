"""Fuzz targets shared by the atheris drivers (fuzz/run.py) and the regression replay
(tests/test_fuzz_regressions.py): each takes bytes and either returns or raises an
exception that tfcore documents (a TfcoreError); anything else - another exception, a
crash, a hang - is a bug.

Targets:
  safetensors  the bytes are a .safetensors file: parse, then read every tensor as float32
  config       the bytes are config.json next to a valid tiny checkpoint: load the model
  gguf         the bytes are a .gguf file: parse, build its config, read every tensor as
               float32 (dequantizing), rebuild its tokenizer
  gguf_int4    the bytes are a .gguf file: every 2-D tensor through the int4 path (Q4_0 /
               Q4_1 / Q4_K blocks repacked into an int4 Linear, tfcore.gguf_int4)
  gptq_awq     byte 0 picks a GPTQ / AWQ quantization_config, the rest is model.safetensors:
               every tensor dequantized and, where it is 4-bit, built as an int4 Linear
  ctranslate2_whisper  the bytes are a CTranslate2 model.bin beside a Whisper tokenizer.json:
               read it, convert it to a Hugging Face checkpoint directory
  wav          the bytes are a .wav file: tfcore.audio.read_wav (as a file and as bytes), and
               when it reads, the samples resampled to 16 kHz if the rate is a common one
  ops          the bytes choose shapes, dtypes, flags and values for Linear, LayerNorm,
               scaled_dot_product_attention, MultiHeadAttention and a KVCache
  conv         the bytes choose a Conv1d / Conv2d (geometry, groups, padding modes, BatchNorm,
               dtype, oneDNN or GEMM route) and calls it (layout, residual, out, odd maps)
"""

from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np

import tfcore
from tfcore import functional as F
from tfcore.safetensors import SafetensorsFile, save_file

EXPECTED = (tfcore.TfcoreError,)
_DIR = tempfile.mkdtemp(prefix="tfcore-fuzz-")


def _expected(fn):
    try:
        fn()
    except EXPECTED:
        pass


# ---------------------------------------------------------------- safetensors
def safetensors(data: bytes) -> None:
    path = os.path.join(_DIR, "f.safetensors")
    with open(path, "wb") as f:
        f.write(data)

    def load():
        st = SafetensorsFile(path)
        for name in st.keys():
            st.float32(name)

    _expected(load)


# ---------------------------------------------------------------- config.json
def _tiny_bert_dir() -> str:
    d = os.path.join(_DIR, "bert")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        os.makedirs(d, exist_ok=True)
        rng = np.random.default_rng(0)
        C, F_, V, P = 8, 16, 12, 16
        t = {
            "embeddings.word_embeddings.weight": (V, C),
            "embeddings.position_embeddings.weight": (P, C),
            "embeddings.token_type_embeddings.weight": (2, C),
            "embeddings.LayerNorm.weight": (C,),
            "embeddings.LayerNorm.bias": (C,),
        }
        L = "encoder.layer.0."
        for n in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            t[L + n + ".weight"], t[L + n + ".bias"] = (C, C), (C,)
        t[L + "attention.output.LayerNorm.weight"] = t[L + "attention.output.LayerNorm.bias"] = (C,)
        t[L + "intermediate.dense.weight"], t[L + "intermediate.dense.bias"] = (F_, C), (F_,)
        t[L + "output.dense.weight"], t[L + "output.dense.bias"] = (C, F_), (C,)
        t[L + "output.LayerNorm.weight"] = t[L + "output.LayerNorm.bias"] = (C,)
        save_file(
            {k: rng.standard_normal(s).astype(np.float32) for k, s in t.items()},
            os.path.join(d, "model.safetensors"),
        )
    return d


def config(data: bytes) -> None:
    d = _tiny_bert_dir()
    with open(os.path.join(d, "config.json"), "wb") as f:
        f.write(data)

    def load_and_run():
        m = tfcore.AutoModel.from_pretrained(d)
        m(np.array([[1, 2, 3]]))

    _expected(load_and_run)


# ---------------------------------------------------------------- ops
class Reader:
    """Deterministic values from the fuzzer's bytes (zeros once they run out)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def int(self, lo: int, hi: int) -> int:
        return lo + (self.byte() | self.byte() << 8) % (hi - lo + 1)

    def choice(self, options):
        return options[self.byte() % len(options)]

    def array(self, shape, dtype=np.float32):
        n = int(np.prod(shape))
        raw = bytes(self.byte() for _ in range(min(n, 64)))
        base = np.frombuffer((raw or b"\0") * (n // max(len(raw), 1) + 1), np.uint8)[:n].astype(np.float32)
        a = ((base - 128) / 32).reshape(shape).astype(dtype)
        if n and self.byte() % 16 == 0:
            a.flat[self.int(0, n - 1)] = self.choice([np.nan, np.inf, -np.inf, 1e30])
        return a


def _layout(r: Reader, a):
    """The array as given, transposed, strided, read-only, or as a list."""
    kind = r.byte() % 8
    if kind == 0 and a.ndim >= 2:
        return np.swapaxes(a, -1, -2)
    if kind == 1 and a.ndim >= 1 and a.shape[-1] > 1:
        return a[..., ::2]
    if kind == 2:
        a = a.copy()
        a.flags.writeable = False
    if kind == 3:
        return a.tolist()
    if kind == 4:
        return a.astype(r.choice([np.float64, np.float16, np.int32, np.int64]))
    return a


def ops(data: bytes) -> None:
    r = Reader(data)
    op = r.byte() % 5
    dims = lambda n: tuple(r.int(0, 9) for _ in range(n))  # noqa: E731
    if op == 0:
        N, K = r.int(0, 40), r.int(0, 40)
        _expected(
            lambda: tfcore.Linear(
                _layout(r, r.array((N, K))),
                r.choice([None, r.array((N,)), r.array((r.int(0, 9),))]),
                activation=r.choice([None, "gelu", "silu", "bogus"]),
                dtype=r.choice(["float32", "bfloat16", "int8", "fp8"]),
            )(_layout(r, r.array(dims(r.int(0, 4)) + (K,))), out=r.choice([None, r.array((r.int(0, 3), N))]))
        )
    elif op == 1:
        C = r.int(0, 12)
        _expected(
            lambda: tfcore.LayerNorm(
                r.array((C,)), r.array((r.choice([C, C + 1]),)), eps=r.choice([1e-5, -1.0, 0.0])
            )(_layout(r, r.array(dims(r.int(0, 3)) + (r.choice([C, C + 1]),))))
        )
    elif op == 2:
        B, H, L, S, D = r.int(0, 3), r.int(0, 4), r.int(0, 9), r.int(0, 9), r.int(0, 8)
        KVH = r.choice([H, 1, r.int(0, 4)])
        mask = r.choice([None, r.array((L, S)) > 0, r.array((B, 1, L, S)), r.array((r.int(0, 3), S))])
        _expected(
            lambda: F.scaled_dot_product_attention(
                _layout(r, r.array((B, H, L, D))),
                _layout(r, r.array((B, KVH, S, D))),
                r.array((B, KVH, S, r.int(0, 8))),
                attn_mask=mask,
                is_causal=bool(r.byte() & 1),
                enable_gqa=bool(r.byte() & 1),
                scale=r.choice([None, 0.5, float("nan")]),
                window=r.choice([None, (r.int(0, 9), 0), (-3, 2)]),
                return_weights=bool(r.byte() & 1),
            )
        )
    elif op == 3:
        _expected(lambda: _attention_layer_calls(r))
    else:
        V, C = r.int(0, 20), r.int(0, 6)
        _expected(
            lambda: tfcore.Embedding(_layout(r, r.array((V, C))))(
                np.array([r.int(0, 25) - 2 for _ in range(r.int(0, 5))], np.int64).astype(
                    r.choice([np.int64, np.int32, np.uint8, np.float32])
                )
            )
        )


def _attention_layer_calls(r: Reader) -> None:
    """A fuzzed MultiHeadAttention called up to 3 times, with or without a fuzzed cache;
    each rejected call must leave the cache usable for the next."""
    H, D = r.int(1, 4), r.int(1, 4)
    KVH = r.choice([H, 1])
    C = H * D
    layer = tfcore.MultiHeadAttention(
        C,
        H,
        num_key_value_heads=KVH,
        q_weight=r.array((C, C)),
        k_weight=r.array((KVH * D, C)),
        v_weight=r.array((KVH * D, C)),
        o_weight=r.array((C, C)),
        is_causal=bool(r.byte() & 1),
        rope_theta=r.choice([None, 1e4]),
        sliding_window=r.choice([None, r.int(1, 5)]),
    )
    B, T = r.int(0, 3), r.int(0, 6)
    cache = tfcore.KVCache(
        1,
        r.choice([B, 2]),
        KVH,
        r.choice([D, D + 1]),
        capacity=r.int(1, 4),
        policy=r.choice(["full", "tova"]),
        budget=r.int(1, 5),
        dtype=r.choice(["float32", "bfloat16", "int8"]),
    )
    for _ in range(r.int(1, 3)):
        seen = cache.get_seq_length()
        mask = r.choice([None, np.ones((B, seen + T), np.int64), r.array((B, T))])
        _expected(
            lambda: layer(
                _layout(r, r.array((B, T, r.choice([C, C + 1])))),
                mask,
                past_key_values=r.choice([None, cache]),
                layer_idx=r.choice([0, 0, 1, -1]),
            )
        )


# ---------------------------------------------------------------- gguf
def gguf_bytes(kvs=(), tensors=(), alignment=32, version=3, magic=b"GGUF") -> bytes:
    """A GGUF file built by hand (so tests and seeds control every field). kvs: (key, value
    type id, value bytes already packed); tensors: (name, dims fastest-first, ggml type id,
    data offset, data bytes or b"" for none). Data is laid at the given offsets after the aligned header."""

    def s(text):
        b = text.encode() if isinstance(text, str) else text
        return struct.pack("<Q", len(b)) + b

    out = magic + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += s(key) + struct.pack("<I", vtype) + value
    for name, dims, tid, offset, _ in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", tid, offset)
    out += b"\0" * (-len(out) % alignment)
    data = bytearray()
    for _, _, _, offset, raw in tensors:
        if not raw:  # a tensor whose data the file leaves out (tests of bad offsets)
            continue
        if len(data) < offset + len(raw):
            data += b"\0" * (offset + len(raw) - len(data))
        data[offset : offset + len(raw)] = raw
    return out + bytes(data)


def gguf_string(text: str) -> bytes:
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def tiny_llama_gguf(qtype: int = 2, chat_template=None) -> bytes:
    """A valid 1-layer Llama GGUF (hidden 32, 2 heads, vocab 8) with 2-D weights in qtype
    (Q4_0 by default; block geometry from tfcore.gguf), an 8-token byte-level vocabulary and
    optionally a chat template (eos "</s>" = id 5)."""
    from tfcore.gguf import GGML_TYPES

    rng = np.random.default_rng(0)
    t = GGML_TYPES[qtype]
    C, F_, V = 32, 64, 8
    kvs = [("general.architecture", 8, gguf_string("llama"))]
    for key, v in (
        ("block_count", 1),
        ("embedding_length", C),
        ("feed_forward_length", F_),
        ("attention.head_count", 2),
        ("attention.head_count_kv", 1),
        ("context_length", 64),
    ):
        kvs.append((f"llama.{key}", 4, struct.pack("<I", v)))
    kvs.append(("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)))
    toks = ["a", "b", "c", "ab", "<s>", "</s>", "x", "y"]
    kvs.append(("tokenizer.ggml.model", 8, gguf_string("gpt2")))
    kvs.append(
        ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, V) + b"".join(gguf_string(x) for x in toks))
    )
    kvs.append(("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, 1) + gguf_string("a b")))
    kvs.append(
        (
            "tokenizer.ggml.token_type",
            9,
            struct.pack("<IQ", 5, V) + struct.pack("<8i", 1, 1, 1, 1, 3, 3, 1, 1),
        )
    )
    if chat_template is not None:
        kvs.append(("tokenizer.chat_template", 8, gguf_string(chat_template)))
        kvs.append(("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 5)))
    shapes = {
        "token_embd.weight": (C, V),
        "output_norm.weight": (C,),
        "blk.0.attn_norm.weight": (C,),
        "blk.0.ffn_norm.weight": (C,),
        "blk.0.attn_q.weight": (C, C),
        "blk.0.attn_k.weight": (C, 16),
        "blk.0.attn_v.weight": (C, 16),
        "blk.0.attn_output.weight": (C, C),
        "blk.0.ffn_gate.weight": (C, F_),
        "blk.0.ffn_up.weight": (C, F_),
        "blk.0.ffn_down.weight": (F_, C),
    }
    tensors, offset = [], 0
    for name, dims in shapes.items():
        tid = 0 if len(dims) == 1 else qtype
        tt = GGML_TYPES[tid]
        nbytes = int(np.prod(dims)) // tt.block * tt.nbytes
        if tid == 0:
            raw = rng.uniform(0.5, 1.5, int(np.prod(dims))).astype(np.float32).tobytes()
        else:
            raw = bytearray(rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes())
            for b in range(0, nbytes, tt.nbytes):  # finite small float16 block scales
                raw[b : b + 2] = np.float16(0.01).tobytes()
                if t.name == "Q4_1":
                    raw[b + 2 : b + 4] = np.float16(-0.05).tobytes()
            raw = bytes(raw)
        tensors.append((name, dims, tid, offset, raw))
        offset += -(-nbytes // 32) * 32
    return gguf_bytes(kvs, tensors)


def gguf(data: bytes) -> None:
    from tfcore import gguf as G
    from tfcore.gguf_tokenizer import tokenizer_from_metadata

    path = os.path.join(_DIR, "f.gguf")
    with open(path, "wb") as f:
        f.write(data)

    def load():
        f = G.GGUFFile(path)
        try:
            for name in f.tensors:
                f.float32(name)
            cfg, arch = G.config_from_metadata(f.metadata, list(f.tensors), path)
            ck = G.GGUFCheckpoint(f, arch, cfg)
            for name in ck:
                ck.float32(name)
            tokenizer_from_metadata(f.metadata, path)
        finally:
            f.close()

    _expected(load)


def linear_attention(data: bytes) -> None:
    """tfcore.functional.linear_attention with fuzzed shapes, layouts, decays, gates, states
    and options (a target of its own so the ops target's byte mapping stays as recorded)."""
    r = Reader(data)
    B, H, L, Dk, Dv = r.int(0, 3), r.int(0, 4), r.int(0, 40), r.int(0, 9), r.int(0, 9)
    normalize = bool(r.byte() & 1)
    state = r.choice([None, r.array((B, H, Dk, Dv)), r.array((B, H, r.int(0, 9), Dv))])
    if normalize and state is not None and r.byte() & 1:
        state = (state, r.array((B, H, Dk)))
    _expected(
        lambda: F.linear_attention(
            _layout(r, r.array((B, H, L, Dk))),
            _layout(r, r.array((B, H, r.choice([L, L + 1]), Dk))),
            _layout(r, r.array((B, H, L, Dv))),
            decay=r.choice(
                [None, None, r.array((H,)) / 8 + 0.5, [r.choice([0.0, 0.5, 1.0, 2.0, np.nan])] * H, "x"]
            ),
            gate=r.choice(
                [None, None, -np.abs(r.array((B, H, L, Dk))), r.array((B, H, L, Dk)), r.array((B, H, L, 1))]
            ),
            feature_map=r.choice([None, "elu+1", "relu", "bogus", 3]),
            normalize=normalize,
            scale=r.choice([None, 0.5, float("nan"), "s"]),
            mode=r.choice(["chunkwise", "recurrent", "parallel", "fast"]),
            chunk_size=r.choice([64, 1, r.int(0, 50), -2, 2**40]),
            initial_state=state,
            return_state=bool(r.byte() & 1),
            return_weights=bool(r.byte() & 1),
        )
    )


# ---------------------------------------------------------------- WAV files
def wav(data: bytes) -> None:
    from tfcore import audio

    path = os.path.join(_DIR, "f.wav")
    with open(path, "wb") as f:
        f.write(data)

    def read():
        for mono in (False, True):
            x, rate = audio.read_wav(path, mono=mono)
            assert x.dtype == np.float32 and x.ndim == 1 and x.size and np.isfinite(x).all()
            assert audio.read_wav(data, mono=mono)[1] == rate
            if rate in (8000, 22050, 44100, 48000) and x.size <= 1 << 16:
                y = audio.resample(x, rate, 16000)
                assert y.dtype == np.float32 and np.isfinite(y).all()

    _expected(read)


def wav_bytes(samples, *, width: int = 2, channels: int = 1, rate: int = 16000, tag: int = 1) -> bytes:
    """A RIFF/WAVE file around raw sample bytes (PCM or IEEE float) for the seeds and tests."""
    align = width * channels
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, 8 * width)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def rwkv(data: bytes) -> None:
    """RWKV-4's kernels (tfcore.functional.rwkv4_wkv, rwkv_token_shift, squared_relu,
    sigmoid_gate) with fuzzed shapes, layouts, decays, states and values (NaN, Inf, 1e30)."""
    r = Reader(data)
    B, T, C = r.int(0, 3), r.int(0, 30), r.int(0, 40)
    shape = (B, T, C)
    state = r.choice(
        [
            None,
            tuple(r.array((B, C)) for _ in range(3)),
            (r.array((B, C)), np.abs(r.array((B, C))), r.array((B, C))),
            (r.array((B, C)), r.array((B, r.int(0, 9)))),
            r.array((B, C)),
        ]
    )
    if isinstance(state, tuple) and r.byte() & 1:
        state = tuple(_layout(r, s) for s in state)
    _expected(
        lambda: F.rwkv4_wkv(
            _layout(r, r.array(shape) * r.choice([1.0, 40.0, 1e4])),
            _layout(r, r.array(shape)),
            _layout(r, r.array((C,)) * r.choice([1.0, 30.0, 1e6])),
            _layout(r, r.array((r.choice([C, C + 1]),))),
            receptance=r.choice([None, r.array(shape), r.array((B, T, 1))]),
            state=state,
        )
    )
    _expected(
        lambda: F.rwkv_token_shift(
            _layout(r, r.array(shape)),
            _layout(r, r.array((r.int(0, 18), r.choice([C, C + 1])))),
            state=r.choice([None, r.array((B, C)), r.array((C,))]),
        )
    )
    x = r.array(shape)
    _expected(lambda: F.squared_relu(_layout(r, x), out=r.choice([None, x, r.array((C,))])))
    _expected(lambda: F.sigmoid_gate(_layout(r, r.array(shape)), _layout(r, x), out=r.choice([None, x])))


def conv(data: bytes) -> None:
    """tfcore.Conv1d / Conv2d: fuzzed weights (shape, groups, values), stride / padding /
    dilation (ints, tuples, 'same', 'valid', bad values), activation, batch_norm, dtype, the
    route (TFCORE_CONV_ROUTE: oneDNN's convolution or the GEMM over im2col rows), then calls
    with fuzzed maps (either layout, too small, wrong channels, non-finite), residual and out."""
    r = Reader(data)
    nsp = r.choice([1, 2])
    groups = r.choice([1, 1, 2, 3, r.int(0, 8)])
    OC = groups * r.int(0, 4) if groups else r.int(0, 4)
    cg = r.int(0, 5)
    kernel = tuple(r.choice([1, 2, 3, 4, r.int(0, 17)]) for _ in range(nsp))
    patches = r.byte() % 3 == 0  # kernel = stride, no padding: the patch route
    stride = kernel if patches else r.choice([1, 2, r.int(0, 5), tuple(r.int(0, 4) for _ in range(nsp))])
    padding = 0 if patches else r.choice([0, 1, "same", "valid", "full", r.int(0, 9), (1,) * (nsp + 1)])
    dilation = 1 if patches else r.choice([1, 2, r.int(0, 4)])
    w = r.array((OC, cg) + kernel)
    C = cg * groups
    bn = r.choice(
        [
            None,
            None,
            (r.array((OC,)), np.abs(r.array((OC,))) + r.choice([0.0, 1.0]), r.array((OC,)), None, 1e-5),
            (r.array((OC,)), r.array((OC + 1,)), None, None, 1e-5),
            "bogus",
        ]
    )
    route = r.choice([None, "gemm", "onednn"])
    old = os.environ.pop("TFCORE_CONV_ROUTE", None)
    if route is not None:
        os.environ["TFCORE_CONV_ROUTE"] = route
    try:
        layer = (tfcore.Conv1d if nsp == 1 else tfcore.Conv2d)(
            _layout(r, w),
            r.choice([None, r.array((OC,)), r.array((r.int(0, 9),))]),
            stride,
            padding,
            dilation,
            groups,
            activation=r.choice([None, "gelu", "relu", "bogus"]),
            batch_norm=bn,
            dtype=r.choice(["float32", "bfloat16", "int8", "fp8"]),
        )
    except EXPECTED:
        return
    finally:
        os.environ.pop("TFCORE_CONV_ROUTE", None)
        if old is not None:
            os.environ["TFCORE_CONV_ROUTE"] = old
    for _ in range(r.int(1, 3)):
        last = bool(r.byte() & 1)
        sp = tuple(r.int(0, 23) for _ in range(nsp))
        ch = r.choice([C, C, C + 1])
        x = r.array((r.int(0, 3),) + (sp + (ch,) if last else (ch,) + sp))
        try:
            y = layer(_layout(r, x), channels_last=last)
        except EXPECTED:
            continue
        _expected(lambda: layer(x, r.choice([y, y[..., :1], r.array(y.shape)]), channels_last=last))
        _expected(lambda: layer(x, channels_last=last, out=r.choice([y, np.empty_like(y), x])))


# ---------------------------------------------------------------- GGUF's int4 path
def gguf_int4(data: bytes) -> None:
    from tfcore import gguf as G

    path = os.path.join(_DIR, "int4.gguf")
    with open(path, "wb") as f:
        f.write(data)

    def load():
        f = G.GGUFFile(path)
        try:
            cfg, arch = G.config_from_metadata(f.metadata, list(f.tensors), path)
            ck = G.GGUFCheckpoint(f, arch, cfg)
            for name in ck:
                lin = ck.int4_linear(name)
                if lin is not None:
                    lin(np.ones((2, lin.in_features), np.float32))  # decode kernels
                    lin(np.ones((9, lin.in_features), np.float32))  # prefill path
        finally:
            f.close()

    _expected(load)


# ---------------------------------------------------------------- GPTQ / AWQ safetensors
GPTQ_AWQ_CONFIGS = (
    {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": False},
    {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True, "checkpoint_format": "gptq_v2"},
    {"quant_method": "gptq", "bits": 4, "group_size": -1},
    {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"},
    {"quant_method": "awq", "bits": 4, "group_size": 64},
)


def gptq_awq_layer(method: str, K: int = 64, N: int = 16, group: int = 32, seed: int = 0) -> dict:
    """One valid packed layer ("p.*" tensors) of random 4-bit values (the seeds)."""
    rng = np.random.default_rng(seed)
    G = -(-K // group)
    qw = (K // 8, N) if method == "gptq" else (K, N // 8)
    t = {
        "p.qweight": rng.integers(-(2**31), 2**31, qw, dtype=np.int64).astype(np.int32),
        "p.qzeros": rng.integers(-(2**31), 2**31, (G, N // 8), dtype=np.int64).astype(np.int32),
        "p.scales": (rng.random((G, N)) * 0.01 + 0.001).astype(np.float16),
        "p.bias": np.zeros(N, np.float16),
    }
    if method == "gptq":
        t["p.g_idx"] = (np.arange(K) // group).astype(np.int32)
    return t


def gptq_awq(data: bytes) -> None:
    from tfcore.config import Config
    from tfcore.gptq_awq import wrap
    from tfcore.safetensors import Checkpoint

    d = os.path.join(_DIR, "gptq_awq")
    os.makedirs(d, exist_ok=True)
    qc = GPTQ_AWQ_CONFIGS[data[0] % len(GPTQ_AWQ_CONFIGS)] if data else GPTQ_AWQ_CONFIGS[0]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "quantization_config": qc}, f)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(data[1:])

    def load():
        ck = wrap(Checkpoint(d), Config.from_dir(d))
        for name in ck:
            w = ck.float32(name)
            lin = ck.int4_linear(name) if hasattr(ck, "int4_linear") else None
            if lin is not None:
                x = np.ones((2, lin.in_features), np.float32)
                if not np.allclose(lin(x), x @ w.T, rtol=1e-2, atol=1e-3 * float(np.abs(w).sum(1).max() + 1)):
                    raise AssertionError(f"{name}: int4 Linear and the dequantized weights disagree")

    _expected(load)


# ---------------------------------------------------------------- CTranslate2 Whisper
WHISPER_SPECIAL = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|startofprev|>")


def ct2_bytes(variables, aliases=(), spec="WhisperSpec", version=6, revision=3) -> bytes:
    """A CTranslate2 model.bin built by hand: variables (name, array) in float32 / float16 /
    int8 / int16 / int32 (or a 0-d int32 scalar), aliases (alias, name)."""
    codes = {
        np.dtype("<f4"): 0,
        np.dtype("i1"): 1,
        np.dtype("<i2"): 2,
        np.dtype("<i4"): 3,
        np.dtype("<f2"): 4,
    }

    def s(text):
        b = text.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = struct.pack("<I", version) + s(spec) + struct.pack("<II", revision, len(variables))
    for name, a in variables:
        a = np.asarray(a)  # (not ascontiguousarray: it makes 0-d scalars 1-d)
        out += s(name) + struct.pack("<B", a.ndim) + b"".join(struct.pack("<I", d) for d in a.shape)
        out += struct.pack("<BI", codes[a.dtype], a.nbytes) + a.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(s(a) + s(n) for a, n in aliases)
    return out


def tiny_whisper_ct2(dtype=np.float16) -> bytes:
    """A valid 1+1-layer CTranslate2 Whisper model.bin (d_model 8, 4 mel bins, vocab 12)."""
    rng = np.random.default_rng(0)
    C, M, V, F_, P = 8, 4, 12, 16, 6
    v = [("encoder/num_heads", np.array(2, np.int32)), ("decoder/num_heads", np.array(2, np.int32))]

    def add(name, *shape):
        v.append((name, rng.standard_normal(shape).astype(dtype)))

    def norm(p):
        add(p + "/gamma", C)
        add(p + "/beta", C)

    def lin(p, rows, cols):
        add(p + "/weight", rows, cols)
        add(p + "/bias", rows)

    add("encoder/conv1/weight", C, M, 3)
    add("encoder/conv1/bias", C)
    add("encoder/conv2/weight", C, C, 3)
    add("encoder/conv2/bias", C)
    add("encoder/position_encodings/encodings", P, C)
    add("decoder/position_encodings/encodings", P, C)
    add("decoder/embeddings/weight", V, C)
    for kind in ("encoder", "decoder"):
        s = f"{kind}/layer_0"
        norm(s + "/self_attention/layer_norm")
        v.append((s + "/self_attention/linear_0/weight", rng.standard_normal((3 * C, C)).astype(dtype)))
        bias = rng.standard_normal(3 * C).astype(dtype)
        bias[C : 2 * C] = 0  # Whisper's k_proj has no bias
        v.append((s + "/self_attention/linear_0/bias", bias))
        lin(s + "/self_attention/linear_1", C, C)
        if kind == "decoder":
            norm(s + "/attention/layer_norm")
            lin(s + "/attention/linear_0", C, C)
            v.append((s + "/attention/linear_1/weight", rng.standard_normal((2 * C, C)).astype(dtype)))
            v.append((s + "/attention/linear_1/bias", np.zeros(2 * C, dtype)))
            lin(s + "/attention/linear_2", C, C)
        norm(s + "/ffn/layer_norm")
        lin(s + "/ffn/linear_0", F_, C)
        lin(s + "/ffn/linear_1", C, F_)
        norm(f"{kind}/layer_norm")
    return ct2_bytes(v, aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])


def ctranslate2_whisper(data: bytes) -> None:
    import shutil

    from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper, read_ctranslate2_model

    src, dest = os.path.join(_DIR, "ct2"), os.path.join(_DIR, "ct2-hf")
    os.makedirs(src, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    tok = {"added_tokens": [{"id": 8 + i, "content": t} for i, t in enumerate(WHISPER_SPECIAL)]}
    with open(os.path.join(src, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump({"suppress_ids": [1, 2], "suppress_ids_begin": [3], "lang_ids": []}, f)
    with open(os.path.join(src, "model.bin"), "wb") as f:
        f.write(data)

    def load():
        read_ctranslate2_model(src)
        convert_ctranslate2_whisper(src, dest)

    try:
        _expected(load)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


TARGETS = {
    "wav": wav,
    "conv": conv,
    "safetensors": safetensors,
    "config": config,
    "ops": ops,
    "linear_attention": linear_attention,
    "rwkv": rwkv,
    "gguf": gguf,
    "gguf_int4": gguf_int4,
    "gptq_awq": gptq_awq,
    "ctranslate2_whisper": ctranslate2_whisper,
}


def seeds(target: str):
    """A few valid inputs to start each fuzzer from."""
    if target == "safetensors":
        path = os.path.join(_DIR, "seed.safetensors")
        save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float16)}, path)
        with open(path, "rb") as f:
            yield f.read()
        yield struct.pack("<Q", 2) + b"{}"
    elif target == "gguf":
        yield tiny_llama_gguf(2)
        yield tiny_llama_gguf(3)
        yield gguf_bytes()
    elif target == "gguf_int4":
        yield tiny_llama_gguf(2)  # Q4_0
        yield tiny_llama_gguf(3)  # Q4_1
    elif target == "gptq_awq":
        path = os.path.join(_DIR, "seed-gptq.safetensors")
        for i, qc in enumerate(GPTQ_AWQ_CONFIGS):
            group = qc["group_size"] if qc["group_size"] > 0 else 64
            save_file(gptq_awq_layer(qc["quant_method"], group=group, seed=i), path)
            with open(path, "rb") as f:
                yield bytes([i]) + f.read()
    elif target == "ctranslate2_whisper":
        yield tiny_whisper_ct2(np.float16)
        yield tiny_whisper_ct2(np.float32)
    elif target == "wav":
        yield wav_bytes(np.arange(-40, 40, dtype="<i2").tobytes())
        yield wav_bytes(np.arange(0, 96, dtype=np.uint8).tobytes(), width=3, channels=2, rate=44100)
        yield wav_bytes(np.linspace(-1, 1, 32, dtype="<f4").tobytes(), width=4, tag=3, rate=8000)
        yield wav_bytes(bytes(range(0, 256, 4)), width=1, rate=22050)
    elif target == "config":
        yield (
            b'{"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, '
            b'"intermediate_size": 16, "vocab_size": 12, "max_position_embeddings": 16, "type_vocab_size": 2}'
        )
    else:
        for i in range(5):
            yield bytes([i]) + bytes(range(7, 250, 3))
