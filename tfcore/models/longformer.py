"""LongformerModel (Beltagy et al. 2020) from Hugging Face checkpoints: RoBERTa embeddings and
post-norm layers whose self-attention is a sliding window plus global tokens
(``tfcore.functional.sliding_window_attention``), linear in the sequence length.

Unlike HF, the input is not padded to a multiple of ``attention_window``: the window is
clipped at the sequence ends instead, which gives the same outputs for every token.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, padding_mask
from .bert import RobertaModel
from .encoder import hidden_act, layer_norm_eps
from .registry import register

__all__ = [
    "LongformerModel",
    "LongformerLayer",
    "attention_windows",
    "run_longformer_layers",
    "hf_global_attentions",
]

# LongformerLayer.from_weights roles -> HF LongformerLayer module names
LONGFORMER_NAMES = dict(
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    query_global="attention.self.query_global",
    key_global="attention.self.key_global",
    value_global="attention.self.value_global",
    output="attention.output.dense",
    norm1="attention.output.LayerNorm",
    fc1="intermediate.dense",
    fc2="output.dense",
    norm2="output.LayerNorm",
)


def attention_windows(cfg: Config, layers: int) -> List[int]:
    """config.attention_window as one even, positive total window per layer."""
    win = cfg.get("attention_window", 512)
    wins = [win] * layers if isinstance(win, int) and not isinstance(win, bool) else win
    if not isinstance(wins, (list, tuple)) or len(wins) != layers:
        raise CheckpointError(
            f"config.json: attention_window must be an int or a list of {layers} ints "
            f"(one per layer), got {win!r}"
        )
    for i, w in enumerate(wins):
        if not isinstance(w, int) or isinstance(w, bool) or w <= 0 or w % 2:
            raise CheckpointError(
                f"config.json: attention_window[{i}] must be a positive even int, got {w!r}"
            )
    return list(wins)


class LongformerLayer:
    """One post-norm Longformer encoder layer (LongformerLayer, LEDEncoderLayer): q/k/v and
    global projections, the sliding-window + global attention kernel, output projection +
    residual + LayerNorm, feed-forward + residual + LayerNorm. ``window`` is the total
    attention_window of the layer (one-sided window // 2, as HF)."""

    def __init__(
        self,
        qkv: _C.Linear,
        kv_global: _C.Linear,
        q_global: _C.Linear,
        o: _C.Linear,
        norm1: _C.LayerNorm,
        ffn: _C.FeedForward,
        norm2: _C.LayerNorm,
        heads: int,
        window: int,
    ):
        self.qkv, self.kv_global, self.q_global, self.o = qkv, kv_global, q_global, o
        self.norm1, self.ffn, self.norm2 = norm1, ffn, norm2
        self.C = o.out_features
        self.H, self.D, self.window = heads, self.C // heads, window // 2

    @classmethod
    def from_weights(
        cls,
        w: Weights,
        prefix: str,
        names: Dict[str, str],
        C: int,
        H: int,
        F: int,
        eps: float,
        act: str,
        window: int,
    ) -> "LongformerLayer":
        """The layer under checkpoint key prefix; names maps the roles (query, key, value,
        query_global, key_global, value_global, output, norm1, fc1, fc2, norm2) to the family's
        module names (LONGFORMER_NAMES, the LED encoder's in led.py)."""

        def g(role, kind, *shape):
            return w.get(f"{prefix}.{names[role]}.{kind}", shape, matrix=len(shape) == 2)

        def fused(roles):
            return (
                np.concatenate([g(r, "weight", C, C) for r in roles]),
                np.concatenate([g(r, "bias", C) for r in roles]),
            )

        def norm(role):
            return _C.LayerNorm(g(role, "weight", C), g(role, "bias", C), eps=eps)

        return cls(
            _C.Linear(*fused(("query", "key", "value")), dtype=w.dtype),
            _C.Linear(*fused(("key_global", "value_global")), dtype=w.dtype),
            _C.Linear(g("query_global", "weight", C, C), g("query_global", "bias", C), dtype=w.dtype),
            _C.Linear(g("output", "weight", C, C), g("output", "bias", C), dtype=w.dtype),
            norm("norm1"),
            _C.FeedForward(
                g("fc1", "weight", F, C),
                g("fc2", "weight", C, F),
                up_bias=g("fc1", "bias", F),
                down_bias=g("fc2", "bias", C),
                activation=act,
                dtype=w.dtype,
            ),
            norm("norm2"),
            H,
            window,
        )

    def _heads(self, x: np.ndarray) -> np.ndarray:
        """(B, T, C) rows as a (B, H, T, D) view (no copy)."""
        B, T, _ = x.shape
        return x.reshape(B, T, self.H, self.D).transpose(0, 2, 1, 3)

    def __call__(
        self,
        h: np.ndarray,
        real: Optional[np.ndarray],
        glob: Optional[np.ndarray],
        gpos: List[np.ndarray],
        output_attentions: bool,
    ):
        B, T, C = h.shape
        qkv = self.qkv(h)  # (B, T, 3C) = [q | k | v] per row
        kw = {}
        if glob is not None:
            G = max(len(p) for p in gpos)
            hg = np.zeros((B, G, C), np.float32)  # hidden states of each item's global tokens
            for b, p in enumerate(gpos):
                hg[b, : len(p)] = h[b, p]
            kvg = self.kv_global(h)  # (B, T, 2C)
            kw = dict(
                global_attention_mask=glob,
                global_query=self._heads(self.q_global(hg)),
                global_key=self._heads(kvg[..., :C]),
                global_value=self._heads(kvg[..., C:]),
            )
        ctx = np.empty((B, T, C), np.float32)
        res = _C.sliding_window_attention(
            self._heads(qkv[..., :C]),
            self._heads(qkv[..., C : 2 * C]),
            self._heads(qkv[..., 2 * C :]),
            self.window,
            attention_mask=real,
            return_weights=output_attentions,
            out=self._heads(ctx),
            **kw,
        )
        a = self.o(ctx, h)  # dense(ctx) + h
        a = self.norm1(a, out=a)
        y = self.ffn(a, a)
        y = self.norm2(y, out=y)
        return (y, res[1], res[2]) if output_attentions else (y, None, None)


@register("base")
class LongformerModel(RobertaModel):
    """``transformers.LongformerModel``: RoBERTa embeddings (positions from padding_idx + 1),
    Longformer layers (sliding window of ``attention_window[i]`` tokens in total, global
    tokens from ``global_attention_mask`` with their own projections), tanh pooler."""

    model_types = ("longformer",)
    base_prefixes = ("", "longformer.")
    ignore_keys = ("position_ids",)

    def __init__(self, config: Config, weights: Weights, add_pooling_layer: bool = True):
        PreTrainedModel.__init__(self, config, weights)  # embeddings as RobertaModel, own encoder
        cfg, w = config, weights
        C, V = cfg.require("hidden_size"), cfg.require("vocab_size")
        P, H, F = (
            cfg.require("max_position_embeddings"),
            cfg.require("num_attention_heads"),
            cfg.require("intermediate_size"),
        )
        layers = cfg.require("num_hidden_layers")
        if C % H:
            raise CheckpointError(f"config.json: hidden size {C} is not divisible by {H} heads")
        types = cfg.get("type_vocab_size", 2)
        self._init_embeddings(cfg, w, C, V, P, types)
        self.padding_idx = int(cfg.get("pad_token_id", 1))
        self.attention_window = attention_windows(cfg, layers)
        self.layers = []
        for i in w.layer_range(layers):
            self.layers.append(
                LongformerLayer.from_weights(
                    w,
                    f"encoder.layer.{i}",
                    LONGFORMER_NAMES,
                    C,
                    H,
                    F,
                    layer_norm_eps(cfg),
                    hidden_act(cfg),
                    self.attention_window[i],
                )
            )
            w.release()
        self.pooler = None
        if add_pooling_layer and w.has("pooler.dense.weight"):
            self.pooler = _C.Linear(
                w.get("pooler.dense.weight", (C, C)), w.get("pooler.dense.bias", (C,)), "tanh", dtype=w.dtype
            )

    def forward(
        self,
        input_ids,
        attention_mask=None,
        global_attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the transformers class of the same name.

        Outputs: ``last_hidden_state``, ``pooler_output``, ``hidden_states``, ``attentions``
        (B, H, T, G + attention_window[i] + 1) and ``global_attentions``. Padding tokens are
        computed like HF (their attention output is zero). ``global_attentions`` keeps HF's
        shape (B, H, T', G) with T' = T rounded up to a multiple of the largest window, and
        HF's uniform 1/T' rows for the global slots a batch item does not use."""
        h = self.embed(input_ids, token_type_ids, position_ids)
        h, hidden, attns, gattns = run_longformer_layers(
            self.layers, h, attention_mask, global_attention_mask, output_hidden_states, output_attentions
        )
        pooled = self.pooler(np.ascontiguousarray(h[:, 0])) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=h,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attns) if attns is not None else None,
            global_attentions=tuple(gattns) if gattns else None,
        )


def run_longformer_layers(
    layers: Sequence[LongformerLayer],
    h: np.ndarray,
    attention_mask,
    global_attention_mask,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
) -> Tuple[np.ndarray, Optional[tuple], Optional[tuple], Optional[tuple]]:
    """The encoder of LongformerModel and LED on embedded (B, T, C) inputs h, with HF's
    attention_mask (1 = token, 0 = padding) and global_attention_mask (1 = global; padding is
    never global): (last hidden state, hidden states, attentions, global attentions); the
    tuples are None unless asked for (global attentions also when no token is global).
    Attentions are (B, H, T, G + attention_window + 1) as HF; global attentions (B, H, T', G)
    with HF's padded T' (see hf_global_attentions)."""
    B, T, _ = h.shape
    real = padding_mask(attention_mask, B, T, keep_all_true=True)
    glob = padding_mask(global_attention_mask, B, T, name="global_attention_mask", keep_all_true=True)
    if real is not None and real.all():
        real = None
    if glob is not None:
        glob = glob & real if real is not None else glob
        if not glob.any():
            glob = None
    gpos = [np.flatnonzero(g) for g in glob] if glob is not None else []
    hidden = [h] if output_hidden_states else None
    attns, gattns = ([], []) if output_attentions else (None, None)
    window = 2 * max(layer.window for layer in layers) if layers else 2
    for layer in layers:
        h, a, ga = layer(h, real, glob, gpos, output_attentions)
        if output_hidden_states:
            hidden.append(h)
        if output_attentions:
            attns.append(a)
            if glob is not None:
                gattns.append(hf_global_attentions(ga, gpos, T, window))
    return (
        h,
        tuple(hidden) if hidden is not None else None,
        tuple(attns) if attns is not None else None,
        tuple(gattns) if gattns else None,
    )


def hf_global_attentions(ga: np.ndarray, gpos: List[np.ndarray], T: int, window: int) -> np.ndarray:
    """(B, H, T, G) global attention weights as HF returns them: keys padded to a multiple of
    the largest total window, and unused slots (fewer global tokens than G) softmaxed over
    all-equal scores."""
    Tp = -(-T // window) * window
    B, H, _, G = ga.shape
    out = np.zeros((B, H, Tp, G), np.float32)
    out[:, :, :T] = ga
    for b, p in enumerate(gpos):
        out[b, :, :, len(p) :] = 1.0 / Tp
    return out
