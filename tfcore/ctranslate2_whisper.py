"""CTranslate2 Whisper directories (``model.bin`` + ``config.json`` + ``tokenizer.json``) to
Hugging Face-layout checkpoints, without importing ctranslate2.

``model.bin`` (CTranslate2's binary spec format, version 6; little-endian)::

    u32 binary_version | str spec_name | u32 spec_revision | u32 n_variables
    n_variables x ( str name | u8 ndim | u32 dim x ndim | u8 dtype | u32 nbytes | nbytes of data )
    u32 n_aliases | n_aliases x ( str alias | str variable_name )

where ``str`` is ``u16 length (with the NUL) | bytes | NUL`` and dtype indexes
(float32, int8, int16, int32, float16, bfloat16). Scalars (ndim 0) are the spec's
settings (num_heads, activation, pre_norm, ...).

Name mapping (CTranslate2 ``WhisperSpec`` -> ``transformers.WhisperForConditionalGeneration``,
``E = encoder/layer_i``, ``D = decoder/layer_i``):

=============================================  ===============================================
CTranslate2                                    Hugging Face
=============================================  ===============================================
encoder/conv1/{weight,bias}                    model.encoder.conv1.{weight,bias}
encoder/conv2/{weight,bias}                    model.encoder.conv2.{weight,bias}
encoder/position_encodings/encodings           model.encoder.embed_positions.weight
E/self_attention/layer_norm/{gamma,beta}       model.encoder.layers.i.self_attn_layer_norm.{weight,bias}
E/self_attention/linear_0 (3C x C, fused)      ...self_attn.{q,k,v}_proj (rows [0,C), [C,2C), [2C,3C);
                                               k's bias rows are zeros and dropped: HF's k_proj has none)
E/self_attention/linear_1                      ...self_attn.out_proj
E/ffn/layer_norm/{gamma,beta}                  ...final_layer_norm.{weight,bias}
E/ffn/linear_0, E/ffn/linear_1                 ...fc1, ...fc2
encoder/layer_norm/{gamma,beta}                model.encoder.layer_norm.{weight,bias}
decoder/embeddings/weight                      model.decoder.embed_tokens.weight (proj_out is tied)
decoder/position_encodings/encodings           model.decoder.embed_positions.weight
D/self_attention/...                           ...self_attn... and self_attn_layer_norm, as E
D/attention/layer_norm/{gamma,beta}            ...encoder_attn_layer_norm.{weight,bias}
D/attention/linear_0                           ...encoder_attn.q_proj
D/attention/linear_1 (2C x C, fused)           ...encoder_attn.{k,v}_proj (k's bias rows dropped)
D/attention/linear_2                           ...encoder_attn.out_proj
D/ffn/...                                      ...final_layer_norm, fc1, fc2, as E
decoder/layer_norm/{gamma,beta}                model.decoder.layer_norm.{weight,bias}
=============================================  ===============================================

``config.json`` (CTranslate2's: suppress_ids, suppress_ids_begin, lang_ids, alignment_heads)
becomes ``generation_config.json`` (suppress_tokens, begin_suppress_tokens, lang_to_id,
alignment_heads), with the special token ids read from ``tokenizer.json``'s added tokens.
The HF ``config.json`` is derived from the tensor shapes; ``preprocessor_config.json`` holds
Whisper's feature extractor settings (n_mels from the conv stem).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ._C import TfcoreValueError
from .safetensors import CheckpointError, save_file

__all__ = ["read_ctranslate2_model", "is_ctranslate2_directory", "convert_ctranslate2_whisper"]

# CTranslate2's DataType enum order
_DTYPES = (np.dtype("<f4"), np.dtype("i1"), np.dtype("<i2"), np.dtype("<i4"), np.dtype("<f2"), None)
_BF16 = 5
_MAGIC_VERSIONS = range(1, 7)  # binary versions this reader knows (6 is CTranslate2 4.x's)


class _Reader:
    def __init__(self, data: memoryview, path: str):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise CheckpointError(
                f"{self.path}: truncated CTranslate2 model.bin (wanted {n} bytes at offset {self.pos}, "
                f"the file has {len(self.data)})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.u("H")
        raw = bytes(self.take(n))
        if n == 0 or raw[-1] != 0:
            raise CheckpointError(
                f"{self.path}: malformed string at offset {self.pos - n} (no NUL terminator)"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{self.path}: a variable name is not UTF-8 ({e})") from e


def read_ctranslate2_model(path: Union[str, os.PathLike]) -> Tuple[str, int, Dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin``: (spec name, spec revision, {variable name: array}).

    Arrays are read-only views of a memory map (bfloat16 ones as uint16 arrays of the bits);
    aliases are resolved to the arrays of the variables they name."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    if not os.path.isfile(path):
        raise TfcoreValueError(f"{path}: no CTranslate2 model.bin")
    if os.path.getsize(path) < 12:
        raise CheckpointError(
            f"{path}: {os.path.getsize(path)} bytes is too short for a CTranslate2 model.bin"
        )
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    r = _Reader(memoryview(mm), path)
    version = r.u("I")
    if version not in _MAGIC_VERSIONS:
        raise CheckpointError(
            f"{path}: binary version {version} is not a CTranslate2 model.bin version tfcore reads (1-6)"
        )
    spec = r.string() if version >= 2 else ""
    revision = r.u("I") if version >= 2 else 1
    n = r.u("I")
    out: Dict[str, np.ndarray] = {}
    for _ in range(n):
        name = r.string()
        ndim = r.u("B")
        shape = tuple(r.u("I") for _ in range(ndim))
        code = r.u("B")
        if version < 4:
            raise CheckpointError(f"{path}: binary version {version} predates typed variables; re-convert it")
        nbytes = r.u("I")
        if code >= len(_DTYPES):
            raise CheckpointError(f"{path}: {name!r} has unknown dtype code {code}")
        dt = np.dtype("<u2") if code == _BF16 else _DTYPES[code]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dt.itemsize != nbytes:
            raise CheckpointError(
                f"{path}: {name!r} has shape {shape} of {dt} ({count * dt.itemsize} bytes) but stores {nbytes} bytes"
            )
        start = r.pos
        r.take(nbytes)
        out[name] = mm[start : start + nbytes].view(dt).reshape(shape)
    if r.pos < len(mm):
        for _ in range(r.u("I")):
            alias, target = r.string(), r.string()
            if target not in out:
                raise CheckpointError(f"{path}: alias {alias!r} names a missing variable {target!r}")
            out[alias] = out[target]
    if r.pos != len(mm):
        raise CheckpointError(f"{path}: {len(mm) - r.pos} unread bytes after the aliases")
    return spec, revision, out


def is_ctranslate2_directory(path: Union[str, os.PathLike]) -> bool:
    """True when path is a directory whose model.bin starts like a CTranslate2 model
    (a known binary version and a NUL-terminated spec name)."""
    f = os.path.join(os.fspath(path), "model.bin")
    if not os.path.isfile(f):
        return False
    with open(f, "rb") as fh:
        head = fh.read(64)
    if len(head) < 8:
        return False
    version, n = struct.unpack_from("<IH", head)
    return version in _MAGIC_VERSIONS and 0 < n <= len(head) - 6 and head[5 + n] == 0


def _scalar(v: Dict[str, np.ndarray], name: str, path: str) -> int:
    if name not in v or v[name].shape != ():
        raise CheckpointError(f"{path}: CTranslate2 Whisper spec has no scalar {name!r}")
    return int(v[name])


def _special_ids(tokenizer_json: str) -> Dict[str, int]:
    """{content: id} of tokenizer.json's added tokens."""
    try:
        with open(tokenizer_json, encoding="utf-8") as f:
            tok = json.load(f)
        return {t["content"]: int(t["id"]) for t in tok.get("added_tokens", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{tokenizer_json}: cannot read its added tokens ({e})") from e


def convert_ctranslate2_whisper(
    source: Union[str, os.PathLike], dest: Union[str, os.PathLike], dtype: Optional[str] = None
) -> int:
    """Write a CTranslate2 Whisper directory as a Hugging Face-layout checkpoint in ``dest``
    (a new directory): model.safetensors (floating tensors as stored, or in ``dtype``:
    "float32", "float16", "bfloat16"), config.json, generation_config.json,
    preprocessor_config.json, tokenizer.json (copied) and tokenizer_config.json. Returns the
    number of tensors written. The module docstring lists the name mapping."""
    source, dest = os.fspath(source), os.fspath(dest)
    if dtype not in (None, "float32", "float16", "bfloat16"):
        raise TfcoreValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    if os.path.exists(dest):
        raise TfcoreValueError(f"{dest} exists; convert writes a new directory")
    spec, revision, v = read_ctranslate2_model(source)
    mb = os.path.join(source, "model.bin")
    if spec != "WhisperSpec":
        raise CheckpointError(
            f"{mb}: a CTranslate2 {spec or 'unnamed'} model; tfcore converts WhisperSpec models"
        )
    tok_path = os.path.join(source, "tokenizer.json")
    if not os.path.isfile(tok_path):
        raise CheckpointError(f"{source}: no tokenizer.json beside model.bin (the Whisper vocabulary)")
    ct2_cfg_path = os.path.join(source, "config.json")
    ct2_cfg = {}
    if os.path.isfile(ct2_cfg_path):
        try:
            with open(ct2_cfg_path, encoding="utf-8") as f:
                ct2_cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{ct2_cfg_path}: not readable JSON ({e})") from e
        if not isinstance(ct2_cfg, dict):
            raise CheckpointError(f"{ct2_cfg_path}: expected a JSON object")

    def need(name: str, shape: Optional[tuple] = None) -> np.ndarray:
        if name not in v:
            raise CheckpointError(f"{mb}: missing variable {name!r}")
        a = v[name]
        if shape is not None and a.shape != shape:
            raise CheckpointError(f"{mb}: {name!r} has shape {a.shape}, expected {shape}")
        if a.dtype.kind not in "fu" or (a.dtype.kind == "u" and a.dtype.itemsize != 2):
            raise CheckpointError(
                f"{mb}: {name!r} is stored as {a.dtype} (a quantized model); convert a float16/float32 "
                "CTranslate2 model (tfcore quantizes at load with dtype='int8')"
            )
        if any(k.startswith(name.rsplit("/", 1)[0] + "/weight_scale") for k in v):
            raise CheckpointError(f"{mb}: {name!r} is quantized (weight_scale present)")
        return a

    emb = need("decoder/embeddings/weight")
    if emb.ndim != 2:
        raise CheckpointError(f"{mb}: decoder/embeddings/weight must be 2-D, got {emb.shape}")
    V, C = emb.shape
    conv1 = need("encoder/conv1/weight")
    if conv1.ndim != 3 or conv1.shape[0] != C or conv1.shape[2] != 3:
        raise CheckpointError(
            f"{mb}: encoder/conv1/weight has shape {conv1.shape}, expected ({C}, n_mels, 3)"
        )
    M = conv1.shape[1]
    enc_pos = need("encoder/position_encodings/encodings")
    dec_pos = need("decoder/position_encodings/encodings")
    n_enc = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_dec = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    if n_enc == 0 or n_dec == 0:
        raise CheckpointError(f"{mb}: no encoder or decoder layers")
    H_enc = _scalar(v, "encoder/num_heads", mb)
    H_dec = _scalar(v, "decoder/num_heads", mb)
    F_enc = need("encoder/layer_0/ffn/linear_0/weight").shape[0]
    F_dec = need("decoder/layer_0/ffn/linear_0/weight").shape[0]

    hf: Dict[str, np.ndarray] = {}

    def put(name: str, a: np.ndarray) -> None:
        hf[name] = a

    def norm(src: str, dst: str) -> None:
        put(dst + ".weight", need(src + "/gamma", (C,)))
        put(dst + ".bias", need(src + "/beta", (C,)))

    def linear(src: str, dst: str, rows: int, cols: int) -> None:
        put(dst + ".weight", need(src + "/weight", (rows, cols)))
        put(dst + ".bias", need(src + "/bias", (rows,)))

    def fused(src: str, dst: str, names: List[str]) -> None:
        k = len(names)
        w, b = need(src + "/weight", (k * C, C)), need(src + "/bias", (k * C,))
        for j, n in enumerate(names):
            put(f"{dst}.{n}.weight", w[j * C : (j + 1) * C])
            if n == "k_proj":
                kb = b[j * C : (j + 1) * C]
                if np.any(_to_float32(kb) != 0):
                    raise CheckpointError(
                        f"{mb}: {src}/bias has a non-zero key bias; Whisper's k_proj has none"
                    )
            else:
                put(f"{dst}.{n}.bias", b[j * C : (j + 1) * C])

    def conv(i: int) -> None:
        put(f"model.encoder.conv{i}.weight", need(f"encoder/conv{i}/weight", (C, M if i == 1 else C, 3)))
        put(f"model.encoder.conv{i}.bias", need(f"encoder/conv{i}/bias", (C,)))

    conv(1)
    conv(2)
    put("model.encoder.embed_positions.weight", enc_pos)
    for kind, n_layers, F in (("encoder", n_enc, F_enc), ("decoder", n_dec, F_dec)):
        for i in range(n_layers):
            s, d = f"{kind}/layer_{i}", f"model.{kind}.layers.{i}"
            norm(f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm")
            fused(f"{s}/self_attention/linear_0", f"{d}.self_attn", ["q_proj", "k_proj", "v_proj"])
            linear(f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj", C, C)
            if kind == "decoder":
                norm(f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm")
                linear(f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj", C, C)
                fused(f"{s}/attention/linear_1", f"{d}.encoder_attn", ["k_proj", "v_proj"])
                linear(f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj", C, C)
            norm(f"{s}/ffn/layer_norm", f"{d}.final_layer_norm")
            linear(f"{s}/ffn/linear_0", f"{d}.fc1", F, C)
            linear(f"{s}/ffn/linear_1", f"{d}.fc2", C, F)
        norm(f"{kind}/layer_norm", f"model.{kind}.layer_norm")
    put("model.decoder.embed_tokens.weight", emb)
    put("model.decoder.embed_positions.weight", dec_pos)
    proj = v.get("decoder/projection/weight")
    if proj is not None and proj is not emb and not np.array_equal(proj, emb):
        put("proj_out.weight", need("decoder/projection/weight", (V, C)))
    if "decoder/projection/bias" in v:
        raise CheckpointError(f"{mb}: decoder/projection/bias: Whisper's output projection has no bias")

    # -- precision
    tensors, bf16 = {}, []
    for name, a in hf.items():
        if dtype is None:
            tensors[name] = np.ascontiguousarray(a)
            if a.dtype == np.uint16:
                bf16.append(name)
            continue
        f32 = _to_float32(a)
        if dtype == "float32":
            tensors[name] = f32
        elif dtype == "float16":
            tensors[name] = f32.astype(np.float16)
        else:
            from ._C import float32_to_bfloat16

            tensors[name] = float32_to_bfloat16(f32)
            bf16.append(name)

    # -- configs
    special = _special_ids(tok_path)

    def sid(token: str) -> int:
        if token not in special:
            raise CheckpointError(f"{tok_path}: no {token} added token (is this a Whisper tokenizer?)")
        return special[token]

    eot, sot = sid("<|endoftext|>"), sid("<|startoftranscript|>")
    multilingual = V >= 51865  # as transformers and CTranslate2 decide it
    stored_dtype = {np.dtype("<f2"): "float16", np.dtype("<f4"): "float32", np.dtype("<u2"): "bfloat16"}[
        emb.dtype
    ]
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": V,
        "num_mel_bins": M,
        "d_model": C,
        "encoder_layers": n_enc,
        "decoder_layers": n_dec,
        "encoder_attention_heads": H_enc,
        "decoder_attention_heads": H_dec,
        "encoder_ffn_dim": F_enc,
        "decoder_ffn_dim": F_dec,
        "max_source_positions": enc_pos.shape[0],
        "max_target_positions": dec_pos.shape[0],
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": "proj_out.weight" not in tensors,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "torch_dtype": dtype or stored_dtype,
        "converted_from": f"CTranslate2 {spec} revision {revision}",
    }
    generation = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "no_timestamps_token_id": sid("<|notimestamps|>"),
        "prev_sot_token_id": sid("<|startofprev|>"),
        "is_multilingual": multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": dec_pos.shape[0],
        "return_timestamps": False,
    }
    for src_key, dst_key in (
        ("suppress_ids", "suppress_tokens"),
        ("suppress_ids_begin", "begin_suppress_tokens"),
        ("alignment_heads", "alignment_heads"),
    ):
        if ct2_cfg.get(src_key) is not None:
            generation[dst_key] = ct2_cfg[src_key]
    if multilingual:
        by_id = {i: t for t, i in special.items()}
        langs = ct2_cfg.get("lang_ids") or []
        generation["lang_to_id"] = {by_id[i]: i for i in langs if i in by_id}
        generation["task_to_id"] = {"transcribe": sid("<|transcribe|>"), "translate": sid("<|translate|>")}
    preprocessor = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": M,
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
        "processor_class": "WhisperProcessor",
    }
    tokenizer_config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": 1024,
        "errors": "replace",
        "add_prefix_space": False,
    }

    os.makedirs(dest)
    try:
        save_file(tensors, os.path.join(dest, "model.safetensors"), metadata={"format": "pt"}, bf16=bf16)
        for name, values in (
            ("config.json", config),
            ("generation_config.json", generation),
            ("preprocessor_config.json", preprocessor),
            ("tokenizer_config.json", tokenizer_config),
        ):
            with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
                json.dump(values, f, indent=2)
                f.write("\n")
        shutil.copy2(tok_path, os.path.join(dest, "tokenizer.json"))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return len(tensors)


def _to_float32(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:  # bfloat16 bits
        return (a.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(a, dtype=np.float32)
