"""GGUF's 4-bit tensors kept in 4 bits: Q4_0, Q4_1 and Q4_K blocks repacked, at load, into
``Linear``'s int4 form (``W[n, k] = d[n, g] q[n, k] + m[n, g]``, groups of 32 inputs) instead
of being dequantized to float32.

Every one of the three block types is exactly that form, group by group (so the repacked
weights dequantize to the same float32 values, bit for bit, as the ``gguf`` package's
reference dequantization, :mod:`tfcore.gguf`):

- Q4_0 (32 values, f16 ``d``): ``x = d (q - 8)`` -> ``d``, ``m = -8 d``. ``d q`` and ``8 d`` are
  exact in float32 (an 11-bit significand times at most 4 bits), so ``d q + m`` is the exact
  value ``d (q - 8)`` that the reference computes (equal as numbers; where ``q = 8`` and
  ``d < 0`` the reference's zero is ``-0.0`` and ours ``+0.0``).
- Q4_1 (32 values, f16 ``d`` and ``m``): ``x = d q + m``, the same operations.
- Q4_K (super-blocks of 256 = 8 sub-blocks of 32; f16 ``d``, ``dmin``, 6-bit ``sc``, ``mn``
  per sub-block): ``x = (d sc) q - dmin mn`` -> ``d' = d sc``, ``m' = -(dmin mn)``: both
  products are exact in float32 (11 + 6 bits), as is ``d' q`` (+ 4 bits), so ``d' q + m'``
  rounds once, like the reference's ``d' q - dmin mn``.

The nibble order within a block differs per type (Q4_0 / Q4_1: low nibbles are elements
0-15 of the block, high ones 16-31; Q4_K: each 32 bytes hold sub-block 2j in the low nibbles
and 2j + 1 in the high ones); :func:`repack` returns plain values (one per byte) that
``Linear.from_int4`` packs into the kernels' layout.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .safetensors import CheckpointError

#: The GGUF tensor types kept in 4 bits under dtype="int4" (others are dequantized and, as
#: projection weights, quantized again by round to nearest at the model's group size).
FOUR_BIT_TYPES = ("Q4_0", "Q4_1", "Q4_K")
GROUP = 32  # inputs per scale and offset in all three


def _f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray, half: int) -> np.ndarray:
    """(n, bytes) -> (n, 2 * bytes) values: each run of `half` bytes gives `half` low nibbles
    then `half` high nibbles."""
    n = qs.shape[0]
    q = qs.reshape(n, -1, half)
    return np.concatenate([q & 0x0F, q >> 4], axis=-1).reshape(n, -1)


def repack(blocks: np.ndarray, type_name: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks (n_blocks, bytes per block) uint8 of a Q4_0 / Q4_1 / Q4_K tensor -> values
    (n_blocks, elements) uint8 0..15, scales and offsets (n_blocks, elements / 32) float32,
    with ``values * scales + offsets`` (per group of 32) the reference's dequantization."""
    with np.errstate(all="ignore"):  # non-finite scales are refused by the caller
        if type_name == "Q4_0":
            d = _f16(blocks[:, :2])
            return _nibbles(blocks[:, 2:], 16), d, d * np.float32(-8.0)
        if type_name == "Q4_1":
            return _nibbles(blocks[:, 4:], 16), _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
        if type_name == "Q4_K":
            from .gguf import _k_scales

            d, dmin = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
            sc, mn = _k_scales(blocks[:, 4:16])
            ds = d * sc.astype(np.float32)  # (n, 8): one per sub-block of 32
            dm = dmin * mn.astype(np.float32)
            return _nibbles(blocks[:, 16:], 32), ds, -dm
    raise CheckpointError(f"{type_name} is not a 4-bit type tfcore keeps in 4 bits ({FOUR_BIT_TYPES})")


def row_permutation(fix, name: str, rows: int, config) -> Tuple[bool, Optional[np.ndarray]]:
    """The architecture's per-tensor fix seen as a row order: (True, None) when the fix leaves
    the tensor alone, (True, perm) when it reorders rows (llama's q/k unpermutation; row i of
    the result is row perm[i]), (False, None) when it is anything else (then the tensor is
    dequantized instead of kept in 4 bits)."""
    if fix is None:
        return True, None
    idx = np.arange(rows, dtype=np.float64).reshape(rows, 1)
    out = np.asarray(fix(name, idx, config))
    if out.shape != (rows, 1) or not np.array_equal(np.sort(out.ravel()), idx.ravel()):
        return False, None
    perm = out.ravel().astype(np.int64)
    return True, None if np.array_equal(perm, np.arange(rows)) else perm


def linear_from_blocks(raw: np.ndarray, type_name: str, block_bytes: int, shape, perm=None, where: str = ""):
    """A ``Linear`` (int4, group 32) of a 2-D GGUF tensor: raw its bytes (rows, bytes per
    row), block_bytes the bytes per block, shape (out_features, in_features); perm an
    optional row order (row i of the result is row perm[i])."""
    from . import _C

    N, K = shape
    values, d, m = repack(np.ascontiguousarray(raw).reshape(-1, block_bytes), type_name)
    values, d, m = values.reshape(N, K), d.reshape(N, K // GROUP), m.reshape(N, K // GROUP)
    if not (np.isfinite(d).all() and np.isfinite(m).all()):
        raise CheckpointError(f"{where}: holds NaN or infinite block scales (corrupt file?)")
    if perm is not None:
        values, d, m = values[perm], d[perm], m[perm]
    return _C.Linear.from_int4(
        np.ascontiguousarray(values), np.ascontiguousarray(d), np.ascontiguousarray(m), group_size=GROUP
    )


__all__ = ["FOUR_BIT_TYPES", "GROUP", "repack", "row_permutation", "linear_from_blocks"]
