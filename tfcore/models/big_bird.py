"""BigBird (``transformers.BigBirdModel``): a BERT-style encoder whose self-attention is
block-sparse — each block of ``block_size`` tokens attends to its neighbour blocks, the
first and last block (global) and ``num_random_blocks`` "random" blocks — so memory and
time grow linearly with the sequence length.

Matching Hugging Face (eval mode, transformers 5.x):
  * Sequences of at most ``(5 + 2 * num_random_blocks) * block_size`` tokens fall back to
    full attention (HF switches ``attention_type`` to ``original_full`` then; HF keeps the
    switch for later calls, tfcore decides per call).
  * Otherwise the input is padded with ``pad_token_id`` (attention_mask 0, token type 0) to a
    multiple of ``block_size``, and the outputs are cut back to the input length.
  * In eval mode HF's "random" blocks are not random: its helpers return an all-zero plan, so
    every random block is block 0, which is therefore counted ``1 + num_random_blocks``
    times in the softmax of the middle rows (and in rows 1 and -2). ``bigbird_layout``
    reproduces that (or takes an explicit plan, e.g. one drawn by HF in training mode).
  * Masks: padded keys are hidden; HF's -10000 penalties are exact -inf here (a real query
    always sees at least its own block, so the difference underflows in float32), and
    padded queries get a zero attention context as HF's ``from_mask`` product gives.

The layers are the BERT ones (tfcore.TransformerBlock objects: the full-attention fallback
runs them as they are; the block-sparse path uses their projections, norms and
feed-forward around ``tfcore.functional.block_sparse_attention``).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask
from .bert import BertModel
from .encoder import BERT_LAYER_KEYS, EncoderStack, hidden_act, layer_norm_eps
from .registry import register

__all__ = ["BigBirdModel"]

GLOBAL_BLOCKS = (0, -1)  # BigBird ITC: the first and last query blocks attend to everything


def bigbird_layout(
    num_blocks: int, num_random_blocks: int, rand_attn: Optional[np.ndarray] = None
) -> np.ndarray:
    """Key blocks of each query block in HF's BigBird (ITC) block-sparse attention.

    Returns int64 ``(num_blocks, 5 + r)`` (or ``(H, num_blocks, 5 + r)`` for a per-head plan),
    -1 = unused; rows 0 and -1 are global (pass ``global_blocks=(0, -1)``):
      row 1:      blocks 0, 1, 2, last, random
      row q (middle): 0, q-1, q, q+1, random, last
      row -2:     0, last-2, last-1, last, random
    rand_attn: HF's random plan ``(num_blocks - 2, r)`` or ``(H, num_blocks - 2, r)`` (row q - 1
    for query block q); None = eval mode, where HF's plan is all zeros (block 0)."""
    nb, r = int(num_blocks), int(num_random_blocks)
    if nb < 5:
        raise _C.TfcoreValueError(f"block-sparse attention needs at least 5 blocks, got num_blocks={nb}")
    if r < 0:
        raise _C.TfcoreValueError(f"num_random_blocks must be >= 0, got {r}")
    rand = np.zeros((nb - 2, r), np.int64) if rand_attn is None else np.asarray(rand_attn)
    if rand.dtype.kind not in "iu" or rand.shape[-2:] != (nb - 2, r) or rand.ndim not in (2, 3):
        raise _C.TfcoreValueError(
            f"rand_attn must be integers of shape (num_blocks - 2, r) = ({nb - 2}, {r}) "
            f"or (heads, {nb - 2}, {r}), got {rand.dtype} {rand.shape}"
        )
    if rand.size and (rand.min() < 0 or rand.max() >= nb):
        raise _C.TfcoreValueError(f"rand_attn holds block indices outside [0, {nb})")
    lead = rand.shape[:-2]
    layout = np.full(lead + (nb, 5 + r), -1, np.int64)
    last = nb - 1
    layout[..., 1, :4] = (0, 1, 2, last)
    layout[..., 1, 4 : 4 + r] = rand[..., 0, :]
    for q in range(2, nb - 2):
        layout[..., q, :4] = (0, q - 1, q, q + 1)
        layout[..., q, 4 : 4 + r] = rand[..., q - 1, :]
        layout[..., q, 4 + r] = last
    layout[..., nb - 2, :4] = (0, last - 2, last - 1, last)
    layout[..., nb - 2, 4 : 4 + r] = rand[..., nb - 3, :]
    return layout


