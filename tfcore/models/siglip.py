"""SigLIP: SiglipVisionModel, SiglipTextModel, SiglipModel (sigmoid image-text logits) and
SiglipForImageClassification from Hugging Face checkpoints.

Both towers are the pre-norm blocks CLIP uses (tanh GELU by default). The vision tower has no
class token and no pre-norm: patch convolution (with bias) + positions, the blocks,
``post_layernorm`` over every token, and pooled by the multi-head attention pooling head
(a learned probe query attending to the tokens, then LayerNorm + MLP with a residual) unless
``vision_use_head`` is false. The text tower is bidirectional (padding masked when an
attention_mask is given), ``final_layer_norm``, pooled at the LAST position (SigLIP is used
with text padded to ``max_length``) and projected by ``head``. SiglipModel's logits are
``cos(text, image) * exp(logit_scale) + logit_bias``: independent sigmoid probabilities per
pair, not a softmax over labels.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .encoder import clip_mlp, hidden_act, layer_norm, pre_norm_stack
from .registry import register
from .vision import add_image_classifier, check_pixel_values, pair, resize_grid

__all__ = ["SiglipForImageClassification", "SiglipModel", "SiglipTextModel", "SiglipVisionModel"]

ACT, EPS = "gelu_pytorch_tanh", 1e-6  # SiglipVisionConfig / SiglipTextConfig defaults


def _dims(cfg: Config):
    C, H = cfg.require("hidden_size"), cfg.require("num_attention_heads")
    if C % H:
        raise CheckpointError(f"config.json: hidden_size={C} is not divisible by num_attention_heads={H}")
    return C, H, cfg.require("intermediate_size"), float(cfg.get("layer_norm_eps", EPS))


class _PoolingHead:
    """SiglipMultiheadAttentionPoolingHead: probe (1, 1, C) attends to the tokens
    (torch.nn.MultiheadAttention, packed in_proj), then x + mlp(layernorm(x))."""

    def __init__(self, cfg: Config, w: Weights, prefix: str):
        C, H, F, eps = _dims(cfg)
        self.probe = w.get(f"{prefix}probe", (1, 1, C))
        qkv_w = w.get(f"{prefix}attention.in_proj_weight", (3 * C, C))
        qkv_b = w.get(f"{prefix}attention.in_proj_bias", (3 * C,))
        self.attention = _C.MultiHeadAttention(
            C,
            H,
            q_weight=np.ascontiguousarray(qkv_w[:C]),
            k_weight=np.ascontiguousarray(qkv_w[C : 2 * C]),
            v_weight=np.ascontiguousarray(qkv_w[2 * C :]),
            q_bias=np.ascontiguousarray(qkv_b[:C]),
            k_bias=np.ascontiguousarray(qkv_b[C : 2 * C]),
            v_bias=np.ascontiguousarray(qkv_b[2 * C :]),
            o_weight=w.get(f"{prefix}attention.out_proj.weight", (C, C), matrix=True),
            o_bias=w.get(f"{prefix}attention.out_proj.bias", (C,)),
            is_cross_attention=True,
            dtype=w.dtype,
        )
        self.layernorm = layer_norm(w, f"{prefix}layernorm", C, eps)
        self.mlp = clip_mlp(w, f"{prefix}mlp.", C, F, hidden_act(cfg, default=ACT))

    def __call__(self, h: np.ndarray) -> np.ndarray:
        B, _, C = h.shape
        probe = np.ascontiguousarray(np.broadcast_to(self.probe, (B, 1, C)))
        x = self.attention(probe, encoder_hidden_states=h)
        x = self.mlp(self.layernorm(x), residual=x)
        return np.ascontiguousarray(x[:, 0])


class _VisionTower:
    """SiglipVisionTransformer: weights named {prefix}embeddings..., {prefix}encoder..., ..."""

    def __init__(self, cfg: Config, w: Weights, prefix: str):
        C, _, _, eps = _dims(cfg)
        self.channels = int(cfg.get("num_channels", 3))
        self.patch = pair(cfg.get("patch_size", 16))
        self.image_size = pair(cfg.get("image_size", 224))
        conv = w.get(f"{prefix}embeddings.patch_embedding.weight", (C, self.channels) + self.patch)
        bias = w.get(f"{prefix}embeddings.patch_embedding.bias", (C,))
        self.patch_embed = _C.Conv2d(np.ascontiguousarray(conv), bias, stride=self.patch)
        self.grid = (self.image_size[0] // self.patch[0], self.image_size[1] // self.patch[1])
        n = self.grid[0] * self.grid[1]
        self.positions = w.get(f"{prefix}embeddings.position_embedding.weight", (n, C))
        self.encoder = pre_norm_stack(cfg, w, f"{prefix}encoder.", False, ACT, EPS)
        self.post_norm = layer_norm(w, f"{prefix}post_layernorm", C, eps)
        self.head = _PoolingHead(cfg, w, f"{prefix}head.") if cfg.get("vision_use_head", True) else None

    def _positions(self, gh: int, gw: int, interpolate: bool) -> np.ndarray:
        if (gh, gw) == self.grid:
            return self.positions
        if not interpolate:
            raise _C.TfcoreValueError(
                f"input image gives a {gh}x{gw} patch grid, the model's positions are for "
                f"{self.grid[0]}x{self.grid[1]} (image_size {self.image_size[0]}*{self.image_size[1]}); "
                "pass interpolate_pos_encoding=True to resample them"
            )
        if self.grid[0] != self.grid[1]:
            raise _C.TfcoreValueError(
                f"interpolate_pos_encoding needs a square position grid, the model's is {self.grid}"
            )
        C = self.positions.shape[-1]
        return resize_grid(self.positions.reshape(*self.grid, C), gh, gw).reshape(gh * gw, C)

    def __call__(
        self, pixel_values, output_hidden_states: bool, output_attentions: bool, interpolate: bool = False
    ) -> ModelOutput:
        x = check_pixel_values(pixel_values, self.channels)
        B, _, Hh, Ww = x.shape
        gh, gw = Hh // self.patch[0], Ww // self.patch[1]
        if gh == 0 or gw == 0:
            raise _C.TfcoreValueError(
                f"pixel_values is {Hh}x{Ww}, smaller than one {self.patch[0]}x{self.patch[1]} patch"
            )
        pos = self._positions(gh, gw, interpolate)
        # the patch convolution on the channels-last image: (B, gh, gw, C) = the patch tokens
        patches = self.patch_embed(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), channels_last=True)
        h = patches.reshape(B, gh * gw, -1)
        h += pos
        h, hidden, attns = self.encoder(h, None, output_hidden_states, output_attentions)
        last = self.post_norm(h)
        return ModelOutput(
            last_hidden_state=last,
            pooler_output=self.head(last) if self.head is not None else None,
            hidden_states=hidden,
            attentions=attns,
        )


class _TextTower:
    """SiglipTextTransformer: weights named {prefix}embeddings..., {prefix}encoder..., {prefix}head."""

    def __init__(self, cfg: Config, w: Weights, prefix: str):
        C, _, _, eps = _dims(cfg)
        V, P = cfg.require("vocab_size"), cfg.get("max_position_embeddings", 64)
        D = int(cfg.get("projection_size") or C)
        self.vocab_size, self.max_positions = V, int(P)
        self.pad_token_id = int(cfg.get("pad_token_id", 1) or 0)
        self.tokens = _C.Embedding(w.get(f"{prefix}embeddings.token_embedding.weight", (V, C)))
        self.positions = w.get(f"{prefix}embeddings.position_embedding.weight", (P, C))
        self.encoder = pre_norm_stack(cfg, w, f"{prefix}encoder.", False, ACT, EPS)
        self.final_norm = layer_norm(w, f"{prefix}final_layer_norm", C, eps)
        self.head = _C.Linear(
            w.get(f"{prefix}head.weight", (D, C), matrix=True),
            w.get(f"{prefix}head.bias", (D,)),
            dtype=w.dtype,
        )

    def __call__(
        self, input_ids, attention_mask, position_ids, output_hidden_states: bool, output_attentions: bool
    ) -> ModelOutput:
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        if T > self.max_positions:
            raise _C.TfcoreValueError(
                f"input_ids has {T} tokens, more than max_position_embeddings={self.max_positions}"
            )
        if position_ids is None:
            pos = self.positions[:T]
        else:
            pos = check_ids("position_ids", position_ids, self.max_positions)
            if pos.shape != (B, T):
                raise _C.TfcoreValueError(f"position_ids has shape {pos.shape}, expected ({B}, {T})")
            pos = self.positions[pos]
        h = self.tokens(ids)
        h += pos
        mask = padding_mask(attention_mask, B, T)
        # padding_free=False: the pooled state is the last position's, padding or not
        h, hidden, attns = self.encoder(h, mask, output_hidden_states, output_attentions, padding_free=False)
        last = self.final_norm(h)
        pooled = self.head(np.ascontiguousarray(last[:, -1]))
        return ModelOutput(
            last_hidden_state=last, pooler_output=pooled, hidden_states=hidden, attentions=attns
        )

    def pad(self, ids_list) -> np.ndarray:
        """Token id lists -> (B, max_position_embeddings) int64, cut or padded with pad_token_id
        at the end: how SigLIP's text is fed (``padding="max_length"``, no attention mask)."""
        P = self.max_positions
        out = np.full((len(ids_list), P), self.pad_token_id, np.int64)
        for i, ids in enumerate(ids_list):
            ids = list(ids)[:P]
            out[i, : len(ids)] = ids
        return out


