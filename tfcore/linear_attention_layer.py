"""``tfcore.LinearAttention``: a kernelized linear-attention layer with pluggable feature maps
(Katharopoulos et al.'s elu+1, ReLU, Performer's FAVOR+ positive random features with a given
projection, Hedgehog's learned softmax map with given weights) over
``tfcore.functional.linear_attention``.

Per head, with phi the feature map of the head's queries and keys (B, T, head_dim):

    S_t = S_{t-1} + phi(k_t)^T v_t,  z_t = z_{t-1} + phi(k_t)
    o_t = phi(q_t) S_t / (phi(q_t) . z_t)          (normalize=True, the default)
    o_t = scale * phi(q_t) S_t                      (normalize=False; scale = feature_dim ** -0.5)

then o_proj over the heads. The feature maps (x a head's (head_dim,) query or key row):

- ``"elu+1"``: elu(x) + 1; ``"relu"``: max(x, 0); ``"identity"`` (feature_dim = head_dim).
- ``"hedgehog"`` (Zhang et al. 2024, fla's ``HedgehogFeatureMap``): y = 2 (W x + b),
  phi(x) = softmax([y, -y]) (feature_dim = 2 head_dim); ``feature_map_weights`` is
  ``(W, b)``, W (head_dim, head_dim), b (head_dim,), shared by queries and keys and heads.
- ``"performer"`` (Choromanski et al. 2021, FAVOR+): x' = x head_dim^(-1/4),
  phi(x) = exp(P x' - |x'|^2 / 2) / sqrt(m) with the given projection P (m, head_dim)
  (``feature_map_weights``; draw it as orthogonal Gaussian rows for the paper's estimator), so
  that phi(q) . phi(k) estimates exp(q . k / sqrt(head_dim)). The exponent is at most
  |P_i|^2 / 2 (a row's squared norm, half of it): no overflow for any input. With normalize,
  query rows are scaled by exp(-their largest exponent) (cancels exactly); keys get no
  data-dependent stabilizer (it would differ between prefill and decoding), so a key with
  |x'|^2 far above the rows' |P_i|^2 has features that underflow to 0 (it is then ignored;
  if every key so far is, the call raises).

Decoding: pass a ``tfcore.RecurrentState`` whose layer ``layer_idx`` has this layer's
``state_shapes()``; the call continues from it and stores the new state (chunkwise for
prefill, the recurrence for a few tokens).
"""

from __future__ import annotations

import numpy as np

from . import _C
from .functional import linear_attention

__all__ = ["LinearAttention"]

FEATURE_MAPS = ("elu+1", "relu", "identity", "hedgehog", "performer")


def _matrix(name, a, shape):
    """float32 C-contiguous copy of a, checked: a NumPy array of this shape, finite."""
    if not isinstance(a, np.ndarray):
        raise _C.TfcoreTypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise _C.TfcoreTypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise _C.TfcoreValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
    if a.size == 0:
        raise _C.TfcoreValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise _C.TfcoreValueError(f"{name} holds NaN or infinity")
    return np.ascontiguousarray(a, dtype=np.float32)


