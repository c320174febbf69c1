"""Read ``*.safetensors`` checkpoints (single file or sharded with an index) without PyTorch.

Tensors are zero-copy views of one read-only ``np.memmap`` per file: loading a model maps
the file and touches only the pages its layers read. Every header is validated before any
tensor is handed out (length, JSON, dtypes, shapes, offsets in bounds, no overlaps, sizes
that match shape x dtype), so a truncated or hostile file raises :class:`CheckpointError`.

Format: 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then
the data; offsets are relative to the end of the header.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C

MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation's limit
MAX_JSON_DEPTH = 4  # {name: {"shape": [dims]}}: anything deeper is not a safetensors header

# safetensors dtype -> (NumPy dtype of the stored bits, itemsize). BF16 is kept as uint16
# bits and converted in C; 8-bit floats have no NumPy dtype and are refused when read.
DTYPES: Dict[str, Tuple[Optional[np.dtype], int]] = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U64": (np.dtype("<u8"), 8),
    "U32": (np.dtype("<u4"), 4),
    "U16": (np.dtype("<u2"), 2),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
    "F8_E4M3": (None, 1),
    "F8_E5M2": (None, 1),
}


class CheckpointError(_C.TfcoreValueError):
    """A checkpoint file or directory is missing, malformed or inconsistent."""


class TensorInfo:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: Tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    def __repr__(self) -> str:
        return f"TensorInfo({self.name!r}, {self.dtype}, {self.shape})"


def _json_depth(obj, depth: int = 0) -> int:
    if isinstance(obj, dict):
        return max((_json_depth(v, depth + 1) for v in obj.values()), default=depth + 1)
    if isinstance(obj, list):
        return max((_json_depth(v, depth + 1) for v in obj), default=depth + 1)
    return depth


def parse_header(raw: bytes, data_size: int, where: str) -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    """Validate a header (the JSON bytes) against a data section of data_size bytes."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{where}: header is not valid UTF-8 JSON ({e.__class__.__name__}: {e})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: header must be a JSON object, got {type(header).__name__}")
    if _json_depth(header) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{where}: header is nested deeper than a safetensors header can be")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{where}: __metadata__ must map strings to strings")
    tensors: Dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: entry {name!r} must be an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(
                f"{where}: tensor {name!r} has unknown dtype {dtype!r} (known: {', '.join(DTYPES)})"
            )
        if (
            not isinstance(shape, list)
            or len(shape) > 16
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**48 for d in shape)
        ):
            raise CheckpointError(f"{where}: tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise CheckpointError(f"{where}: tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise CheckpointError(
                f"{where}: tensor {name!r} has data_offsets [{begin}, {end}] outside "
                f"the {data_size}-byte data section (truncated file?)"
            )
        nbytes = math.prod(shape) * DTYPES[dtype][1]
        if end - begin != nbytes:
            raise CheckpointError(
                f"{where}: tensor {name!r} is {dtype} {tuple(shape)} = {nbytes} bytes "
                f"but its data_offsets span {end - begin}"
            )
        tensors[name] = TensorInfo(name, dtype, tuple(shape), begin, end)
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise CheckpointError(f"{where}: tensors {n0!r} and {n1!r} overlap")
    return tensors, metadata


class SafetensorsFile:
    """One ``.safetensors`` file, validated and memory-mapped (read-only)."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        where = str(self.path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise CheckpointError(f"{where}: {size} bytes is too short for a safetensors file")
                n = int.from_bytes(head, "little")
                if n > MAX_HEADER_BYTES or n > size - 8:
                    raise CheckpointError(
                        f"{where}: header length {n} is beyond the file "
                        f"({size} bytes) or the {MAX_HEADER_BYTES}-byte limit"
                    )
                raw = f.read(n)
        except OSError as e:
            raise CheckpointError(f"{where}: cannot read ({e.strerror})") from None
        self.data_start = 8 + n
        self.tensors, self.metadata = parse_header(raw, size - self.data_start, where)
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size > self.data_start else None

    def keys(self) -> List[str]:
        return list(self.tensors)

    def release_pages(self) -> None:
        """Drop the file's pages from this process's resident memory. Arrays viewing the
        map stay valid: a later read faults the page back in from the page cache."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map._mmap.madvise(mmap.MADV_DONTNEED)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored (BF16 as uint16 bits): a read-only view of the file, no copy."""
        t = self.info(name)
        dt = DTYPES[t.dtype][0]
        if dt is None:
            raise CheckpointError(f"{self.path}: tensor {name!r} is {t.dtype}, which tfcore cannot read yet")
        if t.end == t.begin:
            return np.zeros(t.shape, dt)
        view = self._map[self.data_start + t.begin : self.data_start + t.end].view(dt).reshape(t.shape)
        if not view.flags.aligned:  # offsets not a multiple of the itemsize: one copy
            view = np.array(view)
        return view

    def float32(self, name: str) -> np.ndarray:
        """The tensor as float32: zero-copy for F32, converted once otherwise."""
        t = self.info(name)
        a = self.raw(name)
        if t.dtype == "F32":
            return a
        if t.dtype == "BF16":
            return _C.bfloat16_to_float32(np.ascontiguousarray(a))
        if t.dtype in ("F16", "F64"):
            return a.astype(np.float32)
        raise CheckpointError(f"{self.path}: tensor {name!r} is {t.dtype}, not a floating-point tensor")


class Checkpoint:
    """All tensors of a checkpoint directory: ``model.safetensors`` or the shards listed in
    ``model.safetensors.index.json``; without those, PyTorch's ``pytorch_model.bin`` (or the
    shards of ``pytorch_model.bin.index.json``), read by :mod:`tfcore.torch_bin`'s restricted
    unpickler (tensors only, no code from the file is ever run)."""

    def __init__(self, directory: Union[str, os.PathLike]):
        from .torch_bin import TorchBinFile

        self.directory = Path(directory)
        self.files: Dict[str, Union[SafetensorsFile, "TorchBinFile"]] = {}
        self.where: Dict[str, str] = {}
        for stem, opener in (("model.safetensors", SafetensorsFile), ("pytorch_model.bin", TorchBinFile)):
            index = self.directory / f"{stem}.index.json"
            single = self.directory / stem
            if index.exists():
                self._read_index(index, opener)
                break
            if single.exists():
                self.files[single.name] = opener(single)
                self.where = {name: single.name for name in self.files[single.name].tensors}
                break
        else:
            raise CheckpointError(
                f"{self.directory}: no model.safetensors, model.safetensors.index.json, "
                "pytorch_model.bin or pytorch_model.bin.index.json (tfcore reads safetensors and "
                "PyTorch state-dict checkpoints)"
            )
        self.format = (
            "pytorch" if isinstance(next(iter(self.files.values()), None), TorchBinFile) else "safetensors"
        )

    def _read_index(self, index: Path, opener) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid checkpoint index ({e})") from None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: weight_map must be an object")
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith("."):
                raise CheckpointError(f"{index}: tensor {name!r} names an invalid shard {shard!r}")
            if shard not in self.files:
                self.files[shard] = opener(self.directory / shard)
            if name not in self.files[shard].tensors:
                raise CheckpointError(f"{index}: tensor {name!r} is not in shard {shard}")
            self.where[name] = shard

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def keys(self) -> List[str]:
        return list(self.where)

    def info(self, name: str) -> TensorInfo:
        return self._file(name).info(name)

    def _file(self, name: str) -> SafetensorsFile:
        try:
            return self.files[self.where[name]]
        except KeyError:
            raise CheckpointError(f"{self.directory}: checkpoint has no tensor {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        return self._file(name).raw(name)

    def float32(self, name: str) -> np.ndarray:
        return self._file(name).float32(name)

    def release_pages(self) -> None:
        for f in self.files.values():
            f.release_pages()

    def nbytes(self) -> int:
        return sum(t.end - t.begin for f in self.files.values() for t in f.tensors.values())


def save_file(
    tensors: Mapping[str, np.ndarray],
    path: Union[str, os.PathLike],
    metadata: Optional[Mapping[str, str]] = None,
    bf16: Sequence[str] = (),
) -> None:
    """Write NumPy arrays as a safetensors file (float32/float16/int/bool dtypes); the
    tensors named in bf16 are uint16 arrays of bfloat16 bits, stored as BF16."""
    names = {
        np.dtype("<f8"): "F64",
        np.dtype("<f4"): "F32",
        np.dtype("<f2"): "F16",
        np.dtype("<i8"): "I64",
        np.dtype("<i4"): "I32",
        np.dtype("<i2"): "I16",
        np.dtype("i1"): "I8",
        np.dtype("u1"): "U8",
        np.dtype("?"): "BOOL",
        np.dtype("<u2"): "U16",
        np.dtype("<u4"): "U32",
        np.dtype("<u8"): "U64",
    }
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset, arrays = 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in names or (name in bf16 and a.dtype != np.dtype("<u2")):
            raise CheckpointError(
                f"cannot save {name!r} with dtype {a.dtype}" + (" as BF16 bits" if name in bf16 else "")
            )
        dtype = "BF16" if name in bf16 else names[a.dtype]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
