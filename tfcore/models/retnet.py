"""RetNet (Sun et al. 2023) in flash-linear-attention's Hugging Face form: ``RetNetForCausalLM``
with fla's ``model_type: "retnet"`` config keys and checkpoint names.

Per block (pre-norm): h += o_proj(RMSNorm_dv(retention(rotary(q), rotary(k), v)) * swish(g_proj x)),
h += down(swish(gate(x)) * up(x)); retention decays head h by gamma_h = 1 - 2^(-5 - h).
Prefill runs the chunkwise form, decoding the recurrent one, carried in a tfcore.RecurrentState
("state" (heads, head_k_dim, head_v_dim) per layer): memory does not grow with the sequence.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from ..functional import linear_attention, rope_inv_freq, rotary_embedding
from ..generation import GenerationMixin
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids
from .decoder import RecurrentStateCache
from .registry import register

__all__ = ["MultiScaleRetention", "RetNetForCausalLM"]


def retnet_gammas(num_heads: int) -> np.ndarray:
    """RetNet's per-head decays 1 - 2^(-5 - h), h = 0..num_heads-1 (fla's g_gamma)."""
    return (1.0 - 2.0 ** (-5.0 - np.arange(num_heads, dtype=np.float64))).astype(np.float32)


def _swish(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


class MultiScaleRetention:
    """fla's ``MultiScaleRetention`` layer (no short convolution, no GQA, fused swish output
    gate): q/k/v/g projections, rotary positions on q/k, per-head decay gammas, RMSNorm over
    each head's values times swish(g), o_proj. Calls take (B, T, hidden) float32.

    Its gated-head structure (projections, RecurrentState handling, normed swish output
    gate) is shared with GLA's layer, which overrides only queries_keys()."""

    def __init__(
        self,
        hidden_size,
        num_heads,
        *,
        q_weight,
        k_weight,
        v_weight,
        g_weight,
        o_weight,
        norm_weight,
        norm_eps=1e-6,
        rope_theta=10000.0,
        dtype="float32",
    ):
        self.init_heads(
            hidden_size,
            num_heads,
            q_weight,
            k_weight,
            v_weight,
            g_weight,
            o_weight,
            norm_weight,
            norm_eps,
            dtype,
        )
        self.inv_freq = rope_inv_freq(self.head_k_dim, rope_theta)
        self.decay = retnet_gammas(num_heads)

    def init_heads(
        self, C, H, q_weight, k_weight, v_weight, g_weight, o_weight, norm_weight, norm_eps, dtype
    ):
        """The projections and the per-head output norm every gated linear-attention layer has."""
        self.hidden_size, self.num_heads = C, H
        self.key_dim, self.value_dim = q_weight.shape[0], v_weight.shape[0]
        if self.key_dim % H or self.value_dim % H:
            raise _C.TfcoreValueError(
                f"key_dim={self.key_dim} and value_dim={self.value_dim} must be multiples of num_heads={H}"
            )
        self.head_k_dim, self.head_v_dim = self.key_dim // H, self.value_dim // H
        self.q_proj = _C.Linear(q_weight, dtype=dtype)
        self.k_proj = _C.Linear(k_weight, dtype=dtype)
        self.v_proj = _C.Linear(v_weight, dtype=dtype)
        self.g_proj = _C.Linear(g_weight, dtype=dtype)
        self.o_proj = _C.Linear(o_weight, dtype=dtype)
        self.g_norm = _C.RMSNorm(norm_weight, eps=norm_eps)

    def state_shapes(self) -> dict:
        """The per-item shapes of this layer's RecurrentState tensors."""
        return {"state": (self.num_heads, self.head_k_dim, self.head_v_dim)}

    def queries_keys(self, x, positions):
        """(q, k) as (B, T, H, head_k_dim) and linear_attention's decay arguments: here rotary
        q/k and the per-head gammas."""
        B, T, _ = x.shape
        H, dk = self.num_heads, self.head_k_dim
        q = rotary_embedding(self.q_proj(x).reshape(B, T, H, dk), self.inv_freq, positions)
        k = rotary_embedding(self.k_proj(x).reshape(B, T, H, dk), self.inv_freq, positions)
        return q, k, {"decay": self.decay}

    def __call__(self, x, positions, *, keep=None, state=None, layer_idx=0):
        """x (B, T, C), positions (B, T) int64; keep (B, T) bool zeroes the keys/values of
        padding; state: a RecurrentState to continue and update (layer layer_idx)."""
        B, T, _ = x.shape
        H, dv = self.num_heads, self.head_v_dim
        q, k, mixing = self.queries_keys(x, positions)
        v = self.v_proj(x).reshape(B, T, H, dv)
        if keep is not None and not keep.all():
            k = k * keep[:, :, None, None]
            v = v * keep[:, :, None, None]
        heads_first = lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3), dtype=np.float32)  # noqa: E731
        q, k, v = heads_first(q), heads_first(k), heads_first(v)
        mixing = {n: heads_first(a) if np.ndim(a) == 4 else a for n, a in mixing.items()}
        if state is None:
            o = linear_attention(q, k, v, mode="chunkwise", **mixing)
        else:
            o, s = linear_attention(
                q,
                k,
                v,
                mode="recurrent" if T <= 4 else "chunkwise",
                initial_state=state.get(layer_idx, "state"),
                return_state=True,
                **mixing,
            )
            state.set(layer_idx, "state", s)
        o = self.g_norm(np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(B * T * H, dv))
        g = self.g_proj(x).reshape(B * T * H, dv)
        o = (o * _swish(g)).reshape(B, T, H * dv)
        return self.o_proj(np.ascontiguousarray(o, dtype=np.float32))


