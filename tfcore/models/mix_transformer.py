"""The hierarchical "mix transformer" pieces PVT v2 (pvt_v2.py) and SegFormer share: the
overlapping patch embedding, efficient (spatial-reduction) self-attention and the Mix-FFN,
assembled into one block. Family files map their checkpoint names onto these.

Tokens stay channels last, (B, h*w, C) = (B, h, w, C), through a whole stage, so every
convolution runs on the tokens in place (tfcore.Conv2d with channels_last=True is zero-copy):

    embed:  x (B, h, w, Cin) -> Conv2d(k, stride s, pad k//2) -> LayerNorm in place
    block:  n = LayerNorm(h)                                     new buffer (h is the residual)
            r = LayerNorm(Conv2d(n, kernel = stride = sr))       reduced map, sr > 1
              | GELU(LayerNorm(Linear(AdaptiveAvgPool7(n))))     linear SRA (PVT v2 "linear")
              | n                                                sr = 1: plain self-attention
            h += o_proj(attention(q(n), kv(r)))                  residual fused into the o GEMM
            n = LayerNorm(h)                                     into n's buffer again
            u = Linear(n) [relu]                                 (B, h*w, F)
            u = act(DepthwiseConv3x3(u))                         act fused into the conv
            h += Linear(u)                                       residual fused, written into h

What is allocated per block: n (one buffer for both norms), the reduced map r (S = h w / sr^2
rows, or 49 pooled; its LayerNorm and GELU in place), MultiHeadAttention's q / kv / context,
and the FFN's two (B, h*w, F) activations (the depthwise conv cannot run in place). Each is a
new result, none a re-layout: no transposes, no im2col, no window partition. The image is
transposed to channels last once (3 channels); stage outputs are returned channels first
(B, C, h, w) as HF does, one transpose copy per requested hidden state, and the next stage's
patch embedding reads the channels-last tokens instead.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from .. import _C
from ..functional import gelu


def adaptive_avg_pool(x: np.ndarray, size: int) -> np.ndarray:
    """(B, h, w, C) -> (B, size, size, C): torch.nn.AdaptiveAvgPool2d(size) on a channels-last
    map; cell i averages rows floor(i h / size) .. ceil((i + 1) h / size) - 1 (cells overlap
    or repeat when h is not a multiple of size)."""
    B, h, w, C = x.shape
    out = np.empty((B, size, size, C), np.float32)
    for i in range(size):
        r0, r1 = (i * h) // size, -(-((i + 1) * h) // size)
        rows = x[:, r0:r1].mean(axis=1, dtype=np.float32)  # (B, w, C)
        for j in range(size):
            c0, c1 = (j * w) // size, -(-((j + 1) * w) // size)
            out[:, i, j] = rows[:, c0:c1].mean(axis=1, dtype=np.float32)
    return out


class OverlapPatchEmbed:
    """Conv2d(kernel k, stride s, padding k // 2) on a channels-last map, then LayerNorm over
    channels in place: (B, h, w, Cin) -> (B, h', w', C)."""

    def __init__(self, conv: _C.Conv2d, norm: _C.LayerNorm):
        self.conv, self.norm = conv, norm

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.conv(x, channels_last=True)
        B, h, w, C = y.shape
        flat = y.reshape(B, h * w, C)
        self.norm(flat, out=flat)
        return y


class MixBlock:
    """One block of the diagram above on (B, h, w, C) channels-last tokens, updated in place.

    attention: a tfcore.MultiHeadAttention, cross-attention (queries from the tokens, keys and
    values from the reduced map) when reduce is not None, else self-attention.
    reduce: 'conv' (sr_linear is the kernel = stride = sr tfcore.Conv2d on the channels-last
    map, then sr_norm), 'pool' (7x7 adaptive average pooling, the 1x1 conv as the Linear
    sr_linear, sr_norm, GELU) or None.

    The reduction convolution's windows do not overlap (kernel = stride, no padding): Conv2d
    runs it as a GEMM over patch rows where oneDNN's convolution is slow for it (avx512_core:
    ~1/100 of its GEMM rate for kernel = stride = 8, 64 channels; layers/conv.c)."""

    def __init__(
        self,
        norm1: _C.LayerNorm,
        attention: _C.MultiHeadAttention,
        norm2: _C.LayerNorm,
        dense1: _C.Linear,
        dwconv: _C.Conv2d,
        dense2: _C.Linear,
        reduce: Optional[str] = None,
        sr: int = 1,
        sr_linear: Union[_C.Linear, _C.Conv2d, None] = None,
        sr_norm: Optional[_C.LayerNorm] = None,
    ):
        self.norm1, self.attention, self.norm2 = norm1, attention, norm2
        self.dense1, self.dwconv, self.dense2 = dense1, dwconv, dense2
        self.reduce, self.sr, self.sr_linear, self.sr_norm = reduce, sr, sr_linear, sr_norm

    def _reduced(self, n: np.ndarray, B: int, h: int, w: int, C: int) -> np.ndarray:
        """(B, S, C) keys/values input from the normalised tokens n (B, h*w, C)."""
        if self.reduce == "conv":
            k = self.sr
            hh, ww = h // k, w // k
            if hh == 0 or ww == 0:
                raise _C.TfcoreValueError(
                    f"the image is too small for this model: its {h}x{w} token map is smaller than "
                    f"the {k}x{k} spatial-reduction convolution (HF's model fails there too)"
                )
            r = self.sr_linear(n.reshape(B, h, w, C), channels_last=True).reshape(B, hh * ww, C)
            return self.sr_norm(r, out=r)
        pooled = adaptive_avg_pool(n.reshape(B, h, w, C), 7).reshape(B, 49, C)
        r = self.sr_linear(pooled)
        self.sr_norm(r, out=r)
        return gelu(r, out=r)

    def __call__(self, x: np.ndarray, output_attentions: bool = False):
        B, h, w, C = x.shape
        t = x.reshape(B, h * w, C)
        n = self.norm1(t)
        if self.reduce is None:
            res = self.attention(n, residual=t, out=t, output_attentions=output_attentions)
        else:
            res = self.attention(
                n,
                encoder_hidden_states=self._reduced(n, B, h, w, C),
                residual=t,
                out=t,
                output_attentions=output_attentions,
            )
        probs = res[1] if output_attentions else None
        n = self.norm2(t, out=n)
        u = self.dense1(n)
        F = u.shape[-1]
        u = self.dwconv(u.reshape(B, h, w, F), channels_last=True)
        self.dense2(u.reshape(B, h * w, F), t, out=t)
        return (x, probs) if output_attentions else x
