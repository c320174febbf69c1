"""Read PyTorch ``pytorch_model.bin`` checkpoints without PyTorch, and without running them.

A ``torch.save`` file is a pickle; unpickling one with :mod:`pickle` (or ``torch.load``
without ``weights_only``) runs whatever callables it names, so a checkpoint from an untrusted
source can execute code. This reader uses a restricted unpickler that knows only what a state
dict is made of: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor_v3`` /
``_rebuild_parameter``, the typed storage classes (``torch.FloatStorage``, ...), torch dtypes
and ``collections.OrderedDict``. Each is replaced by a stand-in here that only records
(storage, offset, shape, strides); any other global (``os.system``, ``builtins.eval``, ...) is
refused with :class:`~tfcore.CheckpointError` before anything is called.

Formats:

- zip (``torch.save`` since PyTorch 1.6): ``<archive>/data.pkl`` plus one member
  ``<archive>/data/<key>`` per storage. torch stores members uncompressed, so tensors are
  zero-copy views of one read-only ``np.memmap`` of the file (a compressed member is read
  once into memory).
- legacy (``_use_new_zipfile_serialization=False``): magic-number, protocol and sys-info
  pickles, the state-dict pickle, the list of storage keys, then each storage's bytes after
  an 8-byte element count; also memory-mapped.

Tensors come out with the safetensors dtype names (``F32``, ``BF16`` as uint16 bits, ...)
so :class:`tfcore.safetensors.Checkpoint` serves both formats through one interface.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from .safetensors import DTYPES, CheckpointError, SafetensorsFile, TensorInfo

# torch storage class / dtype name -> safetensors dtype name
_STORAGES = {
    "FloatStorage": "F32",
    "DoubleStorage": "F64",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}
_DTYPES = {
    "float32": "F32",
    "float": "F32",
    "float64": "F64",
    "double": "F64",
    "float16": "F16",
    "half": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "long": "I64",
    "int32": "I32",
    "int": "I32",
    "int16": "I16",
    "short": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_PICKLE_BYTES = 1 << 30


class _StorageType:
    """Stand-in for torch.FloatStorage & co: only its dtype matters."""

    def __init__(self, dtype: str):
        self.dtype = dtype


class _Dtype:
    """Stand-in for a torch dtype object (torch.bfloat16 in _rebuild_tensor_v3's arguments)."""

    def __init__(self, dtype: str):
        self.dtype = dtype


class _Storage:
    """A storage the pickle refers to: its key (zip member / legacy record), dtype, size."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: str, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    """What _rebuild_tensor_v2 would have built: a strided view of a storage."""

    __slots__ = ("storage", "offset", "shape", "stride", "dtype")

    def __init__(self, storage, offset, shape, stride, dtype=None):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
        for name, v in (("size", shape), ("stride", stride)):
            if not isinstance(v, tuple) or not all(isinstance(d, int) and d >= 0 for d in v):
                raise CheckpointError(f"tensor has an invalid {name} {v!r}")
        if not isinstance(offset, int) or offset < 0 or len(shape) != len(stride):
            raise CheckpointError(f"tensor has an invalid storage offset {offset!r} or stride {stride!r}")
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride
        self.dtype = dtype or storage.dtype
        if math.prod(shape):
            last = offset + sum((d - 1) * s for d, s in zip(shape, stride))
            if last >= storage.numel:
                raise CheckpointError(
                    f"tensor of shape {shape} at offset {offset} reaches element {last} of a "
                    f"{storage.numel}-element storage"
                )


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, *_):
    if not isinstance(dtype, _Dtype):
        raise CheckpointError(f"tensor dtype {dtype!r} is not a torch dtype")
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride), dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    if not isinstance(data, _Tensor):
        raise CheckpointError("nn.Parameter rebuilt from something that is not a tensor")
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    **{("torch", name): _StorageType(dt) for name, dt in _STORAGES.items()},
    **{("torch", name): _Dtype(dt) for name, dt in _DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds a state dict and nothing else: every global the pickle names is looked up in
    _ALLOWED (stand-ins defined here); anything else is refused before it is called."""

    def __init__(self, data: Union[bytes, io.IOBase], where: str):
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self.where = where

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise CheckpointError(
                f"{self.where}: refused to load: the pickle asks for {module}.{name}, which is not "
                "part of a tensor state dict (tfcore rebuilds tensors only and never runs code "
                "from a checkpoint; if you trust the file, re-save it with safetensors)"
            ) from None

    def persistent_load(self, pid):
        # zip: ('storage', storage_type, key, location, numel)
        # legacy: ('storage', storage_type, root_key, location, numel, view_metadata)
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise CheckpointError(f"{self.where}: unexpected persistent id {str(pid)[:80]!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise CheckpointError(f"{self.where}: storage views (PyTorch < 0.4 files) are not supported")
        return _Storage(pid[2], pid[1].dtype, pid[4])


# what unpickling a truncated or garbled stream raises (reported as a CheckpointError)
_MALFORMED_PICKLE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
)


def _unpickle(data: bytes, where: str):
    try:
        return _RestrictedUnpickler(data, where).load()
    except CheckpointError:
        raise
    except _MALFORMED_PICKLE as e:
        raise CheckpointError(
            f"{where}: not a valid PyTorch checkpoint pickle ({type(e).__name__}: {e})"
        ) from None
    except RecursionError:
        raise CheckpointError(f"{where}: pickle is nested too deeply") from None


def _state_dict(obj, where: str) -> Dict[str, _Tensor]:
    """The {name: tensor} mapping of an unpickled checkpoint (a state dict, or a dict holding
    one under "state_dict" / "model")."""
    if isinstance(obj, dict) and not all(isinstance(v, _Tensor) for v in obj.values()):
        for k in ("state_dict", "model", "module"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where}: holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, _Tensor):
            raise CheckpointError(f"{where}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v
    return out


class TorchBinFile:
    """One PyTorch checkpoint file (zip or legacy format), read safely; the same interface as
    :class:`tfcore.safetensors.SafetensorsFile` (``tensors``, ``info``, ``raw``, ``float32``)."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        where = str(self.path)
        try:
            size = self.path.stat().st_size
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size else None
        except OSError as e:
            raise CheckpointError(f"{where}: cannot read ({e.strerror})") from None
        if self._map is None:
            raise CheckpointError(f"{where}: empty file")
        self._base: Dict[str, Tuple[np.ndarray, int]] = {}  # storage key -> (bytes, byte offset)
        if zipfile.is_zipfile(self.path):
            tensors = self._read_zip(where)
        else:
            tensors = self._read_legacy(where)
        self._tensors = tensors
        self.tensors: Dict[str, TensorInfo] = {}
        for name, t in tensors.items():
            item = DTYPES[t.dtype][1]
            self.tensors[name] = TensorInfo(name, t.dtype, t.shape, 0, math.prod(t.shape) * item)
        self.metadata: Dict[str, str] = {"format": "pt"}

    def _read_zip(self, where: str) -> Dict[str, _Tensor]:
        try:
            zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(f"{where}: not a readable zip archive ({e})") from None
        with zf:
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise CheckpointError(f"{where}: a PyTorch zip checkpoint has one data.pkl, found {len(pkl)}")
            prefix = pkl[0][: -len("data.pkl")]
            info = zf.getinfo(pkl[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{where}: data.pkl is {info.file_size} bytes, beyond any state dict")
            tensors = _state_dict(_unpickle(zf.read(pkl[0]), where), where)
            members = {}
            for t in tensors.values():
                key = t.storage.key
                if key in members:
                    continue
                try:
                    zi = zf.getinfo(f"{prefix}data/{key}")
                except KeyError:
                    raise CheckpointError(f"{where}: storage {key!r} is missing from the archive") from None
                members[key] = zi
                need = t.storage.numel * DTYPES[t.storage.dtype][1]
                if zi.file_size < need:
                    raise CheckpointError(
                        f"{where}: storage {key!r} holds {zi.file_size} bytes, its tensors need {need}"
                    )
                if zi.compress_type == zipfile.ZIP_STORED:
                    # local header: 30 fixed bytes, then the name and extra field
                    h = bytes(self._map[zi.header_offset : zi.header_offset + 30])
                    if len(h) < 30 or h[:4] != b"PK\x03\x04":
                        raise CheckpointError(f"{where}: bad zip local header for storage {key!r}")
                    n, extra = struct.unpack("<HH", h[26:30])
                    start = zi.header_offset + 30 + n + extra
                    if start + zi.file_size > len(self._map):
                        raise CheckpointError(f"{where}: storage {key!r} runs past the end of the file")
                    self._base[key] = (self._map, start)
                else:
                    self._base[key] = (np.frombuffer(zf.read(zi), np.uint8), 0)
        return tensors

    def _read_legacy(self, where: str) -> Dict[str, _Tensor]:
        with open(self.path, "rb") as f:
            try:
                magic = _unpickle_plain(f, where)
                if magic != _LEGACY_MAGIC:
                    raise CheckpointError(
                        f"{where}: not a PyTorch checkpoint (neither a zip archive nor the legacy format)"
                    )
                _unpickle_plain(f, where)  # protocol version
                _unpickle_plain(f, where)  # sys info
                # the state-dict pickle runs to its STOP opcode: unpickle from the file object
                obj = _RestrictedUnpickler(f, where).load()
                keys = _unpickle_plain(f, where)
            except CheckpointError:
                raise
            except _MALFORMED_PICKLE as e:
                raise CheckpointError(
                    f"{where}: not a valid PyTorch checkpoint ({type(e).__name__}: {e})"
                ) from None
            tensors = _state_dict(obj, where)
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise CheckpointError(f"{where}: malformed storage key list")
            dtypes = {t.storage.key: t.storage.dtype for t in tensors.values()}
            pos = f.tell()
        for key in keys:
            if pos + 8 > len(self._map):
                raise CheckpointError(f"{where}: truncated at storage {key!r}")
            (numel,) = struct.unpack("<q", bytes(self._map[pos : pos + 8]))
            item = DTYPES[dtypes.get(key, "U8")][1]
            if numel < 0 or pos + 8 + numel * item > len(self._map):
                raise CheckpointError(f"{where}: storage {key!r} runs past the end of the file")
            self._base[key] = (self._map, pos + 8)
            pos += 8 + numel * item
        for t in tensors.values():
            if t.storage.key not in self._base:
                raise CheckpointError(f"{where}: storage {t.storage.key!r} is missing from the file")
        return tensors

    def keys(self) -> List[str]:
        return list(self.tensors)

    def release_pages(self) -> None:
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map._mmap.madvise(mmap.MADV_DONTNEED)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored (BF16 as uint16 bits): a read-only view of the file when it is
        contiguous and aligned, else one copy."""
        self.info(name)
        t = self._tensors[name]
        dt = DTYPES[t.dtype][0]
        if not math.prod(t.shape):
            return np.zeros(t.shape, dt)
        buf, start = self._base[t.storage.key]
        item = dt.itemsize
        count = t.storage.numel * DTYPES[t.storage.dtype][1] // item
        flat = buf[start : start + count * item].view(dt) if (start % item == 0) else None
        if flat is None:  # unaligned member: one copy
            flat = np.frombuffer(bytes(buf[start : start + count * item]), dt)
        n = math.prod(t.shape)
        contiguous = [math.prod(t.shape[i + 1 :]) for i in range(len(t.shape))]
        if all(s == c for s, c, d in zip(t.stride, contiguous, t.shape) if d > 1):
            return flat[t.offset : t.offset + n].reshape(t.shape)  # a view of the file
        view = np.lib.stride_tricks.as_strided(
            flat[t.offset :], shape=t.shape, strides=tuple(s * item for s in t.stride), writeable=False
        )
        return np.ascontiguousarray(view)

    # the same conversion as a safetensors file's: it reads only info(), raw() and path
    float32 = SafetensorsFile.float32


class _PlainUnpickler(pickle.Unpickler):
    """The legacy header pickles hold only ints, strings and dicts: no global at all."""

    def find_class(self, module: str, name: str):
        raise CheckpointError(f"refused to load: the checkpoint header asks for {module}.{name}")


def _unpickle_plain(f, where: str):
    return _PlainUnpickler(f).load()
