"""CvT (``CvtModel``, ``CvtForImageClassification``) from Hugging Face checkpoints.

Three stages; each embeds its input map with a strided convolution + LayerNorm and runs
pre-norm layers whose Q/K/V come from depthwise convolutions of the token map (BatchNorm
folded in at load), K/V at stride 2; the last stage carries a class token that bypasses the
convolutions. Per layer, on (B, [1 +] h w, C) channels-last tokens updated in place:

    n        = LN1(h)                         split into [cls |] map (h, w, C)
    q_in     = [cls | dwconv_q(map)]          stride 1, BatchNorm folded
    kv_in    = [cls | dwconv_kv(map)]         ONE depthwise conv, 2 outputs per channel:
                                              (k_c, v_c) interleaved, stride 2, BN folded
    h       += o_proj(attention(q_proj(q_in), k_proj(kv_in), v_proj(kv_in)))
                                              a cross-attention MultiHeadAttention: q from
                                              q_in, k and v from kv_in (their weights read
                                              the even / odd channels), residual fused
    h       += fc2(gelu(fc1(LN2(h))))         residual fused into fc2

HF scales the scores by embed_dim ** -0.5 (not head_dim ** -0.5): the query projection is
scaled by sqrt(head_dim / embed_dim) at load so the kernel's usual scaling gives the same.
Outputs follow HF: last_hidden_state (B, C, h, w) (channels first), cls_token_value (B, 1, C),
hidden_states one map per stage.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .registry import register
from .vision import add_image_classifier, check_pixel_values

__all__ = ["CvtModel", "CvtForImageClassification"]

_LN_EPS = 1e-5  # HF's CvT builds nn.LayerNorm(dim) / nn.BatchNorm2d(dim): torch's default eps
_BN_EPS = 1e-5


def _per_stage(cfg: Config, key: str, default, n: int) -> list:
    v = cfg.get(key, default)
    v = list(v) if isinstance(v, (list, tuple)) else [v] * n
    if len(v) != n:
        raise CheckpointError(f"config.json: {key} has {len(v)} entries, expected one per stage ({n})")
    return v


class CvtLayer:
    """One layer of the diagram above."""

    def __init__(self, w: Weights, p: str, C: int, H: int, F: int, opts: dict, with_cls: bool):
        a = p + "attention.attention."
        self.with_cls = with_cls

        def bn(name):
            m = f"{a}convolution_projection_{name}.convolution_projection."
            conv = w.get(m + "convolution.weight", (C, 1, opts["k"], opts["k"]))
            norm = tuple(
                w.get(f"{m}normalization.{t}", (C,))
                for t in ("running_mean", "running_var", "weight", "bias")
            )
            return conv, norm

        q_conv, q_bn = bn("query")
        k_conv, k_bn = bn("key")
        v_conv, v_bn = bn("value")
        self.q_conv = _C.Conv2d(
            q_conv,
            stride=opts["stride_q"],
            padding=opts["padding_q"],
            groups=C,
            batch_norm=q_bn + (_BN_EPS,),
            dtype=w.dtype,
        )
        # one depthwise convolution for K and V: output channel 2c is k's channel c, 2c + 1 v's
        kv_w = np.stack([k_conv, v_conv], axis=1).reshape(2 * C, 1, opts["k"], opts["k"])
        kv_bn = tuple(np.stack([k, v], axis=1).reshape(2 * C) for k, v in zip(k_bn, v_bn))
        self.kv_conv = _C.Conv2d(
            kv_w,
            stride=opts["stride_kv"],
            padding=opts["padding_kv"],
            groups=C,
            batch_norm=kv_bn + (_BN_EPS,),
            dtype=w.dtype,
        )

        bias = opts["qkv_bias"]
        q_scale = np.float32(np.sqrt((C // H) / C))  # HF's embed_dim ** -0.5 scores
        k_w = np.zeros((C, 2 * C), np.float32)
        v_w = np.zeros((C, 2 * C), np.float32)
        k_w[:, 0::2] = w.get(a + "projection_key.weight", (C, C))
        v_w[:, 1::2] = w.get(a + "projection_value.weight", (C, C))
        self.attention = _C.MultiHeadAttention(
            C,
            H,
            q_weight=w.get(a + "projection_query.weight", (C, C)) * q_scale,
            q_bias=w.get(a + "projection_query.bias", (C,)) * q_scale if bias else None,
            k_weight=k_w,
            k_bias=w.get(a + "projection_key.bias", (C,)) if bias else None,
            v_weight=v_w,
            v_bias=w.get(a + "projection_value.bias", (C,)) if bias else None,
            o_weight=w.get(p + "attention.output.dense.weight", (C, C), matrix=True),
            o_bias=w.get(p + "attention.output.dense.bias", (C,)),
            is_cross_attention=True,
            kv_input_size=2 * C,
            dtype=w.dtype,
        )
        self.norm1 = _C.LayerNorm(
            w.get(p + "layernorm_before.weight", (C,)), w.get(p + "layernorm_before.bias", (C,)), eps=_LN_EPS
        )
        self.norm2 = _C.LayerNorm(
            w.get(p + "layernorm_after.weight", (C,)), w.get(p + "layernorm_after.bias", (C,)), eps=_LN_EPS
        )
        self.ffn = _C.FeedForward(
            w.get(p + "intermediate.dense.weight", (F, C), matrix=True),
            w.get(p + "output.dense.weight", (C, F), matrix=True),
            up_bias=w.get(p + "intermediate.dense.bias", (F,)),
            down_bias=w.get(p + "output.dense.bias", (C,)),
            activation="gelu",
            dtype=w.dtype,
        )

    def _with_cls(self, cls: Optional[np.ndarray], tokens: np.ndarray) -> np.ndarray:
        if cls is None:
            return tokens
        B, _, C = tokens.shape
        out = np.empty((B, 1 + tokens.shape[1], C), np.float32)
        out[:, :1] = cls
        out[:, 1:] = tokens
        return out

    def __call__(self, h: np.ndarray, hh: int, ww: int) -> np.ndarray:
        """h (B, [1 +] hh ww, C), updated in place and returned."""
        B, _, C = h.shape
        n = self.norm1(h)
        cls = n[:, :1] if self.with_cls else None
        grid = np.ascontiguousarray(n[:, 1:]) if self.with_cls else n
        grid = grid.reshape(B, hh, ww, C)
        q = self.q_conv(grid, channels_last=True)
        kv = self.kv_conv(grid, channels_last=True)
        q_in = self._with_cls(cls, q.reshape(B, -1, C))
        kv_in = self._with_cls(None if cls is None else np.repeat(cls, 2, axis=2), kv.reshape(B, -1, 2 * C))
        self.attention(q_in, encoder_hidden_states=kv_in, residual=h, out=h)
        self.ffn(self.norm2(h), h, out=h)
        return h


@register("base")
class CvtModel(PreTrainedModel):
    """``transformers.CvtModel``: pixel_values (B, 3, H, W) -> last_hidden_state (B, C, h, w),
    cls_token_value (B, 1, C) when the last stage has a class token, hidden_states (one
    (B, C_s, h_s, w_s) map per stage)."""

    model_types = ("cvt",)
    base_prefixes = ("", "cvt.")
    ignore_keys = ("num_batches_tracked",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        n = len(cfg.get("depth", (1, 2, 10)))
        depth = _per_stage(cfg, "depth", (1, 2, 10), n)
        dims = _per_stage(cfg, "embed_dim", (64, 192, 384), n)
        heads = _per_stage(cfg, "num_heads", (1, 3, 6), n)
        ratio = _per_stage(cfg, "mlp_ratio", (4.0, 4.0, 4.0), n)
        patch = _per_stage(cfg, "patch_sizes", (7, 3, 3), n)
        pstride = _per_stage(cfg, "patch_stride", (4, 2, 2), n)
        ppad = _per_stage(cfg, "patch_padding", (2, 1, 1), n)
        cls = _per_stage(cfg, "cls_token", (False, False, True), n)
        method = _per_stage(cfg, "qkv_projection_method", ("dw_bn",) * 3, n)
        if any(m != "dw_bn" for m in method):
            raise CheckpointError(
                f"config.json: qkv_projection_method {method}: only 'dw_bn' is supported "
                "(transformers' CvT runs only that one too)"
            )
        opts = [
            dict(
                k=int(k),
                stride_q=int(sq),
                padding_q=int(pq),
                stride_kv=int(skv),
                padding_kv=int(pkv),
                qkv_bias=bool(b),
            )
            for k, sq, pq, skv, pkv, b in zip(
                _per_stage(cfg, "kernel_qkv", (3, 3, 3), n),
                _per_stage(cfg, "stride_q", (1, 1, 1), n),
                _per_stage(cfg, "padding_q", (1, 1, 1), n),
                _per_stage(cfg, "stride_kv", (2, 2, 2), n),
                _per_stage(cfg, "padding_kv", (1, 1, 1), n),
                _per_stage(cfg, "qkv_bias", (True, True, True), n),
            )
        ]
        self.channels = int(cfg.get("num_channels", 3))
        self.stages: List[Tuple[_C.Conv2d, _C.LayerNorm, Optional[np.ndarray], List[CvtLayer]]] = []
        c_in = self.channels
        for s in range(n):
            C, H = int(dims[s]), int(heads[s])
            if C % H:
                raise CheckpointError(
                    f"config.json: embed_dim[{s}]={C} is not divisible by num_heads[{s}]={H}"
                )
            p = f"encoder.stages.{s}."
            e = p + "embedding.convolution_embeddings."
            k = int(patch[s])
            embed = _C.Conv2d(
                w.get(e + "projection.weight", (C, c_in, k, k)),
                w.get(e + "projection.bias", (C,)),
                stride=int(pstride[s]),
                padding=int(ppad[s]),
                dtype=w.dtype,
            )
            norm = _C.LayerNorm(
                w.get(e + "normalization.weight", (C,)), w.get(e + "normalization.bias", (C,)), eps=_LN_EPS
            )
            token = w.get(p + "cls_token", (1, 1, C)) if cls[s] else None
            F = int(C * float(ratio[s]))
            layers = [
                CvtLayer(w, f"{p}layers.{i}.", C, H, F, opts[s], bool(cls[s])) for i in range(int(depth[s]))
            ]
            w.release()
            self.stages.append((embed, norm, token, layers))
            c_in = C
        self.hidden_size = c_in
        self.has_cls_token = bool(cls[-1])

    def _run(self, pixel_values, output_hidden_states: bool):
        """-> (last map (B, h, w, C) channels last, cls (B, 1, C) or None, [maps (B, h, w, C)])."""
        x = check_pixel_values(pixel_values, self.channels)
        m = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        maps, token_out = [], None
        for s, (embed, norm, token, layers) in enumerate(self.stages):
            if min(m.shape[1:3]) + 2 * embed.padding[0][0] < embed.kernel_size[0]:
                raise _C.TfcoreValueError(
                    f"pixel_values {x.shape} is too small: stage {s}'s {embed.kernel_size[0]}x{embed.kernel_size[1]} "
                    f"embedding convolution gets a {m.shape[1]}x{m.shape[2]} map"
                )
            e = embed(m, channels_last=True)
            B, hh, ww, C = e.shape
            if token is not None:
                h = np.empty((B, 1 + hh * ww, C), np.float32)
                h[:, 0] = token[0, 0]
                h[:, 1:] = norm(e.reshape(B, hh * ww, C))
            else:
                h = norm(e.reshape(B, hh * ww, C), out=e.reshape(B, hh * ww, C))
            for layer in layers:
                h = layer(h, hh, ww)
            if token is not None:
                token_out = np.ascontiguousarray(h[:, :1])
                m = np.ascontiguousarray(h[:, 1:]).reshape(B, hh, ww, C)
            else:
                token_out = None
                m = h.reshape(B, hh, ww, C)
            if output_hidden_states:
                maps.append(m)
        return m, token_out, maps

    def forward(self, pixel_values, output_hidden_states: bool = False) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> HF's CvtModel outputs (maps channels first)."""
        m, token, maps = self._run(pixel_values, output_hidden_states)

        def first(a):
            return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

        return ModelOutput(
            last_hidden_state=first(m),
            cls_token_value=token,
            hidden_states=tuple(first(a) for a in maps) if output_hidden_states else None,
        )


