"""Read GGUF files (llama.cpp's checkpoint format) without PyTorch and without the ``gguf``
package.

The file is memory-mapped; every header field is validated before any tensor is handed out
(magic, version 2/3, counts that fit in the file, key/value types, strings inside the file,
tensor dimensions, known tensor types, alignment, data offsets aligned, inside the file and not
overlapping), so a truncated or hostile file raises :class:`CheckpointError` naming the problem.

Format (little-endian): ``b"GGUF"``, u32 version, u64 tensor count, u64 key/value count; the
key/values (string key, u32 value type, value); the tensor infos (string name, u32 n_dims,
n_dims x u64 dims with the fastest-varying first, u32 ggml type, u64 offset relative to the
data section); padding to ``general.alignment`` (default 32); the data section. A string is a
u64 byte length and UTF-8 bytes; an array is a u32 element type, a u64 count and the elements.

Quantized tensors are dequantized to float32 with the same float32 operations, in the same
order, as the ``gguf`` package's reference dequantization (so the results are bit-equal):
Q8_0, Q4_0, Q4_1 (blocks of 32) and Q4_K, Q5_K, Q6_K (super-blocks of 256).

:func:`load` turns a file into tfcore's ``(Config, checkpoint)`` pair: the metadata into a
Hugging Face config (``ARCHITECTURES``: one row per architecture) and the tensor names into
HF's (``llama.cpp``'s ``blk.N.attn_q.weight`` -> ``model.layers.N.self_attn.q_proj.weight``),
undoing the row permutation llama.cpp's converter applies to Llama's q/k projections.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .config import Config
from .safetensors import CheckpointError

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 used 32-bit counts and is not written by any current tool
DEFAULT_ALIGNMENT = 32
MAX_ALIGNMENT = 2**16
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 2  # arrays of arrays exist in the spec; nothing deeper is meaningful
MAX_STRING_BYTES = 2**26  # a chat template is kB; a merges entry bytes

# GGUF metadata value types: id -> (name, struct code or None for string/array)
_VALUE_TYPES: Dict[int, Tuple[str, Optional[str]]] = {
    0: ("UINT8", "<B"),
    1: ("INT8", "<b"),
    2: ("UINT16", "<H"),
    3: ("INT16", "<h"),
    4: ("UINT32", "<I"),
    5: ("INT32", "<i"),
    6: ("FLOAT32", "<f"),
    7: ("BOOL", "<?"),
    8: ("STRING", None),
    9: ("ARRAY", None),
    10: ("UINT64", "<Q"),
    11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}


class GGMLType:
    """One ggml tensor type: name, elements per block, bytes per block."""

    __slots__ = ("id", "name", "block", "nbytes")

    def __init__(self, id: int, name: str, block: int, nbytes: int):
        self.id, self.name, self.block, self.nbytes = id, name, block, nbytes

    def __repr__(self) -> str:
        return f"GGMLType({self.name})"


# Every ggml type id a GGUF file may name (so an unknown id is a malformed file), with its
# block geometry (needed to validate sizes even for types tfcore cannot dequantize).
GGML_TYPES: Dict[int, GGMLType] = {
    t.id: t
    for t in (
        GGMLType(0, "F32", 1, 4),
        GGMLType(1, "F16", 1, 2),
        GGMLType(2, "Q4_0", 32, 18),
        GGMLType(3, "Q4_1", 32, 20),
        GGMLType(6, "Q5_0", 32, 22),
        GGMLType(7, "Q5_1", 32, 24),
        GGMLType(8, "Q8_0", 32, 34),
        GGMLType(9, "Q8_1", 32, 36),
        GGMLType(10, "Q2_K", 256, 84),
        GGMLType(11, "Q3_K", 256, 110),
        GGMLType(12, "Q4_K", 256, 144),
        GGMLType(13, "Q5_K", 256, 176),
        GGMLType(14, "Q6_K", 256, 210),
        GGMLType(15, "Q8_K", 256, 292),
        GGMLType(16, "IQ2_XXS", 256, 66),
        GGMLType(17, "IQ2_XS", 256, 74),
        GGMLType(18, "IQ3_XXS", 256, 98),
        GGMLType(19, "IQ1_S", 256, 50),
        GGMLType(20, "IQ4_NL", 32, 18),
        GGMLType(21, "IQ3_S", 256, 110),
        GGMLType(22, "IQ2_S", 256, 82),
        GGMLType(23, "IQ4_XS", 256, 136),
        GGMLType(24, "I8", 1, 1),
        GGMLType(25, "I16", 1, 2),
        GGMLType(26, "I32", 1, 4),
        GGMLType(27, "I64", 1, 8),
        GGMLType(28, "F64", 1, 8),
        GGMLType(29, "IQ1_M", 256, 56),
        GGMLType(30, "BF16", 1, 2),
        GGMLType(34, "TQ1_0", 256, 54),
        GGMLType(35, "TQ2_0", 256, 66),
    )
}


class GGUFTensorInfo:
    """A tensor of a GGUF file: name, ggml type, NumPy-order shape (slowest dim first, the
    reverse of the file's order), byte range inside the file."""

    __slots__ = ("name", "type", "shape", "begin", "end")

    def __init__(self, name: str, type: GGMLType, shape: Tuple[int, ...], begin: int, end: int):
        self.name, self.type, self.shape, self.begin, self.end = name, type, shape, begin, end

    @property
    def dtype(self) -> str:
        return self.type.name

    def __repr__(self) -> str:
        return f"GGUFTensorInfo({self.name!r}, {self.type.name}, {self.shape})"


class _Cursor:
    """Bounds-checked little-endian reads from the file's bytes."""

    def __init__(self, buf: memoryview, where: str):
        self.buf, self.pos, self.where = buf, 0, where

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise CheckpointError(
                f"{self.where}: {what} at byte {self.pos} needs {n} bytes but the file ends at "
                f"{len(self.buf)} (truncated file?)"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, code: str, what: str):
        return struct.unpack(code, self.take(struct.calcsize(code), what))[0]

    def string(self, what: str) -> str:
        n = self.scalar("<Q", what + " length")
        if n > MAX_STRING_BYTES:
            raise CheckpointError(f"{self.where}: {what} claims {n} bytes (limit {MAX_STRING_BYTES})")
        raw = self.take(n, what)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{self.where}: {what} is not valid UTF-8 ({e.reason})") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype not in _VALUE_TYPES:
            raise CheckpointError(
                f"{self.where}: {what} has unknown value type {vtype} (known: 0-{max(_VALUE_TYPES)})"
            )
        name, code = _VALUE_TYPES[vtype]
        if code is not None:
            return self.scalar(code, what)
        if name == "STRING":
            return self.string(what)
        if depth >= MAX_ARRAY_DEPTH:
            raise CheckpointError(f"{self.where}: {what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
        etype = self.scalar("<I", what + " element type")
        count = self.scalar("<Q", what + " element count")
        left = len(self.buf) - self.pos
        if etype in _VALUE_TYPES and _VALUE_TYPES[etype][1] is not None:
            size = struct.calcsize(_VALUE_TYPES[etype][1])
            if count > left // size:
                raise CheckpointError(
                    f"{self.where}: {what} claims {count} elements of {size} bytes, beyond the "
                    f"{left} bytes left in the file"
                )
            arr = np.frombuffer(self.take(count * size, what), dtype=np.dtype(_VALUE_TYPES[etype][1]))
            return arr.copy()  # metadata outlives the map
        if count > left // 8:  # a string or array element takes at least 8 bytes
            raise CheckpointError(
                f"{self.where}: {what} claims {count} elements, more than the {left} bytes left can hold"
            )
        return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(count)]


class GGUFFile:
    """One GGUF file, validated and memory-mapped (read-only): ``metadata`` (key -> value;
    arrays of numbers as NumPy arrays, arrays of strings as lists) and ``tensors`` (name ->
    :class:`GGUFTensorInfo`, in file order)."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(os.path.expanduser(os.fspath(path)))
        where = str(self.path)
        try:
            size = self.path.stat().st_size
            if size < 24:
                raise CheckpointError(f"{where}: {size} bytes is too short for a GGUF file")
            with open(self.path, "rb") as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise CheckpointError(f"{where}: cannot read ({e.strerror})") from None
        try:
            self._parse(memoryview(self._mm), size, where)
        except BaseException:
            self.close()
            raise
        self.size = size

    def _parse(self, buf: memoryview, size: int, where: str) -> None:
        c = _Cursor(buf, where)
        magic = bytes(c.take(4, "magic"))
        if magic != MAGIC:
            raise CheckpointError(f"{where}: not a GGUF file (magic {magic!r}, expected {MAGIC!r})")
        self.version = c.scalar("<I", "version")
        if self.version not in VERSIONS:
            raise CheckpointError(
                f"{where}: GGUF version {self.version} is not supported (tfcore reads versions 2 and 3)"
            )
        n_tensors = c.scalar("<Q", "tensor count")
        n_kv = c.scalar("<Q", "key/value count")
        # each key/value takes >= 8 + 4 + 1 bytes and each tensor info >= 8 + 4 + 8 + 4 + 8
        if n_kv > size // 13 or n_tensors > size // 32:
            raise CheckpointError(
                f"{where}: header claims {n_tensors} tensors and {n_kv} key/values, more than "
                f"a {size}-byte file can hold"
            )
        self.metadata: Dict[str, Any] = {}
        for i in range(n_kv):
            key = c.string(f"key {i}")
            if key in self.metadata:
                raise CheckpointError(f"{where}: metadata key {key!r} appears twice")
            vtype = c.scalar("<I", f"type of {key!r}")
            self.metadata[key] = c.value(vtype, f"value of {key!r}")
        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if (
            not isinstance(alignment, int)
            or isinstance(alignment, bool)
            or not 1 <= alignment <= MAX_ALIGNMENT
            or alignment & (alignment - 1)
        ):
            raise CheckpointError(
                f"{where}: general.alignment must be a power of two <= {MAX_ALIGNMENT}, got {alignment!r}"
            )
        self.alignment = alignment
        infos = []
        names = set()
        for i in range(n_tensors):
            name = c.string(f"tensor {i} name")
            if name in names:
                raise CheckpointError(f"{where}: tensor name {name!r} appears twice")
            names.add(name)
            n_dims = c.scalar("<I", f"tensor {name!r} n_dims")
            if not 1 <= n_dims <= MAX_DIMS:
                raise CheckpointError(f"{where}: tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS})")
            dims = [c.scalar("<Q", f"tensor {name!r} dims") for _ in range(n_dims)]
            if any(d < 1 or d >= 2**48 for d in dims) or math.prod(dims) >= 2**48:
                raise CheckpointError(f"{where}: tensor {name!r} has invalid dimensions {dims}")
            tid = c.scalar("<I", f"tensor {name!r} type")
            if tid not in GGML_TYPES:
                raise CheckpointError(f"{where}: tensor {name!r} has unknown ggml type {tid}")
            t = GGML_TYPES[tid]
            if dims[0] % t.block:
                raise CheckpointError(
                    f"{where}: tensor {name!r} is {t.name} (blocks of {t.block}) but its rows have "
                    f"{dims[0]} elements"
                )
            offset = c.scalar("<Q", f"tensor {name!r} offset")
            if offset % alignment:
                raise CheckpointError(
                    f"{where}: tensor {name!r} offset {offset} is not a multiple of the alignment {alignment}"
                )
            nbytes = math.prod(dims) // t.block * t.nbytes
            infos.append((name, t, tuple(reversed(dims)), offset, nbytes))
        self.data_start = -(-c.pos // alignment) * alignment
        data_size = size - self.data_start
        self.tensors: Dict[str, GGUFTensorInfo] = {}
        for name, t, shape, offset, nbytes in infos:
            if data_size < 0 or offset + nbytes > data_size:
                raise CheckpointError(
                    f"{where}: tensor {name!r} ({t.name} {shape}, {nbytes} bytes at data offset "
                    f"{offset}) ends beyond the file's {max(data_size, 0)}-byte data section (truncated file?)"
                )
            begin = self.data_start + offset
            self.tensors[name] = GGUFTensorInfo(name, t, shape, begin, begin + nbytes)
        spans = sorted((t.begin, t.end, t.name) for t in self.tensors.values())
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise CheckpointError(f"{where}: tensors {n0!r} and {n1!r} overlap")

    def close(self) -> None:
        mm, self._mm = getattr(self, "_mm", None), None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a view handed out still uses it: the map lives on with it
                pass

    def release_pages(self) -> None:
        """Drop the file's pages from this process's resident memory (views stay valid)."""
        if self._mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as stored: a read-only uint8 view of the file, shape
        (rows..., bytes per row)."""
        t = self.info(name)
        a = np.frombuffer(self._mm, dtype=np.uint8, count=t.end - t.begin, offset=t.begin)
        row_bytes = t.shape[-1] // t.type.block * t.type.nbytes
        return a.reshape(t.shape[:-1] + (row_bytes,))

    def info(self, name: str) -> GGUFTensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None

    def float32(self, name: str) -> np.ndarray:
        """The tensor dequantized to float32 (NumPy-order shape)."""
        t = self.info(name)
        fn = DEQUANTIZE.get(t.type.name)
        if fn is None:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} is {t.type.name}, which tfcore cannot dequantize "
                f"(supported: {', '.join(DEQUANTIZE)})"
            )
        raw = self.raw(name)
        with np.errstate(all="ignore"):  # non-finite results are refused just below
            out = fn(raw.reshape(-1, t.type.nbytes))
        if not np.isfinite(out).all():
            raise CheckpointError(
                f"{self.path}: tensor {name!r} ({t.type.name}) holds NaN or infinite values "
                "(corrupt block scales?)"
            )
        return out.reshape(t.shape)