@register("causal-lm")
class RetNetForCausalLM(RecurrentStateCache, PreTrainedModel, GenerationMixin):
    """flash-linear-attention's ``RetNetForCausalLM``: ``model.embeddings``, ``model.layers.{i}``
    (attn_norm, attn = MultiScaleRetention, mlp_norm, mlp = SwiGLU), ``model.norm``, ``lm_head``.
    generate() decodes with a tfcore.RecurrentState (constant memory per generated token)."""

    model_types = ("retnet",)
    base_prefixes = ("",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, H, L, V = (cfg.require(k) for k in ("hidden_size", "num_heads", "num_hidden_layers", "vocab_size"))
        for key, ok in (
            ("use_short_conv", not cfg.get("use_short_conv", False)),
            ("num_kv_heads", cfg.get("num_kv_heads") in (None, H)),
            ("feature_map", cfg.get("feature_map") is None),
            ("use_output_gate", cfg.get("use_output_gate", True)),
            ("hidden_act", cfg.get("hidden_act", "swish") in ("swish", "silu")),
            ("attnres_block_size", cfg.get("attnres_block_size") is None),
            ("attn", not cfg.get("attn")),
            *self.unsupported(cfg),
        ):
            if not ok:
                raise CheckpointError(
                    f"config.json: {type(self).__name__} with {key}={cfg.get(key)!r} is not supported"
                )
        key_dim = C * float(cfg.get("expand_k", self.default_expand_k))
        value_dim = C * float(cfg.get("expand_v", self.default_expand_v))
        if not (math.isclose(key_dim, round(key_dim)) and math.isclose(value_dim, round(value_dim))):
            raise CheckpointError("config.json: hidden_size * expand_k / expand_v must be integers")
        Kd, Vd = round(key_dim), round(value_dim)
        F = cfg.get("intermediate_size")
        if F is None:
            F = int(C * (cfg.get("hidden_ratio") or 4) * 2 / 3)
            F = 256 * ((F + 255) // 256)
        eps = float(cfg.get("norm_eps", 1e-6))
        self.vocab_size, self.hidden_size, self.num_layers = V, C, L
        self.embeddings = _C.Embedding(w.get("model.embeddings.weight", (V, C)))
        self.layers = []
        for i in w.layer_range(L):

            def g(key, *shape):  # no shape: any (the caller checks)
                return w.get(f"model.layers.{i}.{key}", shape or None, matrix=len(shape) == 2)

            attn = self.build_attention(cfg, g, C, H, Kd, Vd, eps, w.dtype)
            ffn = _C.FeedForward(
                g("mlp.up_proj.weight", F, C),
                g("mlp.down_proj.weight", C, F),
                gate_weight=g("mlp.gate_proj.weight", F, C),
                activation="silu",
                dtype=w.dtype,
            )
            n1 = _C.RMSNorm(g("attn_norm.weight", C), eps=eps)
            n2 = _C.RMSNorm(g("mlp_norm.weight", C), eps=eps)
            self.layers.append((n1, attn, n2, ffn))
            w.release()
        self.norm = _C.RMSNorm(w.get("model.norm.weight", (C,)), eps=eps)
        head = w.get("lm_head.weight", (V, C), optional=True, matrix=True)
        if head is None or cfg.get("tie_word_embeddings", False):
            head = self.embeddings.weight
        self.lm_head = _C.Linear(head, dtype=w.dtype)
        self.generation_defaults = {k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}

    default_expand_k, default_expand_v = 1.0, 2.0  # fla's RetNetConfig defaults

    def unsupported(self, cfg: Config):
        """(config key, supported?) pairs a subclass adds to RetNet's checks."""
        return ()

    def build_attention(self, cfg: Config, g, C: int, H: int, Kd: int, Vd: int, eps: float, dtype: str):
        """The token mixer of one layer from its weights (g(key, *shape) reads
        ``model.layers.{i}.<key>``): MultiScaleRetention here."""
        return MultiScaleRetention(
            C,
            H,
            q_weight=g("attn.q_proj.weight", Kd, C),
            k_weight=g("attn.k_proj.weight", Kd, C),
            v_weight=g("attn.v_proj.weight", Vd, C),
            g_weight=g("attn.g_proj.weight", Vd, C),
            o_weight=g("attn.o_proj.weight", C, Vd),
            norm_weight=g("attn.g_norm_swish_gate.weight", Vd // H),
            norm_eps=eps,
            dtype=dtype,
        )

    def _state_layout(self):
        return self.num_layers, self.layers[0][1].state_shapes()

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """HF arguments; past_key_values is a tfcore.RecurrentState (created when use_cache=True
        and none is given) continued and updated in place; attention_mask (B, past + T) or
        (B, T) marks padding (left padding: its keys/values are zeroed, so the state skips it)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        state = past_key_values
        if state is None and use_cache:
            state = self.new_cache(B)
        if state is not None and not isinstance(state, _C.RecurrentState):
            raise _C.TfcoreTypeError(
                f"past_key_values must be a tfcore.RecurrentState for {type(self).__name__}, got {type(state).__name__}"
            )
        if state is not None and state.batch_size != B:
            raise _C.TfcoreValueError(f"past_key_values has batch_size {state.batch_size}, input_ids has {B}")
        past = state.get_seq_length() if state is not None else 0
        keep = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            if mask.ndim != 2 or mask.shape[0] != B or mask.shape[1] not in (T, past + T):
                raise _C.TfcoreValueError(
                    f"attention_mask has shape {mask.shape}, expected ({B}, {T}) or ({B}, {past + T})"
                )
            keep = mask[:, -T:] != 0
        if position_ids is None:
            positions = np.broadcast_to(np.arange(past, past + T, dtype=np.int64), (B, T))
        else:
            positions = np.asarray(position_ids, dtype=np.int64)
            if positions.shape != (B, T):
                raise _C.TfcoreValueError(f"position_ids has shape {positions.shape}, expected {(B, T)}")
        positions = np.ascontiguousarray(positions)
        h = self.embeddings(ids)
        hidden = [h] if output_hidden_states else None
        for i, (n1, attn, n2, ffn) in enumerate(self.layers):
            h = h + attn(n1(h), positions, keep=keep, state=state, layer_idx=i)
            h = h + ffn(n2(h))
            if hidden is not None:
                hidden.append(h)
        if state is not None:
            state.advance(T)
        h = self.norm(h)
        if hidden is not None:
            hidden[-1] = h
        if logits_to_keep:
            h = np.ascontiguousarray(h[:, -logits_to_keep:])
        return ModelOutput(
            logits=self.lm_head(h),
            past_key_values=state,
            hidden_states=tuple(hidden) if hidden is not None else None,
        )