class LinearAttention:
    """Multi-head kernelized linear attention (fla's ``LinearAttention`` layer form, without
    its output norm): q/k/v/o projections (weights (out, in), no bias), a feature map on each
    head's queries and keys, causal linear attention, o_proj. Calls take (B, T, hidden) float32.

    Arguments: ``hidden_size``, ``num_heads``; weights ``q_weight``, ``k_weight``
    (num_heads * head_k_dim, hidden), ``v_weight`` (num_heads * head_v_dim, hidden),
    ``o_weight`` (hidden, num_heads * head_v_dim); ``feature_map`` one of "elu+1" (default),
    "relu", "identity", "hedgehog", "performer" (see the module docstring) with
    ``feature_map_weights`` for the last two; ``normalize`` (default True: divide by
    phi(q) . z); ``chunk_size`` for the chunkwise prefill."""

    def __init__(
        self,
        hidden_size,
        num_heads,
        *,
        q_weight,
        k_weight,
        v_weight,
        o_weight,
        feature_map="elu+1",
        feature_map_weights=None,
        normalize=True,
        chunk_size=64,
    ):
        for name, val in (("hidden_size", hidden_size), ("num_heads", num_heads), ("chunk_size", chunk_size)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise _C.TfcoreValueError(f"{name} must be a positive int, got {val!r}")
        if feature_map not in FEATURE_MAPS:
            raise _C.TfcoreValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}")
        C, H = int(hidden_size), int(num_heads)
        for name, w in (("q_weight", q_weight), ("k_weight", k_weight), ("v_weight", v_weight)):
            if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[1] != C or w.shape[0] % H:
                raise _C.TfcoreValueError(
                    f"{name} must be a 2-D array (num_heads * head_dim, hidden_size={C}) with rows a "
                    f"multiple of num_heads={H}, got {getattr(w, 'shape', type(w).__name__)}"
                )
        if q_weight.shape != k_weight.shape:
            raise _C.TfcoreValueError(f"q_weight {q_weight.shape} and k_weight {k_weight.shape} differ")
        self.hidden_size, self.num_heads = C, H
        self.head_k_dim, self.head_v_dim = q_weight.shape[0] // H, v_weight.shape[0] // H
        dk = self.head_k_dim
        self.q_proj = _C.Linear(_matrix("q_weight", q_weight, q_weight.shape))
        self.k_proj = _C.Linear(_matrix("k_weight", k_weight, k_weight.shape))
        self.v_proj = _C.Linear(_matrix("v_weight", v_weight, v_weight.shape))
        self.o_proj = _C.Linear(_matrix("o_weight", o_weight, (C, H * self.head_v_dim)))
        self.feature_map, self.normalize, self.chunk_size = feature_map, bool(normalize), int(chunk_size)
        self.fm_weight = self.fm_bias = None
        if feature_map in ("hedgehog", "performer"):
            if feature_map_weights is None:
                raise _C.TfcoreValueError(f'feature_map="{feature_map}" needs feature_map_weights')
            if feature_map == "hedgehog":
                if not isinstance(feature_map_weights, (tuple, list)) or len(feature_map_weights) != 2:
                    raise _C.TfcoreTypeError("hedgehog feature_map_weights must be the pair (W, b)")
                self.fm_weight = _matrix("hedgehog W", feature_map_weights[0], (dk, dk))
                self.fm_bias = _matrix("hedgehog b", feature_map_weights[1], (dk,))
                self.feature_dim = 2 * dk
            else:
                P = feature_map_weights
                if not isinstance(P, np.ndarray) or P.ndim != 2:
                    raise _C.TfcoreTypeError(
                        f"performer feature_map_weights must be the projection, a 2-D array (m, {dk})"
                    )
                self.fm_weight = _matrix("performer projection", P, (P.shape[0], dk))
                self.feature_dim = P.shape[0]
        elif feature_map_weights is not None:
            raise _C.TfcoreValueError(f'feature_map="{feature_map}" takes no feature_map_weights')
        else:
            self.feature_dim = dk

    def state_shapes(self) -> dict:
        """The per-item shapes of this layer's RecurrentState tensors: the state
        (heads, feature_dim, head_v_dim) and, with normalize, the normalizer (heads, feature_dim)."""
        shapes = {"state": (self.num_heads, self.feature_dim, self.head_v_dim)}
        if self.normalize:
            shapes["z"] = (self.num_heads, self.feature_dim)
        return shapes

    def phi(self, x: np.ndarray, *, query: bool = False) -> np.ndarray:
        """The feature map of (..., head_k_dim) rows -> (..., feature_dim), float32 (for the
        built-in elementwise maps the op applies it itself; this is what it computes).
        query=True with performer and normalize: each row scaled by exp(-its largest exponent)
        (cancels in the normalization; keeps large queries from underflowing to 0)."""
        x = np.asarray(x, np.float32)
        if self.feature_map == "elu+1":
            return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0))).astype(np.float32)
        if self.feature_map == "relu":
            return np.maximum(x, 0.0)
        if self.feature_map == "identity":
            return x
        if self.feature_map == "hedgehog":
            y = 2.0 * (x @ self.fm_weight.T + self.fm_bias)
            y = np.concatenate([y, -y], axis=-1)
            y = np.exp(y - y.max(axis=-1, keepdims=True))
            return (y / y.sum(axis=-1, keepdims=True)).astype(np.float32)
        xs = x * np.float32(self.head_k_dim**-0.25)
        proj = xs @ self.fm_weight.T - 0.5 * np.sum(xs * xs, axis=-1, keepdims=True)
        if query and self.normalize:
            proj -= proj.max(axis=-1, keepdims=True)
        return (np.exp(proj) / np.float32(np.sqrt(self.feature_dim))).astype(np.float32)

    def __call__(self, x, *, state=None, layer_idx=0):
        """x (B, T, hidden_size) float32 -> (B, T, hidden_size); state: a RecurrentState to
        continue and update (its layer layer_idx, shaped by state_shapes())."""
        if not isinstance(x, np.ndarray):
            raise _C.TfcoreTypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[2] != self.hidden_size:
            raise _C.TfcoreValueError(
                f"x must be (batch, length, hidden_size={self.hidden_size}), got {x.shape}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise _C.TfcoreValueError(f"x is empty: shape {x.shape}")
        B, T, _ = x.shape
        H, dk, dv = self.num_heads, self.head_k_dim, self.head_v_dim
        x2 = np.ascontiguousarray(x.reshape(B * T, self.hidden_size), dtype=np.float32)

        def heads(a, d):
            return np.ascontiguousarray(a.reshape(B, T, H, d).transpose(0, 2, 1, 3))

        q, k, v = heads(self.q_proj(x2), dk), heads(self.k_proj(x2), dk), heads(self.v_proj(x2), dv)
        kw = {"normalize": self.normalize}
        if self.feature_map in ("elu+1", "relu"):
            kw["feature_map"] = self.feature_map
        elif self.feature_map != "identity":
            q, k = self.phi(q, query=True), self.phi(k)
        if self.normalize:
            kw["scale"] = 1.0  # cancels between numerator and denominator
        if state is None:
            o = linear_attention(q, k, v, mode="chunkwise", chunk_size=self.chunk_size, **kw)
        else:
            init = state.get(layer_idx, "state")
            if self.normalize:
                init = (init, state.get(layer_idx, "z"))
            o, s = linear_attention(
                q,
                k,
                v,
                mode="recurrent" if T <= 4 else "chunkwise",
                chunk_size=self.chunk_size,
                initial_state=init,
                return_state=True,
                **kw,
            )
            if self.normalize:
                state.set(layer_idx, "state", s[0])
                state.set(layer_idx, "z", s[1])
            else:
                state.set(layer_idx, "state", s)
        if self.normalize and not np.isfinite(o).all():
            raise _C.TfcoreValueError(
                "normalize=True divided by phi(q) . z = 0 (a query whose features are all 0 against "
                f'the keys so far, or keys whose features underflowed, as feature_map="{self.feature_map}" '
                'allows): use a strictly positive map ("elu+1", "hedgehog") or normalize=False'
            )
        o = np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(B * T, H * dv)
        return self.o_proj(o).reshape(B, T, self.hidden_size)