# ---------------------------------------------------------------- dequantization
# Each function takes blocks (n_blocks, bytes per block) uint8 and returns (n_blocks,
# elements per block) float32, with float32 operations in the reference's order.


def _f16(b: np.ndarray) -> np.ndarray:
    """Bytes (n, 2) holding float16 -> (n, 1) float32."""
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray, group: int) -> np.ndarray:
    """(n, k*group/2) packed bytes -> (n, k, 2*group) values 0..15: in each group of group/2
    bytes... the low nibbles are elements 0..group/2-1 and the high ones the next group/2."""
    n = qs.shape[0]
    q = qs.reshape(n, -1, group // 2)
    return np.concatenate([q & 0x0F, q >> 4], axis=-1)


def _deq_f32(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f4").copy()


def _deq_f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _deq_bf16(b: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(b).view("<u2").astype(np.uint32) << 16).view(np.float32)


def _deq_q8_0(b: np.ndarray) -> np.ndarray:
    # block: f16 d, 32 x int8 q; x = q * d
    d = _f16(b[:, :2])
    return b[:, 2:].view(np.int8).astype(np.float32) * d


def _deq_q4_0(b: np.ndarray) -> np.ndarray:
    # block: f16 d, 16 bytes of nibbles (low: elements 0-15, high: 16-31); x = d * (q - 8)
    d = _f16(b[:, :2])
    q = _nibbles(b[:, 2:], 32).reshape(b.shape[0], 32).astype(np.int8) - np.int8(8)
    return d * q.astype(np.float32)


def _deq_q4_1(b: np.ndarray) -> np.ndarray:
    # block: f16 d, f16 m, 16 bytes of nibbles; x = d * q + m
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    q = _nibbles(b[:, 4:], 32).reshape(b.shape[0], 32).astype(np.float32)
    return d * q + m


def _k_scales(s: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The 12 scale bytes of a Q4_K/Q5_K super-block -> 8 six-bit scales and 8 six-bit mins:
    bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7; bytes 4-7 the
    same for the mins; bytes 8-11 the low 4 bits of scales 4-7 (low nibble) and mins 4-7."""
    a, b, c = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 2) & 0x30)], axis=1)
    mn = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 2) & 0x30)], axis=1)
    return sc, mn


def _deq_q4_k(b: np.ndarray) -> np.ndarray:
    # super-block: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles for 8 sub-blocks of 32
    # (each 32 bytes: low nibbles sub-block 2j, high nibbles 2j+1); x = (d*sc) * q - dmin*m
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _k_scales(b[:, 4:16])
    ds = (d * sc.astype(np.float32))[:, :, None]
    dm = (dmin * mn.astype(np.float32))[:, :, None]
    q = _nibbles(b[:, 16:], 64).reshape(n, 8, 32).astype(np.float32)
    return (ds * q - dm).reshape(n, 256)


def _deq_q5_k(b: np.ndarray) -> np.ndarray:
    # as Q4_K plus 32 bytes qh: bit j of qh[i] is the fifth bit of element i of sub-block j
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _k_scales(b[:, 4:16])
    ds = (d * sc.astype(np.float32))[:, :, None]
    dm = (dmin * mn.astype(np.float32))[:, :, None]
    qh = b[:, 16:48]
    lo = _nibbles(b[:, 48:], 64).reshape(n, 8, 32)
    hi = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
    q = (lo | (hi << 4)).astype(np.float32)
    return (ds * q - dm).reshape(n, 256)


def _deq_q6_k(b: np.ndarray) -> np.ndarray:
    # super-block: 128 bytes ql (low 4 bits), 64 bytes qh (2 high bits), 16 int8 scales (one
    # per 16 elements), f16 d; x = (d * scale) * (q - 32). Each half of 128 elements uses 64
    # ql bytes (low nibbles elements 0-63, high 64-127) and 32 qh bytes (bit pairs 0,2,4,6 for
    # the four runs of 32).
    n = b.shape[0]
    ql, qh, sc = b[:, :128], b[:, 128:192], b[:, 192:208].view(np.int8)
    d = _f16(b[:, 208:210])
    ds = (d * sc.astype(np.float32)).reshape(n, 16, 1)
    lo = _nibbles(ql, 128).reshape(n, 2, 4, 32)
    hi = (qh.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    q = (lo | (hi << 4)).astype(np.int8) - np.int8(32)
    return (ds * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, 256)


DEQUANTIZE: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "F32": _deq_f32,
    "F16": _deq_f16,
    "BF16": _deq_bf16,
    "Q8_0": _deq_q8_0,
    "Q4_0": _deq_q4_0,
    "Q4_1": _deq_q4_1,
    "Q4_K": _deq_q4_k,
    "Q5_K": _deq_q5_k,
    "Q6_K": _deq_q6_k,
}


# ---------------------------------------------------------------- architectures


def _unpermute_rope(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's converter's q/k row order (pairs interleaved per head) back to HF's
    rotate_half order: rows (heads, D/2, 2) -> (heads, 2, D/2)."""
    rows = w.shape[0]
    if w.ndim != 2 or rows % (2 * heads):
        raise CheckpointError(
            f"a q/k projection of shape {w.shape} cannot hold {heads} heads of an even head_dim"
        )
    return np.ascontiguousarray(
        w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


class Architecture:
    """How one ``general.architecture`` maps to a Hugging Face config and key names.

    config: HF key -> GGUF key (``{arch}`` replaced by the architecture name); tensors:
    regex over GGUF names -> HF name template; fix: optional per-tensor transform
    (name, array, config) -> array applied after dequantization."""

    def __init__(
        self,
        model_type: str,
        config: Dict[str, str],
        tensors: Dict[str, str],
        fix: Optional[Callable[[str, np.ndarray, Config], np.ndarray]] = None,
        defaults: Optional[Dict[str, Any]] = None,
        required: Tuple[str, ...] = (),
        derive: Optional[Callable[[Dict[str, Any]], None]] = None,
    ):
        self.model_type, self.config, self.fix = model_type, config, fix
        self.derive = derive  # fills HF keys the metadata implies but does not store
        self.required = required  # HF keys that must come out as positive ints
        self.tensors = [(re.compile(p + r"\Z"), t) for p, t in tensors.items()]
        self.defaults = defaults or {}

    def hf_name(self, name: str) -> Optional[str]:
        for pattern, template in self.tensors:
            m = pattern.match(name)
            if m:
                return m.expand(template)
        return None


def _llama_fix(name: str, w: np.ndarray, cfg: Config) -> np.ndarray:
    if name.endswith("self_attn.q_proj.weight"):
        return _unpermute_rope(w, cfg.num_attention_heads)
    if name.endswith("self_attn.k_proj.weight"):
        return _unpermute_rope(w, cfg.num_key_value_heads)
    return w


_LLAMA_BLOCK = {
    r"blk\.(\d+)\.attn_q\.weight": r"model.layers.\1.self_attn.q_proj.weight",
    r"blk\.(\d+)\.attn_k\.weight": r"model.layers.\1.self_attn.k_proj.weight",
    r"blk\.(\d+)\.attn_v\.weight": r"model.layers.\1.self_attn.v_proj.weight",
    r"blk\.(\d+)\.attn_q\.bias": r"model.layers.\1.self_attn.q_proj.bias",
    r"blk\.(\d+)\.attn_k\.bias": r"model.layers.\1.self_attn.k_proj.bias",
    r"blk\.(\d+)\.attn_v\.bias": r"model.layers.\1.self_attn.v_proj.bias",
    r"blk\.(\d+)\.attn_output\.weight": r"model.layers.\1.self_attn.o_proj.weight",
    r"blk\.(\d+)\.attn_norm\.weight": r"model.layers.\1.input_layernorm.weight",
    r"blk\.(\d+)\.ffn_norm\.weight": r"model.layers.\1.post_attention_layernorm.weight",
    r"blk\.(\d+)\.ffn_gate\.weight": r"model.layers.\1.mlp.gate_proj.weight",
    r"blk\.(\d+)\.ffn_up\.weight": r"model.layers.\1.mlp.up_proj.weight",
    r"blk\.(\d+)\.ffn_down\.weight": r"model.layers.\1.mlp.down_proj.weight",
    r"token_embd\.weight": "model.embed_tokens.weight",
    r"output_norm\.weight": "model.norm.weight",
    r"output\.weight": "lm_head.weight",
}

_LLAMA_CONFIG = {
    "num_hidden_layers": "{arch}.block_count",
    "hidden_size": "{arch}.embedding_length",
    "intermediate_size": "{arch}.feed_forward_length",
    "num_attention_heads": "{arch}.attention.head_count",
    "num_key_value_heads": "{arch}.attention.head_count_kv",
    "rms_norm_eps": "{arch}.attention.layer_norm_rms_epsilon",
    "rope_theta": "{arch}.rope.freq_base",
    "max_position_embeddings": "{arch}.context_length",
    "head_dim": "{arch}.attention.key_length",
    "vocab_size": "{arch}.vocab_size",
}


def _gemma2_fix(name: str, w: np.ndarray, cfg: Config) -> np.ndarray:
    # llama.cpp's converter stores Gemma's RMSNorm weights as 1 + w (transformers' GGUF
    # loader subtracts the 1 again, as here); q/k rows are not permuted for Gemma
    return w - np.float32(1.0) if name.endswith("norm.weight") else w


_GEMMA2_BLOCK = {
    **{k: v for k, v in _LLAMA_BLOCK.items() if "ffn_norm" not in k},
    r"blk\.(\d+)\.post_attention_norm\.weight": r"model.layers.\1.post_attention_layernorm.weight",
    r"blk\.(\d+)\.ffn_norm\.weight": r"model.layers.\1.pre_feedforward_layernorm.weight",
    r"blk\.(\d+)\.post_ffw_norm\.weight": r"model.layers.\1.post_feedforward_layernorm.weight",
}


def _gemma2_derive(values: Dict[str, Any]) -> None:
    """What a Gemma 2 GGUF file leaves to the reader, decided as llama.cpp does: the query
    scale's query_pre_attn_scalar is head_dim, except on the 27B shape (46 layers), where it is
    hidden_size / num_attention_heads; the soft-caps default to Gemma 2's 50 and 30."""
    C, H = values["hidden_size"], values["num_attention_heads"]
    D = values.get("head_dim") or C // H
    values.setdefault("query_pre_attn_scalar", C // H if values["num_hidden_layers"] == 46 else D)
    values.setdefault("attn_logit_softcapping", 50.0)
    values.setdefault("final_logit_softcapping", 30.0)


# general.architecture -> how to read it. Part B's other families (qwen2, qwen3, phi3,
# gptneox, falcon) are one row each once their mappings are written and tested.
ARCHITECTURES: Dict[str, Architecture] = {
    "llama": Architecture(
        "llama",
        _LLAMA_CONFIG,
        _LLAMA_BLOCK,
        _llama_fix,
        {"hidden_act": "silu"},
        required=(
            "num_hidden_layers",
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
        ),
    ),
    "gemma2": Architecture(
        "gemma2",
        {
            **_LLAMA_CONFIG,
            "sliding_window": "{arch}.attention.sliding_window",
            "attn_logit_softcapping": "{arch}.attn_logit_softcapping",
            "final_logit_softcapping": "{arch}.final_logit_softcapping",
        },
        _GEMMA2_BLOCK,
        _gemma2_fix,
        {"hidden_activation": "gelu_pytorch_tanh"},
        required=(
            "num_hidden_layers",
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
        ),
        derive=_gemma2_derive,
    ),
}


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, float)):
        return float(v)
    return v


class GGUFCheckpoint:
    """A GGUF file seen as tfcore's checkpoint: HF tensor names, float32 tensors in HF's
    shapes (dequantized, with the architecture's fixes), ``release_pages``."""

    format = "gguf"

    def __init__(self, file: GGUFFile, arch: Architecture, config: Config):
        self.file, self.arch, self.config = file, arch, config
        self.directory = file.path  # named in messages, like a checkpoint directory
        self.where: Dict[str, str] = {}
        self.skipped: List[str] = []
        for name in file.tensors:
            hf = arch.hf_name(name)
            if hf is None:
                self.skipped.append(name)  # e.g. rope_freqs.weight: recomputed from the config
            else:
                self.where[hf] = name

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def keys(self) -> List[str]:
        return list(self.where)

    def info(self, name: str) -> GGUFTensorInfo:
        try:
            return self.file.info(self.where[name])
        except KeyError:
            raise CheckpointError(f"{self.directory}: checkpoint has no tensor {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        return self.file.raw(self.info(name).name)

    def float32(self, name: str) -> np.ndarray:
        a = self.file.float32(self.info(name).name)
        if self.arch.fix is not None:
            a = self.arch.fix(name, a, self.config)
        return a

    def int4_linear(self, name: str):
        """The 2-D tensor as an int4 ``Linear`` (group 32) when it is stored as Q4_0, Q4_1 or
        Q4_K (repacked, not dequantized: :mod:`tfcore.gguf_int4`), else None."""
        from . import gguf_int4

        t = self.info(name)
        if t.type.name not in gguf_int4.FOUR_BIT_TYPES or len(t.shape) != 2:
            return None
        ok, perm = gguf_int4.row_permutation(self.arch.fix, name, t.shape[0], self.config)
        if not ok:
            return None
        return gguf_int4.linear_from_blocks(
            self.file.raw(t.name),
            t.type.name,
            t.type.nbytes,
            t.shape,
            perm,
            f"{self.directory}: tensor {t.name!r}",
        )

    def release_pages(self) -> None:
        self.file.release_pages()

    def nbytes(self) -> int:
        return sum(t.end - t.begin for t in self.file.tensors.values())


def is_gguf_path(path: Any) -> bool:
    """True when path names an existing file ending in .gguf (what from_pretrained routes here)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = os.path.expanduser(os.fspath(path))
    return p.lower().endswith(".gguf") and os.path.isfile(p)


def config_from_metadata(md: Dict[str, Any], names: List[str], where: str) -> Tuple[Config, Architecture]:
    """The HF config a GGUF file's metadata describes, and its architecture row."""
    arch_name = md.get("general.architecture")
    if not isinstance(arch_name, str):
        raise CheckpointError(f"{where}: metadata has no general.architecture string")
    arch = ARCHITECTURES.get(arch_name)
    if arch is None:
        raise CheckpointError(
            f"{where}: GGUF architecture {arch_name!r} is not supported "
            f"(tfcore reads: {', '.join(sorted(ARCHITECTURES))})"
        )
    values: Dict[str, Any] = {"model_type": arch.model_type, **arch.defaults}
    for hf_key, gguf_key in arch.config.items():
        key = gguf_key.format(arch=arch_name)
        if key in md:
            v = _plain(md[key])
            if isinstance(v, list):  # per-layer arrays (e.g. head_count_kv): one value only
                if not v or any(x != v[0] for x in v):
                    raise CheckpointError(f"{where}: {key} varies per layer ({v[:8]}...), not supported")
                v = v[0]
            values[hf_key] = v
    tokens = md.get("tokenizer.ggml.tokens")
    if "vocab_size" not in values and isinstance(tokens, list):
        values["vocab_size"] = len(tokens)
    if "num_key_value_heads" not in values and "num_attention_heads" in values:
        values["num_key_value_heads"] = values["num_attention_heads"]
    scaling = md.get(f"{arch_name}.rope.scaling.type")
    if scaling not in (None, "none"):
        factor = md.get(f"{arch_name}.rope.scaling.factor")
        if scaling != "linear" or not isinstance(factor, float):
            raise CheckpointError(f"{where}: rope scaling {scaling!r} is not supported (linear is)")
        values["rope_scaling"] = {"rope_type": "linear", "factor": float(factor)}
    for k in arch.required:
        v = values.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**31:
            keys = {hk: gk.format(arch=arch_name) for hk, gk in arch.config.items()}
            raise CheckpointError(
                f"{where}: metadata {keys.get(k, k)} (HF {k}) must be a positive integer, got {v!r}"
            )
    if arch.derive is not None:
        arch.derive(values)
    values["tie_word_embeddings"] = "output.weight" not in names
    for hf_key, gguf_key in (
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ):
        if isinstance(md.get(gguf_key), int):
            values[hf_key] = md[gguf_key]
    return Config(values), arch


def load(path: Union[str, os.PathLike]) -> Tuple[Config, GGUFCheckpoint]:
    """(config, checkpoint) of a GGUF file, for PreTrainedModel.from_pretrained."""
    f = GGUFFile(path)
    cfg, arch = config_from_metadata(f.metadata, list(f.tensors), str(f.path))
    return cfg, GGUFCheckpoint(f, arch, cfg)


def read_config(path: Union[str, os.PathLike]) -> Config:
    """Only the HF config of a GGUF file (AutoModel's dispatch)."""
    f = GGUFFile(path)
    try:
        return config_from_metadata(f.metadata, list(f.tensors), str(f.path))[0]
    finally:
        f.close()


__all__ = [
    "GGUFFile",
    "GGUFCheckpoint",
    "GGUFTensorInfo",
    "load",
    "read_config",
    "is_gguf_path",
    "DEQUANTIZE",
]