@register("base")
class BigBirdModel(PreTrainedModel):
    """``transformers.BigBirdModel`` (encoder): BERT embeddings, block-sparse or full
    self-attention layers, tanh pooler over the first token."""

    model_types = ("big_bird",)
    base_prefixes = ("", "bert.")
    ignore_keys = ("position_ids", "token_type_ids")

    # the embedding helpers are BERT's (same attributes)
    embed = BertModel.embed
    _position_ids = BertModel._position_ids

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        super().__init__(config, weights)
        cfg, w = config, weights
        if cfg.get("is_decoder", False) or cfg.get("add_cross_attention", False):
            raise CheckpointError(
                "config.json: BigBirdModel as a decoder (is_decoder / add_cross_attention) is "
                "not supported; tfcore loads the BigBird encoder"
            )
        C, V = cfg.require("hidden_size"), cfg.require("vocab_size")
        H, F, L = (
            cfg.require("num_attention_heads"),
            cfg.require("intermediate_size"),
            cfg.require("num_hidden_layers"),
        )
        P = cfg.require("max_position_embeddings")
        types = cfg.get("type_vocab_size", 2)
        self.attention_type = cfg.get("attention_type", "block_sparse")
        if self.attention_type not in ("block_sparse", "original_full"):
            raise CheckpointError(
                f"config.json: attention_type={self.attention_type!r} (expected 'block_sparse' or "
                "'original_full')"
            )
        self.block_size = int(cfg.get("block_size", 64))
        self.num_random_blocks = int(cfg.get("num_random_blocks", 3))
        if self.block_size < 1 or self.num_random_blocks < 0:
            raise CheckpointError(
                f"config.json: block_size={self.block_size} must be >= 1 and num_random_blocks="
                f"{self.num_random_blocks} >= 0"
            )
        if C % H:
            raise CheckpointError(f"config.json: hidden size {C} is not divisible by {H} heads")
        self.pad_token_id = int(cfg.get("pad_token_id", 0) or 0)
        self.hidden_size, self.vocab_size, self.max_positions = C, V, P
        self.num_heads, self.head_dim = H, C // H

        table = w.get("embeddings.word_embeddings.weight", (V, C))
        if cfg.get("rescale_embeddings", False):
            table = table * np.float32(C**0.5)  # HF scales the gathered rows: same float32 products
        self.word_embeddings = _C.Embedding(np.ascontiguousarray(table, dtype=np.float32))
        self.position_embeddings = w.get("embeddings.position_embeddings.weight", (P, C))
        self.token_type_embeddings = (
            w.get("embeddings.token_type_embeddings.weight", (types, C)) if types else None
        )
        self.embeddings_norm = _C.LayerNorm(
            w.get("embeddings.LayerNorm.weight", (C,)),
            w.get("embeddings.LayerNorm.bias", (C,)),
            eps=layer_norm_eps(cfg),
        )
        self.encoder = _build_layers(
            w, C, H, F, L, layer_norm_eps(cfg), hidden_act(cfg, "hidden_act"), bool(cfg.get("use_bias", True))
        )
        self.pooler = None
        if add_pooling_layer and w.has("pooler.weight"):
            self.pooler = _C.Linear(
                w.get("pooler.weight", (C, C)), w.get("pooler.bias", (C,)), "tanh", dtype=w.dtype
            )

    @property
    def full_attention_threshold(self) -> int:
        """Inputs of at most this many tokens use full attention (HF's fallback)."""
        return (5 + 2 * self.num_random_blocks) * self.block_size

    def uses_block_sparse(self, seq_length: int) -> bool:
        """Whether an input of seq_length tokens runs block-sparse attention (as HF decides)."""
        return self.attention_type == "block_sparse" and seq_length > self.full_attention_threshold

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        padding_free: bool = True,
    ) -> ModelOutput:
        """HF arguments and outputs. Above the fallback threshold the block-sparse path runs
        (``output_attentions`` is not available there: the map it would return is the dense
        L x L matrix block-sparse attention avoids); every returned hidden state has the
        input's length (HF returns the padded length for all but the last). Below it, full
        attention runs like BertModel: with padding, padding_free=True computes only the real
        tokens (padded positions of the outputs are zeros)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T0 = ids.shape
        if not self.uses_block_sparse(T0):
            h = self.embed(ids, token_type_ids, position_ids)
            mask = padding_mask(attention_mask, B, T0)
            h, hidden, attns = self.encoder(h, mask, output_hidden_states, output_attentions, padding_free)
            pooled = self.pooler(np.ascontiguousarray(h[:, 0])) if self.pooler is not None else None
            return ModelOutput(
                last_hidden_state=h, pooler_output=pooled, hidden_states=hidden, attentions=attns
            )
        if output_attentions:
            raise _C.TfcoreValueError(
                f"output_attentions is not available with block-sparse attention (sequence length {T0} > "
                f"{self.full_attention_threshold}); it would be a dense (batch, heads, L, L) map"
            )
        mask = padding_mask(attention_mask, B, T0)
        ids, tt, pos, mask = self._pad_to_block_size(ids, mask, token_type_ids, position_ids)
        h = self.embed(ids, tt, pos)
        T = h.shape[1]
        layout = bigbird_layout(T // self.block_size, self.num_random_blocks)
        hidden: Optional[List[np.ndarray]] = [h[:, :T0]] if output_hidden_states else None
        C = self.hidden_size
        # per-call scratch shared by the layers: q/k/v projection, attention context, output projection
        scratch = (
            np.empty((B, T, 3 * C), np.float32),
            np.empty((B, T, C), np.float32),
            np.empty((B, T, C), np.float32),
        )
        for block in self.encoder.layers:
            h = self._sparse_layer(block, h, layout, mask, scratch)
            if hidden is not None:
                hidden.append(h[:, :T0])
        pooled = self.pooler(np.ascontiguousarray(h[:, 0])) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=np.ascontiguousarray(h[:, :T0]),
            pooler_output=pooled,
            hidden_states=tuple(hidden) if hidden is not None else None,
        )

    def _pad_to_block_size(self, ids, mask, token_type_ids, position_ids):
        """HF's _pad_to_block_size: ids with pad_token_id, mask with 0, token types with 0,
        explicit position ids with pad_token_id. Returns (ids, token_type_ids, position_ids,
        mask) where mask is None when every token is real."""
        B, T0 = ids.shape
        pad = (-T0) % self.block_size
        if token_type_ids is not None:
            token_type_ids = np.asarray(token_type_ids)
            if token_type_ids.shape != (B, T0):
                raise _C.TfcoreValueError(
                    f"token_type_ids has shape {token_type_ids.shape}, expected {(B, T0)}"
                )
        if position_ids is not None:
            position_ids = check_ids("position_ids", position_ids, self.max_positions)
            if position_ids.shape != (B, T0):
                raise _C.TfcoreValueError(f"position_ids has shape {position_ids.shape}, expected {(B, T0)}")
        if pad == 0:
            return ids, token_type_ids, position_ids, mask
        T = T0 + pad
        if position_ids is None and T > self.max_positions:
            raise _C.TfcoreValueError(
                f"sequence length {T0} padded to {T} (a multiple of block_size="
                f"{self.block_size}) exceeds max_position_embeddings={self.max_positions}"
            )

        def padded(a, value):
            return np.concatenate([a, np.full((B, pad), value, a.dtype)], axis=1)

        ids = padded(ids, self.pad_token_id)
        if token_type_ids is not None:
            token_type_ids = padded(token_type_ids, 0)
        if position_ids is not None:
            position_ids = padded(position_ids, self.pad_token_id)
        mask = padded(np.ones((B, T0), bool) if mask is None else mask, False)
        return ids, token_type_ids, position_ids, mask

    def _sparse_layer(
        self, block, x: np.ndarray, layout: np.ndarray, mask: Optional[np.ndarray], scratch
    ) -> np.ndarray:
        """One post-norm layer with block-sparse self-attention: x (B, T, C) -> a new (B, T, C).
        scratch: (B, T, 3C), (B, T, C), (B, T, C) float32 buffers it may overwrite."""
        B, T, C = x.shape
        H, D = self.num_heads, self.head_dim
        qkv, ctx, proj = scratch
        attn = block.attention
        attn.qkv_proj(x, out=qkv)  # (B, T, 3C) = [q heads | k heads | v heads] per row

        def heads(a, i):  # (B, H, T, D) view, no copy
            return a[..., i * C : (i + 1) * C].reshape(B, T, H, D).transpose(0, 2, 1, 3)

        _C.block_sparse_attention(
            heads(qkv, 0),
            heads(qkv, 1),
            heads(qkv, 2),
            layout,
            self.block_size,
            global_blocks=GLOBAL_BLOCKS,
            key_padding_mask=mask,
            query_mask=mask,
            out=heads(ctx, 0),
        )  # ctx is (B, T, H, D)
        h = block.norm1(attn.o_proj(ctx, out=proj), x)  # LayerNorm(x + attention)
        return block.norm2(block.feed_forward(h, out=proj), h)  # LayerNorm(h + ffn(h))


def _build_layers(
    w: Weights, C: int, H: int, F: int, L: int, eps: float, act: str, qkv_bias: bool
) -> EncoderStack:
    """BERT post-norm blocks from encoder.layer.{i}.* (q/k/v biases only with use_bias)."""
    layers: List[_C.TransformerBlock] = []
    for i in w.layer_range(L):

        def g(part, kind, *shape):
            return w.get(f"encoder.layer.{i}.{BERT_LAYER_KEYS[part]}.{kind}", shape, matrix=len(shape) == 2)

        def bias(part):
            return g(part, "bias", C) if qkv_bias else None

        attn = _C.MultiHeadAttention(
            C,
            H,
            q_weight=g("q", "weight", C, C),
            q_bias=bias("q"),
            k_weight=g("k", "weight", C, C),
            k_bias=bias("k"),
            v_weight=g("v", "weight", C, C),
            v_bias=bias("v"),
            o_weight=g("o", "weight", C, C),
            o_bias=g("o", "bias", C),
            dtype=w.dtype,
        )
        ffn = _C.FeedForward(
            g("up", "weight", F, C),
            g("down", "weight", C, F),
            up_bias=g("up", "bias", F),
            down_bias=g("down", "bias", C),
            activation=act,
            dtype=w.dtype,
        )
        n1 = _C.LayerNorm(g("n1", "weight", C), g("n1", "bias", C), eps=eps)
        n2 = _C.LayerNorm(g("n2", "weight", C), g("n2", "bias", C), eps=eps)
        layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=False))
        w.release()
    return EncoderStack(layers)