def _sub_config(cfg: Config, key: str) -> Config:
    sub = cfg.get(key)
    if sub is None:
        return Config({})  # HF fills an absent sub-config with the defaults
    if not isinstance(sub, dict):
        raise CheckpointError(f"config.json: {key} must be an object, got {type(sub).__name__}")
    return Config(sub)


@register("base")
class SiglipVisionModel(PreTrainedModel):
    """``transformers.SiglipVisionModel``: last_hidden_state (post-norm tokens, no class token)
    and pooler_output (the attention pooling head's output) of the image tower."""

    model_types = ("siglip_vision_model",)
    base_prefixes = ("", "vision_model.")
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.vision_model = _VisionTower(config, weights, "")

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, 3, H, W) float32, as SiglipImageProcessor makes them;
        interpolate_pos_encoding resamples the positions (bicubic, as HF) for other sizes."""
        return self.vision_model(
            pixel_values, output_hidden_states, output_attentions, interpolate_pos_encoding
        )


@register("base")
class SiglipTextModel(PreTrainedModel):
    """``transformers.SiglipTextModel``: last_hidden_state and pooler_output (the last
    position's state through ``head``) of the bidirectional text tower."""

    model_types = ("siglip_text_model",)
    base_prefixes = ("", "text_model.")
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.text_model = _TextTower(config, weights, "")

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """input_ids (B, T) padded to max_position_embeddings as SigLIP was trained."""
        return self.text_model(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions
        )


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@register("base")
class SiglipModel(PreTrainedModel):
    """``transformers.SiglipModel``: both towers and the sigmoid logits
    ``logits_per_image`` (B_img, B_txt) = cos * exp(logit_scale) + logit_bias (probabilities:
    sigmoid of them), ``logits_per_text`` the transpose."""

    model_types = ("siglip",)
    base_prefixes = ("",)
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        tcfg, vcfg = _sub_config(config, "text_config"), _sub_config(config, "vision_config")
        self.text_model = _TextTower(tcfg, weights, "text_model.")
        self.vision_model = _VisionTower(vcfg, weights, "vision_model.")
        if self.vision_model.head is None:
            raise CheckpointError("SiglipModel needs the vision pooling head (vision_use_head is false)")
        self.logit_scale = float(weights.get("logit_scale", (1,))[0])
        self.logit_bias = float(weights.get("logit_bias", (1,))[0])

    def get_text_features(self, input_ids, attention_mask=None, position_ids=None) -> np.ndarray:
        """(B, projection_size): the text tower's pooled output (not normalised), as HF."""
        return self.text_model(input_ids, attention_mask, position_ids, False, False).pooler_output

    def get_image_features(self, pixel_values, interpolate_pos_encoding: bool = False) -> np.ndarray:
        """(B, hidden_size): the vision tower's pooled output (not normalised), as HF."""
        return self.vision_model(pixel_values, False, False, interpolate_pos_encoding).pooler_output

    def tokenize_labels(self, tokenizer, texts) -> dict:
        """The text inputs zero-shot classification feeds: padded to max_position_embeddings
        with pad_token_id and no attention mask, as SigLIP's processor does."""
        enc = tokenizer.encode_batch(list(texts))
        real = [
            [t for t, m in zip(e.ids, e.attention_mask) if m] for e in enc
        ]  # the tokenizer's own padding out
        return {"input_ids": self.text_model.pad(real), "attention_mask": None}

    def forward(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        if input_ids is None or pixel_values is None:
            raise _C.TfcoreValueError(
                "SiglipModel needs both input_ids and pixel_values (or use get_*_features)"
            )
        vis = self.vision_model(
            pixel_values, output_hidden_states, output_attentions, interpolate_pos_encoding
        )
        txt = self.text_model(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions
        )
        image_embeds, text_embeds = _normalize(vis.pooler_output), _normalize(txt.pooler_output)
        logits_per_text = (text_embeds @ image_embeds.T) * np.float32(np.exp(self.logit_scale)) + np.float32(
            self.logit_bias
        )
        return ModelOutput(
            logits_per_image=np.ascontiguousarray(logits_per_text.T),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=txt,
            vision_model_output=vis,
        )


@register("image-classification")
class SiglipForImageClassification(PreTrainedModel):
    """``transformers.SiglipForImageClassification``: a Linear classifier over the mean of the
    vision tower's last_hidden_state (the pooling head is not used)."""

    model_types = ("siglip",)
    base_prefixes = ("",)
    ignore_keys = ("position_ids", "vision_model.head.")  # HF builds the head but never runs it here

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        vcfg = Config({**_sub_config(config, "vision_config").to_dict(), "vision_use_head": False})
        self.vision_model = _VisionTower(vcfg, weights, "vision_model.")
        add_image_classifier(self, config, weights, vcfg.require("hidden_size"))

    def forward(
        self,
        pixel_values,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> ModelOutput:
        """pixel_values (B, 3, H, W) float32 -> logits (B, num_labels), plus the vision tower's
        optional hidden_states and attentions."""
        out = self.vision_model(
            pixel_values, output_hidden_states, output_attentions, interpolate_pos_encoding
        )
        pooled = out.last_hidden_state.mean(axis=1, dtype=np.float32)
        return ModelOutput(
            logits=self.classifier(pooled),
            hidden_states=out.get("hidden_states"),
            attentions=out.get("attentions"),
        )
