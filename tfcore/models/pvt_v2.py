"""PVT v2: PvtV2Model and PvtV2ForImageClassification from Hugging Face checkpoints.

Four stages (config.num_encoder_blocks), each an overlapping patch embedding (a strided
convolution with padding k // 2, then LayerNorm), blocks of spatial-reduction attention and
Mix-FFN, and a final LayerNorm; the blocks are mix_transformer.MixBlock (shared with
SegFormer; its docstring lists the data flow and which steps copy). Spatial reduction:
keys/values come from a Conv2d(kernel = stride = sr_ratio) + LayerNorm map, or with
config.linear_attention from 7x7 adaptive average pooling, a 1x1 convolution, LayerNorm and
GELU (PVT v2-li; its Mix-FFN also has a ReLU after the first Linear).

Outputs follow HF: last_hidden_state and each stage's hidden state channels first,
(B, C, h, w); attentions is a tuple per stage of each block's (B, heads, h*w, S) weights.
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights
from .mix_transformer import MixBlock, OverlapPatchEmbed
from .registry import register
from .vision import add_image_classifier, check_pixel_values

__all__ = ["PvtV2Model", "PvtV2ForImageClassification"]


def _int_list(cfg: Config, key: str, n: int, default=None) -> List:
    """config[key] as n positive numbers (HF indexes the list by stage: a longer list is
    allowed, its tail unused)."""
    v = cfg.get(key, default)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v] * n
    if (
        not isinstance(v, (list, tuple))
        or len(v) < n
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v[:n])
    ):
        raise CheckpointError(f"config.json: {key} must be a list of {n} positive numbers, got {v!r}")
    return list(v[:n])


class _Stage:
    def __init__(self, embed: OverlapPatchEmbed, blocks: List[MixBlock], norm: _C.LayerNorm):
        self.embed, self.blocks, self.norm = embed, blocks, norm


@register("base")
class PvtV2Model(PreTrainedModel):
    """``transformers.PvtV2Model``: overlapping patch embeddings, spatial-reduction attention
    (or linear SRA with adaptive average pooling) and Mix-FFN with a depthwise convolution,
    four stages; last_hidden_state (B, C, h, w)."""

    model_types = ("pvt_v2",)
    base_prefixes = ("", "pvt_v2.")
    # checkpoint names: per stage ({s}) and per block ({s}, {i}); the rest within a block
    KEYS = {
        "embed": "encoder.layers.{s}.patch_embedding.proj",
        "embed_norm": "encoder.layers.{s}.patch_embedding.layer_norm",
        "block": "encoder.layers.{s}.blocks.{i}.",
        "stage_norm": "encoder.layers.{s}.layer_norm",
        "query": "attention.query",
        "key": "attention.key",
        "value": "attention.value",
        "out": "attention.proj",
        "sr": "attention.spatial_reduction",
        "sr_norm": "attention.layer_norm",
    }
    layer_norm_eps = None  # None: config.layer_norm_eps (SegFormer's LayerNorms use torch's 1e-5)
    flat_attentions = False  # HF's PvtV2 nests attentions per stage; SegFormer's are one tuple

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        n = cfg.get("num_encoder_blocks", 4)
        if not isinstance(n, int) or n <= 0:
            raise CheckpointError(f"config.json: num_encoder_blocks must be a positive int, got {n!r}")
        depths = _int_list(cfg, "depths", n, [2, 2, 2, 2])
        sizes = _int_list(cfg, "hidden_sizes", n, [32, 64, 160, 256])
        heads = _int_list(cfg, "num_attention_heads", n, [1, 2, 5, 8])
        patches = _int_list(cfg, "patch_sizes", n, [7, 3, 3, 3])
        strides = _int_list(cfg, "strides", n, [4, 2, 2, 2])
        srs = _int_list(cfg, "sr_ratios", n, [8, 4, 2, 1])
        ratios = _int_list(cfg, "mlp_ratios", n, [8, 8, 4, 4])
        self.channels = int(cfg.get("num_channels", 3))
        self.linear_attention = bool(cfg.get("linear_attention", False))
        qkv_bias = bool(cfg.get("qkv_bias", True))
        eps = self.layer_norm_eps or float(cfg.get("layer_norm_eps", 1e-6))
        K = self.KEYS
        act = cfg.get("hidden_act", "gelu")
        self.hidden_sizes = sizes
        self.stages: List[_Stage] = []
        bar = iter(w.layer_range(sum(depths)))
        for s in range(n):
            C, cin, k = sizes[s], self.channels if s == 0 else sizes[s - 1], patches[s]
            if C % heads[s]:
                raise CheckpointError(
                    f"config.json: hidden size {C} of stage {s} is not divisible by {heads[s]} heads"
                )
            pe = K["embed"].format(s=s)
            embed = OverlapPatchEmbed(
                _C.Conv2d(
                    w.get(pe + ".weight", (C, cin, k, k)),
                    w.get(pe + ".bias", (C,)),
                    stride=strides[s],
                    padding=k // 2,
                    dtype=w.dtype,
                ),
                self._norm(w, K["embed_norm"].format(s=s), C, eps),
            )
            blocks = []
            for i in range(depths[s]):
                blocks.append(
                    self._block(
                        w,
                        K["block"].format(s=s, i=i),
                        C,
                        heads[s],
                        srs[s],
                        int(C * ratios[s]),
                        qkv_bias,
                        eps,
                        act,
                    )
                )
                w.release()
                next(bar, None)
            self.stages.append(_Stage(embed, blocks, self._norm(w, K["stage_norm"].format(s=s), C, eps)))
        for _ in bar:
            pass

    @staticmethod
    def _norm(w: Weights, p: str, C: int, eps: float) -> _C.LayerNorm:
        return _C.LayerNorm(w.get(p + ".weight", (C,)), w.get(p + ".bias", (C,)), eps=eps)

    def _block(
        self, w: Weights, p: str, C: int, H: int, sr: int, F: int, qkv_bias: bool, eps: float, act: str
    ) -> MixBlock:
        K = {k: p + v for k, v in self.KEYS.items()}

        def g(key, *shape, optional=False):
            return w.get(key, shape, optional=optional, matrix=len(shape) == 2)

        names = (("q", K["query"]), ("k", K["key"]), ("v", K["value"]))
        proj = {f"{n}_weight": g(f"{m}.weight", C, C) for n, m in names}
        if qkv_bias:
            proj.update({f"{n}_bias": g(f"{m}.bias", C) for n, m in names})
        reduce = "pool" if self.linear_attention else ("conv" if sr > 1 else None)
        attention = _C.MultiHeadAttention(
            C,
            H,
            **proj,
            o_weight=g(K["out"] + ".weight", C, C),
            o_bias=g(K["out"] + ".bias", C),
            is_cross_attention=reduce is not None,
            kv_input_size=C if reduce is not None else None,
            dtype=w.dtype,
        )
        sr_linear = sr_norm = None
        if reduce == "conv":  # kernel = stride = sr: tfcore.Conv2d routes it to a GEMM where that wins
            sr_linear = _C.Conv2d(
                w.get(K["sr"] + ".weight", (C, C, sr, sr)),
                w.get(K["sr"] + ".bias", (C,)),
                stride=sr,
                dtype=w.dtype,
            )
        elif reduce == "pool":  # the 1x1 convolution is a Linear over channels
            sr_linear = _C.Linear(
                np.ascontiguousarray(w.get(K["sr"] + ".weight", (C, C, 1, 1)).reshape(C, C)),
                w.get(K["sr"] + ".bias", (C,)),
                dtype=w.dtype,
            )
        if reduce is not None:
            sr_norm = self._norm(w, K["sr_norm"], C, eps)
        m = p + "mlp."
        return MixBlock(
            self._norm(w, p + "layer_norm_1", C, eps),
            attention,
            self._norm(w, p + "layer_norm_2", C, eps),
            _C.Linear(
                g(m + "dense1.weight", F, C),
                g(m + "dense1.bias", F),
                activation="relu" if self.linear_attention else None,
                dtype=w.dtype,
            ),
            _C.Conv2d(
                w.get(m + "dwconv.dwconv.weight", (F, 1, 3, 3)),
                w.get(m + "dwconv.dwconv.bias", (F,)),
                padding=1,
                groups=F,
                activation=act,
                dtype=w.dtype,
            ),
            _C.Linear(g(m + "dense2.weight", C, F), g(m + "dense2.bias", C), dtype=w.dtype),
            reduce,
            sr,
            sr_linear,
            sr_norm,
        )

    def _encode(self, pixel_values, output_hidden_states: bool, output_attentions: bool, stage_maps=None):
        """-> the last stage's channels-last map (B, h, w, C), hidden states, attentions;
        stage_maps (a list) receives every stage's channels-last output."""
        px = check_pixel_values(pixel_values, self.channels)
        x = np.ascontiguousarray(px.transpose(0, 2, 3, 1))  # the image channels last: one copy
        hidden = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for stage in self.stages:
            x = stage.embed(x)
            probs = []
            for block in stage.blocks:
                x = block(x, output_attentions=output_attentions)
                if output_attentions:
                    x, a = x
                    probs.append(a)
            B, h, w, C = x.shape
            flat = x.reshape(B, h * w, C)
            stage.norm(flat, out=flat)
            if stage_maps is not None:
                stage_maps.append(x)
            if output_hidden_states:
                hidden.append(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            if output_attentions:
                attentions.append(tuple(probs))
        return x, hidden, attentions

    def forward(
        self, pixel_values, output_hidden_states: bool = False, output_attentions: bool = False
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> last_hidden_state (B, C, h, w); with
        output_hidden_states each stage's output (B, C_s, h_s, w_s), with output_attentions
        per stage a tuple of each block's attention weights (B, heads, h_s*w_s, S)."""
        x, hidden, attentions = self._encode(pixel_values, output_hidden_states, output_attentions)
        last = hidden[-1] if hidden else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return ModelOutput(
            last_hidden_state=last,
            hidden_states=self._hidden_out(hidden),
            attentions=self._attentions_out(attentions),
        )

    @staticmethod
    def _hidden_out(hidden):
        return tuple(hidden) if hidden is not None else None

    def _attentions_out(self, attentions):
        if attentions is None:
            return None
        return tuple(a for stage in attentions for a in stage) if self.flat_attentions else tuple(attentions)


@register("image-classification")
class PvtV2ForImageClassification(PreTrainedModel):
    """``transformers.PvtV2ForImageClassification``: a Linear classifier over the mean of
    PvtV2Model's last stage."""

    model_types = ("pvt_v2",)
    base_prefixes = ("",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        base = Weights(weights.ckpt, ("pvt_v2.", ""), (), weights.dtype)
        self.pvt_v2 = PvtV2Model(config, base)
        weights.used |= base.used
        add_image_classifier(self, config, weights, self.pvt_v2.hidden_sizes[-1])

    def forward(
        self, pixel_values, output_hidden_states: bool = False, output_attentions: bool = False
    ) -> ModelOutput:
        """pixel_values (B, channels, H, W) float32 -> logits (B, num_labels), plus PvtV2Model's
        optional hidden_states and attentions."""
        x, hidden, attentions = self.pvt_v2._encode(pixel_values, output_hidden_states, output_attentions)
        B, h, w, C = x.shape
        pooled = x.reshape(B, h * w, C).mean(axis=1, dtype=np.float32)
        return ModelOutput(
            logits=self.classifier(pooled),
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )
