"""GPTQ and AWQ 4-bit safetensors checkpoints (HF ``quantization_config`` with
``quant_method`` ``"gptq"`` or ``"awq"``), read without torch.

A quantized projection ``P`` is stored as three (four) tensors instead of ``P.weight``
``(out_features, in_features)``; with ``K = in_features``, ``N = out_features``, ``G`` groups:

- GPTQ (auto-gptq / optimum / gptqmodel; ``checkpoint_format`` ``"gptq"``, the default, or
  ``"gptq_v2"``): ``qweight`` int32 ``(K / 8, N)``, eight 4-bit values packed along the inputs
  (nibble ``j`` of ``qweight[r, n]`` is ``q[8 r + j, n]``); ``qzeros`` int32 ``(G, N / 8)``, packed
  along the outputs (nibble ``j`` of ``qzeros[g, c]`` is the zero point of output ``8 c + j``;
  the ``"gptq"`` format stores ``z - 1``, read back as ``(stored + 1) & 15``, ``gptq_v2`` stores
  ``z``); ``scales`` float16 ``(G, N)``; ``g_idx`` int32 ``(K,)``, the group of each input (``k //
  group_size`` without act-order, any assignment with ``desc_act``). Symmetric (``sym``)
  checkpoints are the same tensors with ``z = 8``.
- AWQ (autoawq, ``version`` ``"gemm"``): ``qweight`` int32 ``(K, N / 8)``, packed along the
  outputs in the interleaved order ``[0, 2, 4, 6, 1, 3, 5, 7]`` (nibble ``j`` of
  ``qweight[k, c]`` is output ``8 c + ORDER[j]``); ``qzeros`` int32 ``(G, N / 8)`` likewise
  (``z`` as is); ``scales`` float16 ``(G, N)``; groups contiguous, ``g = k // group_size``.

Both dequantize as ``W[n, k] = s[g(k), n] (q[k, n] - z[g(k), n])`` (HF's integration code
computes it in float16). In float32 that product is exact (an 11-bit scale times an integer
of at most 4 bits), so tfcore's float32 weights are the exact values, and HF's float16 ones
are those rounded to float16. With ``dtype="int4"`` the tensors become ``Linear.from_int4``'s
``W = d q + m`` with ``d = s`` and ``m = -s z`` -- the same exact values, kept in 4 bits at the
checkpoint's group size. GPTQ's act-order (``g_idx`` not ``k // group_size``) gives groups
that are not contiguous runs of inputs, which the 4-bit kernels' layout cannot hold without
permuting the layer's input at run time: such layers are dequantized exactly and, under
``dtype="int4"``, quantized again by round to nearest at the model's group size (a warning
says so; float32 / bfloat16 / int8 read them exactly).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

from .config import Config
from .safetensors import Checkpoint, CheckpointError, TensorInfo

log = logging.getLogger("tfcore")

METHODS = ("gptq", "awq")
GPTQ_FORMATS = ("gptq", "gptq_v2")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble j of an AWQ word holds output 8 c + AWQ_ORDER[j]
KERNEL_GROUPS = (32, 64, 128, 256)  # group sizes Linear.from_int4 keeps as they are
_PARTS = ("qweight", "qzeros", "scales", "g_idx")


class QuantConfig:
    """A checkpoint's ``quantization_config``, validated: method, bits (4), group size,
    GPTQ's desc_act / sym / checkpoint_format, AWQ's version / zero_point."""

    def __init__(self, qc: Any, where: str):
        if not isinstance(qc, dict):
            raise CheckpointError(f"{where}: quantization_config must be an object, got {type(qc).__name__}")
        method = qc.get("quant_method")
        if method not in METHODS:
            raise CheckpointError(
                f"{where}: quantization_config.quant_method {method!r} is not supported "
                f"(tfcore reads {', '.join(METHODS)} 4-bit checkpoints)"
            )
        self.method = method
        bits = qc.get("bits", qc.get("w_bit"))
        if bits != 4 or isinstance(bits, bool):
            raise CheckpointError(
                f"{where}: quantization_config.bits is {bits!r}; tfcore reads 4-bit {method}"
            )
        group = qc.get("group_size", qc.get("q_group_size"))
        if not isinstance(group, int) or isinstance(group, bool) or not (group == -1 or 0 < group < 2**31):
            raise CheckpointError(
                f"{where}: quantization_config.group_size must be a positive integer or -1, got {group!r}"
            )
        self.group_size = group  # -1: one group per row (GPTQ)
        self.desc_act = False
        self.format = method
        if method == "gptq":
            fmt = qc.get("checkpoint_format", "gptq")
            if fmt not in GPTQ_FORMATS:
                raise CheckpointError(
                    f"{where}: quantization_config.checkpoint_format {fmt!r} is not supported "
                    f"(tfcore reads {', '.join(GPTQ_FORMATS)})"
                )
            self.format = fmt
            for key in ("desc_act", "sym"):
                if not isinstance(qc.get(key, False), bool):
                    raise CheckpointError(f"{where}: quantization_config.{key} must be true or false")
            self.desc_act = qc.get("desc_act", False)
        else:
            version = str(qc.get("version", "gemm")).lower()
            if version != "gemm":
                raise CheckpointError(
                    f"{where}: AWQ version {qc.get('version')!r} is not supported (tfcore reads 'gemm', "
                    "autoawq's default layout)"
                )
            if qc.get("zero_point", True) is not True:
                raise CheckpointError(f"{where}: AWQ without zero points (zero_point=false) is not supported")
        skip = qc.get("modules_to_not_convert") or []
        if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
            raise CheckpointError(
                f"{where}: quantization_config.modules_to_not_convert must be a list of names"
            )


def _unpack(words: np.ndarray) -> np.ndarray:
    """int32 words (..., W) -> their eight nibbles (..., W, 8) uint8, nibble j = bits 4j..4j+3."""
    u = words.astype("<i4", copy=False).view("<u4")
    shifts = np.arange(0, 32, 4, dtype=np.uint32)
    return ((u[..., None] >> shifts) & 0xF).astype(np.uint8)


def unpack(method: str, fmt: str, qweight: np.ndarray, qzeros: np.ndarray, K: int, N: int):
    """(q (N, K) uint8 0..15, z (G, N) uint8 0..15) of a layer's packed tensors, as the module
    docstring states the formats; the caller has checked the shapes."""
    if method == "gptq":
        q = _unpack(qweight).transpose(0, 2, 1).reshape(K, N).T  # (K/8, N, 8) -> (K, N)
        z = _unpack(qzeros).reshape(qzeros.shape[0], N)
        if fmt == "gptq":  # stores z - 1 (mod 16)
            z = (z + 1) & 0xF
        return np.ascontiguousarray(q), z
    inverse = np.argsort(AWQ_ORDER)  # output 8c + i sits in nibble inverse[i]
    q = _unpack(qweight)[..., inverse].reshape(K, N).T
    z = _unpack(qzeros)[..., inverse].reshape(qzeros.shape[0], N)
    return np.ascontiguousarray(q), z


class QuantizedCheckpoint:
    """A GPTQ / AWQ checkpoint seen as tfcore's checkpoint: each quantized projection
    ``P.{qweight,qzeros,scales,g_idx}`` appears as ``P.weight`` (float32, dequantized exactly;
    or, through :meth:`int4_linear`, an int4 ``Linear``), every other tensor as stored."""

    def __init__(self, ckpt: Checkpoint, qc: QuantConfig):
        self.ckpt, self.qc = ckpt, qc
        self.directory = ckpt.directory
        self.format = f"{ckpt.format}+{qc.format}"
        self.layers: Dict[str, str] = {}  # "P.weight" -> "P"
        names = set(ckpt.keys())
        hidden = set()
        for name in names:
            if name.endswith(".qweight"):
                p = name[: -len(".qweight")]
                for part in ("qzeros", "scales"):
                    if f"{p}.{part}" not in names:
                        raise CheckpointError(
                            f"{self.directory}: {p}.qweight has no {p}.{part} ({qc.method})"
                        )
                if f"{p}.weight" in names:
                    raise CheckpointError(f"{self.directory}: {p} has both a weight and a qweight")
                self.layers[f"{p}.weight"] = p
                hidden.update(f"{p}.{part}" for part in _PARTS)
        if not self.layers:
            raise CheckpointError(
                f"{self.directory}: config.json has a {qc.method} quantization_config but no tensor "
                "is quantized (no *.qweight)"
            )
        self.keys_ = [k for k in ckpt.keys() if k not in hidden] + sorted(self.layers)
        self._shapes: Dict[str, Tuple[int, int]] = {}

    # -- the Checkpoint interface Weights uses
    def __contains__(self, name: str) -> bool:
        return name in self.layers or (name in self.ckpt and not self._hidden(name))

    def _hidden(self, name: str) -> bool:
        stem, _, part = name.rpartition(".")
        return part in _PARTS and f"{stem}.weight" in self.layers

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_)

    def keys(self) -> List[str]:
        return list(self.keys_)

    def info(self, name: str) -> TensorInfo:
        if name in self.layers:
            N, K = self._shape(name)
            return TensorInfo(name, "F32", (N, K), 0, 0)
        return self.ckpt.info(name)

    def raw(self, name: str) -> np.ndarray:
        if name in self.layers:
            raise CheckpointError(
                f"{self.directory}: {name!r} is {self.qc.method}-quantized, it has no raw bytes"
            )
        return self.ckpt.raw(name)

    def float32(self, name: str) -> np.ndarray:
        if name not in self.layers:
            return self.ckpt.float32(name)
        q, s, z, g_idx = self.quantized(name)
        # s (q - z) exactly: s has 11 significant bits and |q - z| <= 15
        return s[g_idx].T * (q.astype(np.float32) - z[g_idx].T.astype(np.float32))

    def int4_linear(self, name: str):
        """The projection as an int4 ``Linear`` (the checkpoint's groups, W = s q - s z), or
        None for a tensor the checkpoint does not quantize and for act-order layers (see
        the module docstring)."""
        from . import _C

        if name not in self.layers:
            return None
        q, s, z, g_idx = self.quantized(name)
        K = q.shape[1]
        group = self.qc.group_size if self.qc.group_size != -1 else K
        if group not in KERNEL_GROUPS or not np.array_equal(g_idx, np.arange(K) // group):
            why = "act-order (desc_act) groups" if self.qc.desc_act else f"group size {group}"
            log.warning(
                "%s: %s has %s, which the int4 kernels cannot keep as stored: dequantized and "
                "quantized again by round to nearest",
                self.directory,
                self.layers[name],
                why,
            )
            return None
        d = np.ascontiguousarray(s.T)
        m = np.ascontiguousarray(-(s.T * z.T.astype(np.float32)))
        return _C.Linear.from_int4(q, d, m, group_size=group)

    def release_pages(self) -> None:
        self.ckpt.release_pages()

    def nbytes(self) -> int:
        return self.ckpt.nbytes()

    # -- the packed tensors
    def _shape(self, name: str) -> Tuple[int, int]:
        if name not in self._shapes:
            p = self.layers[name]
            qw = self.ckpt.info(f"{p}.qweight").shape
            if len(qw) != 2:
                raise CheckpointError(f"{self.directory}: {p}.qweight must be 2-D, got shape {tuple(qw)}")
            if self.qc.method == "gptq":
                K, N = 8 * qw[0], qw[1]
            else:
                K, N = qw[0], 8 * qw[1]
            if K == 0 or N == 0:
                raise CheckpointError(f"{self.directory}: {p}.qweight is empty (shape {tuple(qw)})")
            self._shapes[name] = (N, K)
        return self._shapes[name]

    def _int(self, name: str, shape: Tuple[int, ...], what: str) -> np.ndarray:
        info = self.ckpt.info(name)
        if tuple(info.shape) != shape:
            raise CheckpointError(
                f"{self.directory}: {name} has shape {tuple(info.shape)}, expected {shape} ({what})"
            )
        if info.dtype not in ("I32", "U32"):
            raise CheckpointError(f"{self.directory}: {name} must be int32, got {info.dtype}")
        return np.asarray(self.ckpt.raw(name)).view("<i4")

    def quantized(self, name: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Layer ``name`` ("P.weight") as (q (N, K) uint8, scales (G, N) float32,
        zero points (G, N) uint8, g_idx (K,) int64), every shape and value checked."""
        p, qc = self.layers[name], self.qc
        N, K = self._shape(name)
        sinfo = self.ckpt.info(f"{p}.scales")
        if len(sinfo.shape) != 2 or sinfo.shape[1] != N or not 0 < sinfo.shape[0] <= K:
            raise CheckpointError(
                f"{self.directory}: {p}.scales has shape {tuple(sinfo.shape)}, expected (groups, {N}) "
                f"with 1 <= groups <= {K} (from {p}.qweight)"
            )
        G = sinfo.shape[0]
        if N % 8:
            raise CheckpointError(f"{self.directory}: {p} has {N} outputs, not a multiple of 8 ({qc.method})")
        if G != (-(-K // qc.group_size) if qc.group_size != -1 else 1):
            raise CheckpointError(
                f"{self.directory}: {p}.scales has {G} groups, expected ceil({K} / group_size "
                f"{qc.group_size}) = {-(-K // qc.group_size) if qc.group_size != -1 else 1}"
            )
        group = qc.group_size if qc.group_size != -1 else K
        what = "GPTQ packs 8 inputs per int32" if qc.method == "gptq" else "AWQ packs 8 outputs per int32"
        qweight = self._int(f"{p}.qweight", (K // 8, N) if qc.method == "gptq" else (K, N // 8), what)
        qzeros = self._int(f"{p}.qzeros", (G, N // 8), "8 zero points per int32")
        s = self.ckpt.float32(f"{p}.scales")
        if not np.isfinite(s).all():
            raise CheckpointError(f"{self.directory}: {p}.scales holds NaN or infinite values")
        if f"{p}.g_idx" in self.ckpt and qc.method == "gptq":
            g_idx = self._int(f"{p}.g_idx", (K,), "one group per input").astype(np.int64)
            if g_idx.size and (g_idx.min() < 0 or g_idx.max() >= G):
                raise CheckpointError(
                    f"{self.directory}: {p}.g_idx holds groups outside 0..{G - 1} "
                    f"({int(g_idx.min())}..{int(g_idx.max())})"
                )
        else:
            g_idx = np.arange(K, dtype=np.int64) // group
        q, z = unpack(qc.method, qc.format, qweight, qzeros, K, N)
        return q, s, z, g_idx


def wrap(ckpt: Checkpoint, config: Config) -> Any:
    """ckpt itself, or a :class:`QuantizedCheckpoint` over it when config.json has a
    quantization_config (CheckpointError for a method or layout tfcore does not read)."""
    qc = config.get("quantization_config")
    if qc is None:
        return ckpt
    return QuantizedCheckpoint(ckpt, QuantConfig(qc, f"{ckpt.directory}/config.json"))


__all__ = ["QuantConfig", "QuantizedCheckpoint", "unpack", "wrap", "METHODS", "AWQ_ORDER"]
