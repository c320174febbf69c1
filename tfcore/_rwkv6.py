"""RWKV-6 ("Finch", Peng et al. 2024) time mix: the matrix-valued per-head WKV recurrence with
data-dependent decays, on tfcore's linear-attention kernel (no kernel of its own)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._C import TfcoreTypeError, TfcoreValueError, linear_attention


def _f32(name: str, a, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TfcoreTypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TfcoreTypeError(
            f"{name} must be float32, got {a.dtype} (convert once with {name}.astype(np.float32))"
        )
    if a.ndim != ndim:
        raise TfcoreValueError(f"{name} must have {ndim} dims, got shape {a.shape}")
    if a.size == 0:
        raise TfcoreValueError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise TfcoreValueError(
            f"{name} holds NaN or Inf at flat index {int(np.argmin(np.isfinite(a).ravel()))}"
        )
    return a


def rwkv6_wkv(
    receptance: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    log_decay: np.ndarray,
    bonus: np.ndarray,
    *,
    scale: float = 1.0,
    initial_state: Optional[np.ndarray] = None,
    return_state: bool = False,
):
    """RWKV-6's WKV: receptance, key, log_decay (B, H, T, K), value (B, H, T, V), bonus (H, K)
    (``time_faaaa``, u), float32. With S_0 = initial_state (B, H, K, V) or 0:

        o_t = scale * r_t (S_{t-1} + diag(u) k_t^T v_t)
        S_t = diag(exp(log_decay_t)) S_{t-1} + k_t^T v_t

    (flash-linear-attention's ``naive_recurrent_rwkv6``, whose default scale is K ** -0.5;
    RWKV-6 itself uses 1.0). log_decay is <= 0 (RWKV-6: -exp(w)). Returns o (B, H, T, V), or
    (o, S_T) with return_state=True.

    Runs as ``linear_attention`` in its recurrent form on the keys, values and decays shifted
    by one step (then the state it reads at t is S_{t-1}) plus the bonus term; the chunkwise
    form is not used because RWKV-6's decays reach -exp(w) in the hundreds, where its
    in-chunk exp(cumulative gate) ratios lose precision (measured 5e-3 relative at |w| ~ 8000).
    """
    r = _f32("receptance", receptance, 4)
    B, H, T, K = r.shape
    k = _f32("key", key, 4)
    v = _f32("value", value, 4)
    w = _f32("log_decay", log_decay, 4)
    u = _f32("bonus", bonus, 2)
    for name, a in (("key", k), ("log_decay", w)):
        if a.shape != r.shape:
            raise TfcoreValueError(
                f"{name} has shape {a.shape}, expected receptance's (B, H, T, K) = {r.shape}"
            )
    if v.shape[:3] != (B, H, T):
        raise TfcoreValueError(f"value has shape {v.shape}, expected (B, H, T, V) = ({B}, {H}, {T}, V)")
    if u.shape != (H, K):
        raise TfcoreValueError(f"bonus has shape {u.shape}, expected (H, K) = ({H}, {K})")
    if (w > 0).any():
        raise TfcoreValueError(
            f"log_decay holds {float(w.max()):g} > 0: decays are exp(log_decay) <= 1 (RWKV-6: -exp(w))"
        )
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise TfcoreTypeError(f"scale must be a float, got {type(scale).__name__}") from None
    if not np.isfinite(scale):
        raise TfcoreValueError(f"scale must be finite, got {scale}")
    Vd = v.shape[3]
    s0 = None
    if initial_state is not None:
        s0 = _f32("initial_state", initial_state, 4)
        if s0.shape != (B, H, K, Vd):
            raise TfcoreValueError(
                f"initial_state has shape {s0.shape}, expected (B, H, K, V) = {(B, H, K, Vd)}"
            )
        s0 = np.ascontiguousarray(s0)

    def shifted(a):  # a[:, :, t - 1] at step t, zeros at t = 0 (so S'_0 = S_0)
        out = np.zeros_like(a)
        out[:, :, 1:] = a[:, :, :-1]
        return out

    o, s = linear_attention(
        np.ascontiguousarray(r),
        shifted(k),
        shifted(v),
        gate=shifted(w),
        scale=scale,
        mode="recurrent",
        initial_state=s0,
        return_state=True,
    )
    # the current token through the bonus: scale * (r_t . (u * k_t)) v_t
    o += (scale * np.einsum("bhtk,bhtk->bht", r, u[None, :, None, :] * k))[..., None] * v
    if not return_state:
        return o
    s = np.exp(w[:, :, -1])[..., None] * s + k[:, :, -1, :, None] * v[:, :, -1, None, :]
    return o, np.ascontiguousarray(s, dtype=np.float32)