@register("image-classification")
class CvtForImageClassification(PreTrainedModel):
    """``transformers.CvtForImageClassification``: LayerNorm of the class token (or of the
    last map's tokens, averaged) -> Linear classifier."""

    model_types = ("cvt",)
    ignore_keys = CvtModel.ignore_keys

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("cvt.", ""), self.ignore_keys, weights.dtype)
        self.cvt = CvtModel(config, base)
        weights.used |= base.used
        C = self.cvt.hidden_size
        self.layernorm = _C.LayerNorm(
            weights.get("layernorm.weight", (C,)), weights.get("layernorm.bias", (C,)), eps=_LN_EPS
        )
        add_image_classifier(self, config, weights, C)

    def forward(self, pixel_values, output_hidden_states: bool = False) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> logits (B, num_labels) and, if asked,
        CvtModel's per-stage hidden_states."""
        m, token, maps = self.cvt._run(pixel_values, output_hidden_states)
        if self.cvt.has_cls_token:
            pooled = self.layernorm(token)[:, 0]
        else:
            B, hh, ww, C = m.shape
            pooled = self.layernorm(m.reshape(B, hh * ww, C)).mean(axis=1, dtype=np.float32)
        return ModelOutput(
            logits=self.classifier(np.ascontiguousarray(pooled)),
            hidden_states=tuple(np.ascontiguousarray(a.transpose(0, 3, 1, 2)) for a in maps)
            if output_hidden_states
            else None,
        )
