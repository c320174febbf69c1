"""CLIP: CLIPVisionModel, CLIPTextModel and CLIPModel (image and text towers, projections,
logits per image / text) from Hugging Face checkpoints.

Both towers are pre-norm TransformerBlocks. The vision tower's patch embedding is a
stride = kernel convolution without bias, run as tfcore.Conv2d on the channels-last image,
followed by the class embedding, positions and ``pre_layrnorm``; its pooled output is
``post_layernorm`` of the class token. The text tower is causal over token + position
embeddings (padding masked as well), ``final_layer_norm``, pooled at the end-of-text token
(HF's rule: the highest id when ``eos_token_id`` is 2, as in the original checkpoints, else
the first ``eos_token_id``). ``quick_gelu`` (x sigmoid(1.702 x)) is not a tfcore activation:
it equals silu(1.702 x) / 1.702, so fc1 is scaled by 1.702 and fc2 by 1 / 1.702 at load.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .encoder import layer_norm, pre_norm_stack
from .registry import register
from .vision import check_pixel_values, pair

__all__ = ["CLIPModel", "CLIPTextModel", "CLIPVisionModel"]


class _VisionTower:
    """CLIPVisionTransformer: weights named {prefix}embeddings..., {prefix}encoder... ."""

    def __init__(self, cfg: Config, w: Weights, prefix: str):
        C = cfg.require("hidden_size")
        self.channels = int(cfg.get("num_channels", 3))
        self.patch = pair(cfg.require("patch_size"))
        self.image_size = pair(cfg.get("image_size", 224))
        eps = float(cfg.get("layer_norm_eps", 1e-5))
        conv = w.get(f"{prefix}embeddings.patch_embedding.weight", (C, self.channels) + self.patch)
        self.patch_embed = _C.Conv2d(np.ascontiguousarray(conv), stride=self.patch)
        self.class_embedding = w.get(f"{prefix}embeddings.class_embedding", (C,))
        self.grid = (self.image_size[0] // self.patch[0], self.image_size[1] // self.patch[1])
        n = self.grid[0] * self.grid[1] + 1
        self.positions = w.get(f"{prefix}embeddings.position_embedding.weight", (n, C))
        self.pre_norm = layer_norm(w, f"{prefix}pre_layrnorm", C, eps)
        self.encoder = pre_norm_stack(cfg, w, f"{prefix}encoder.", causal=False)
        self.post_norm = layer_norm(w, f"{prefix}post_layernorm", C, eps)

    def __call__(self, pixel_values, output_hidden_states: bool, output_attentions: bool) -> ModelOutput:
        x = check_pixel_values(pixel_values, self.channels)
        B, _, Hh, Ww = x.shape
        if (Hh // self.patch[0], Ww // self.patch[1]) != self.grid:
            raise _C.TfcoreValueError(
                f"input image size ({Hh}*{Ww}) doesn't match model ({self.image_size[0]}*{self.image_size[1]})"
            )
        # the patch convolution on the channels-last image: (B, gh, gw, C) = the patch tokens
        patches = self.patch_embed(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), channels_last=True)
        C = patches.shape[-1]
        h = np.empty((B, 1 + self.grid[0] * self.grid[1], C), np.float32)
        h[:, 0] = self.class_embedding
        h[:, 1:] = patches.reshape(B, -1, C)
        h += self.positions
        h = self.pre_norm(h)
        h, hidden, attns = self.encoder(h, None, output_hidden_states, output_attentions)
        return ModelOutput(
            last_hidden_state=h,
            pooler_output=self.post_norm(np.ascontiguousarray(h[:, 0])),
            hidden_states=hidden,
            attentions=attns,
        )


class _TextTower:
    """CLIPTextTransformer: weights named {prefix}embeddings..., {prefix}encoder... ."""

    def __init__(self, cfg: Config, w: Weights, prefix: str):
        C, V = cfg.require("hidden_size"), cfg.require("vocab_size")
        P = cfg.require("max_position_embeddings")
        eps = float(cfg.get("layer_norm_eps", 1e-5))
        self.vocab_size, self.max_positions = V, P
        self.eos_token_id = int(cfg.get("eos_token_id", 2))
        self.tokens = _C.Embedding(w.get(f"{prefix}embeddings.token_embedding.weight", (V, C)))
        self.positions = w.get(f"{prefix}embeddings.position_embedding.weight", (P, C))
        self.encoder = pre_norm_stack(cfg, w, f"{prefix}encoder.", causal=True)
        self.final_norm = layer_norm(w, f"{prefix}final_layer_norm", C, eps)

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
            if pos.shape[1] != T:
                raise _C.TfcoreValueError(f"position_ids has shape {pos.shape}, expected (batch, {T})")
            pos = self.positions[pos]
        h = self.tokens(ids)
        h += pos
        mask = padding_mask(attention_mask, B, T)
        h, hidden, attns = self.encoder(h, mask, output_hidden_states, output_attentions, padding_free=False)
        last = self.final_norm(h)
        if self.eos_token_id == 2:
            eos = ids.argmax(axis=-1)
        else:
            eos = (ids == self.eos_token_id).argmax(axis=-1)
        pooled = np.ascontiguousarray(last[np.arange(B), eos])
        return ModelOutput(
            last_hidden_state=last, pooler_output=pooled, hidden_states=hidden, attentions=attns
        )


def _sub_config(cfg: Config, key: str) -> Config:
    sub = cfg.get(key)
    if not isinstance(sub, dict):
        raise CheckpointError(f"config.json: {key} must be an object, got {type(sub).__name__}")
    return Config(sub)


@register("base")
class CLIPVisionModel(PreTrainedModel):
    """``transformers.CLIPVisionModel``: last_hidden_state and pooler_output (the normalised
    class token) of the image tower."""

    model_types = ("clip_vision_model",)
    base_prefixes = ("", "vision_model.")  # transformers 5 saves the tower unprefixed, 4 did not
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.vision_model = _VisionTower(config, weights, "")

    def forward(
        self, pixel_values, output_hidden_states: bool = False, output_attentions: bool = False
    ) -> ModelOutput:
        """pixel_values (B, 3, image_size, image_size) float32, as CLIPImageProcessor makes them."""
        return self.vision_model(pixel_values, output_hidden_states, output_attentions)


@register("base")
class CLIPTextModel(PreTrainedModel):
    """``transformers.CLIPTextModel``: last_hidden_state and pooler_output (the end-of-text
    token's state) of the causal text tower."""

    model_types = ("clip_text_model",)
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
        return self.text_model(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions
        )


@register("base")
class CLIPModel(PreTrainedModel):
    """``transformers.CLIPModel``: both towers, their projections and the scaled cosine
    logits (``logits_per_image`` (B_img, B_txt), ``logits_per_text`` its transpose)."""

    model_types = ("clip",)
    base_prefixes = ("",)
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        tcfg, vcfg = _sub_config(config, "text_config"), _sub_config(config, "vision_config")
        D = int(config.get("projection_dim", 512))
        self.text_model = _TextTower(tcfg, weights, "text_model.")
        self.vision_model = _VisionTower(vcfg, weights, "vision_model.")
        Ct, Cv = tcfg.require("hidden_size"), vcfg.require("hidden_size")
        self.text_projection = _C.Linear(
            weights.get("text_projection.weight", (D, Ct), matrix=True), dtype=weights.dtype
        )
        self.visual_projection = _C.Linear(
            weights.get("visual_projection.weight", (D, Cv), matrix=True), dtype=weights.dtype
        )
        self.logit_scale = float(weights.get("logit_scale", ()).reshape(()))

    def get_text_features(self, input_ids, attention_mask=None, position_ids=None) -> np.ndarray:
        """(B, projection_dim): the projected pooled text states (not normalised), as HF."""
        out = self.text_model(input_ids, attention_mask, position_ids, False, False)
        return self.text_projection(out.pooler_output)

    def get_image_features(self, pixel_values) -> np.ndarray:
        """(B, projection_dim): the projected pooled image states (not normalised), as HF."""
        return self.visual_projection(self.vision_model(pixel_values, False, False).pooler_output)

    def forward(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        if input_ids is None or pixel_values is None:
            raise _C.TfcoreValueError(
                "CLIPModel needs both input_ids and pixel_values (or use get_*_features)"
            )
        vis = self.vision_model(pixel_values, output_hidden_states, output_attentions)
        txt = self.text_model(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions
        )
        image_embeds = _normalize(self.visual_projection(vis.pooler_output))
        text_embeds = _normalize(self.text_projection(txt.pooler_output))
        logits_per_text = (text_embeds @ image_embeds.T) * np.float32(np.exp(self.logit_scale))
        return ModelOutput(
            logits_per_image=np.ascontiguousarray(logits_per_text.T),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=txt,
            vision_model_output=vis,
        )


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
