"""Jamba (Lieber et al. 2024) as Hugging Face's ``JambaForCausalLM``: a hybrid decoder whose
layers are attention or Mamba token mixers, each followed by a SwiGLU MLP or a sparse
mixture of experts.

Layer i mixes with attention when i % attn_layer_period == attn_layer_offset (else Mamba),
and its feed-forward is a MixtureOfExperts (top num_experts_per_tok of num_experts, softmax
weights NOT renormalised) when i % expert_layer_period == expert_layer_offset (else an MLP).
Attention has no positional encoding (the Mamba layers carry order); the Mamba mixer is
Mamba's with RMSNorms on dt, B and C before the scan. Pre-norm residual blocks:
    h += mixer(input_layernorm(h));   h += feed_forward(pre_ff_layernorm(h))
One generate() carries a HybridCache: a tfcore.KVCache over the attention layers and a
tfcore.RecurrentState over the Mamba layers.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import ModelOutput, Weights, check_ids, padding_mask
from .decoder import RecurrentLM
from .mamba import MambaMixer
from .registry import register

__all__ = ["HybridCache", "JambaForCausalLM", "JambaMambaMixer"]


class JambaMambaMixer(MambaMixer):
    """HF's ``JambaMambaMixer``: MambaMixer with RMSNorms on the time step, B and C."""

    def __init__(self, *, dt_norm_weight, b_norm_weight, c_norm_weight, norm_eps=1e-6, **kw):
        super().__init__(**kw)
        self.dt_norm = _C.RMSNorm(dt_norm_weight, eps=norm_eps)
        self.b_norm = _C.RMSNorm(b_norm_weight, eps=norm_eps)
        self.c_norm = _C.RMSNorm(c_norm_weight, eps=norm_eps)

    def ssm_inputs(self, x):
        R, N = self.time_step_rank, self.state_size
        p = self.x_proj(x)
        dt = self.dt_proj(self.dt_norm(np.ascontiguousarray(p[..., :R])))
        Bm = self.b_norm(np.ascontiguousarray(p[..., R : R + N]))
        Cm = self.c_norm(np.ascontiguousarray(p[..., R + N :]))
        return dt, Bm, Cm


class HybridCache:
    """The cache of a hybrid model: ``key_value`` (a tfcore.KVCache over its attention layers,
    which grows with the sequence) and ``recurrent`` (a tfcore.RecurrentState over all layers,
    empty for the attention ones, fixed size). reorder() and reset() act on both."""

    def __init__(self, key_value: _C.KVCache, recurrent: _C.RecurrentState):
        self.key_value, self.recurrent = key_value, recurrent

    @property
    def batch_size(self) -> int:
        return self.recurrent.batch_size

    @property
    def nbytes(self) -> int:
        """Bytes held now: the recurrent state plus the KV cache's storage."""
        return self.recurrent.nbytes + int(getattr(self.key_value, "nbytes", 0))

    def get_seq_length(self) -> int:
        return self.recurrent.get_seq_length()

    def reorder(self, beam_idx) -> None:
        """Beam search: row b takes the state of row beam_idx[b] (both caches)."""
        self.key_value.reorder(beam_idx)
        self.recurrent.reorder(beam_idx)

    def reset(self) -> None:
        self.key_value.reset()
        self.recurrent.reset()


@register("causal-lm")
class JambaForCausalLM(RecurrentLM):
    """``transformers.JambaForCausalLM``: ``model.embed_tokens``, ``model.layers.{i}``
    (``input_layernorm``, ``self_attn`` or ``mamba``, ``pre_ff_layernorm``, ``feed_forward``
    = MLP or router + experts), ``model.final_layernorm``, ``lm_head``."""

    model_types = ("jamba",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, L, V = (cfg.require(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
        H = cfg.require("num_attention_heads")
        KVH = cfg.get("num_key_value_heads") or H
        D = cfg.get("head_dim") or C // H
        F = cfg.require("intermediate_size")
        act = cfg.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise CheckpointError(
                f"config.json: JambaForCausalLM with hidden_act={act!r} is not supported (silu)"
            )
        if H % KVH:
            raise CheckpointError(
                f"config.json: num_attention_heads={H} is not a multiple of num_key_value_heads={KVH}"
            )
        eps = float(cfg.get("rms_norm_eps", 1e-6))
        ap, ao = cfg.get("attn_layer_period", 8), cfg.get("attn_layer_offset", 4)
        ep, eo = cfg.get("expert_layer_period", 2), cfg.get("expert_layer_offset", 1)
        E, k = cfg.get("num_experts", 16), cfg.get("num_experts_per_tok", 2)
        for key, v in (("attn_layer_period", ap), ("expert_layer_period", ep)):
            if not (isinstance(v, int) and v >= 1):
                raise CheckpointError(f"config.json: {key} must be a positive integer, got {v!r}")
        mamba_cfg = Config(
            {
                "intermediate_size": cfg.get("mamba_expand", 2) * C,
                "state_size": cfg.get("mamba_d_state", 16),
                "conv_kernel": cfg.get("mamba_d_conv", 4),
                "time_step_rank": cfg.get("mamba_dt_rank", "auto"),
                "use_bias": cfg.get("mamba_proj_bias", False),
                "use_conv_bias": cfg.get("mamba_conv_bias", True),
            }
        )
        self.vocab_size, self.hidden_size, self.num_layers = V, C, L
        self.layer_kinds = ["attention" if i % ap == ao else "mamba" for i in range(L)]
        self.embeddings = _C.Embedding(w.get("model.embed_tokens.weight", (V, C)))
        self.layers = []  # (input norm, mixer, pre-ff norm, feed-forward) or a TransformerBlock
        for i in w.layer_range(L):
            p = f"model.layers.{i}."

            def g(key, *shape):
                return w.get(p + key, shape, matrix=len(shape) == 2 and "A_log" not in key)

            ffn = self.feed_forward(w, p, C, F, E, k, act) if E > 1 and i % ep == eo else None
            if ffn is None:
                ffn = _C.FeedForward(
                    g("feed_forward.up_proj.weight", F, C),
                    g("feed_forward.down_proj.weight", C, F),
                    gate_weight=g("feed_forward.gate_proj.weight", F, C),
                    activation=act,
                    dtype=w.dtype,
                )
            n1 = _C.RMSNorm(g("input_layernorm.weight", C), eps=eps)
            n2 = _C.RMSNorm(g("pre_ff_layernorm.weight", C), eps=eps)
            if self.layer_kinds[i] == "attention":
                attn = _C.MultiHeadAttention(
                    C,
                    H,
                    num_key_value_heads=KVH,
                    head_dim=D,
                    q_weight=g("self_attn.q_proj.weight", H * D, C),
                    k_weight=g("self_attn.k_proj.weight", KVH * D, C),
                    v_weight=g("self_attn.v_proj.weight", KVH * D, C),
                    o_weight=g("self_attn.o_proj.weight", C, H * D),
                    is_causal=True,
                    dtype=w.dtype,
                )
                self.layers.append(_C.TransformerBlock(attn, ffn, n1, n2, norm_first=True))
            else:

                def gm(key, *shape):
                    return g("mamba." + key, *shape)

                R = mamba_cfg.get("time_step_rank")
                R = -(-C // 16) if R == "auto" else int(R)
                N = mamba_cfg.get("state_size")
                mixer = JambaMambaMixer.from_config(
                    gm,
                    mamba_cfg,
                    C,
                    w.dtype,
                    dt_norm_weight=gm("dt_layernorm.weight", R),
                    b_norm_weight=gm("b_layernorm.weight", N),
                    c_norm_weight=gm("c_layernorm.weight", N),
                    norm_eps=eps,
                )
                self.layers.append((n1, mixer, n2, ffn))
            w.release()
        self.num_heads, self.num_key_value_heads, self.head_dim = H, KVH, D
        self.norm_f = _C.RMSNorm(w.get("model.final_layernorm.weight", (C,)), eps=eps)
        head = w.get("lm_head.weight", (V, C), optional=True, matrix=True)
        if head is None or cfg.get("tie_word_embeddings", False):
            head = self.embeddings.weight
        self.lm_head = _C.Linear(head, dtype=w.dtype)
        self.generation_defaults = {k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}

    @staticmethod
    def feed_forward(w: Weights, p: str, C: int, F: int, E: int, k: int, act: str) -> _C.MixtureOfExperts:
        """A layer's sparse MoE block from the per-expert layout save_pretrained writes
        (``feed_forward.experts.{j}.gate/up/down_proj``) or transformers 5's fused one
        (``feed_forward.experts.gate_up_proj`` (E, 2F, C), ``down_proj`` (E, C, F))."""
        if not (isinstance(k, int) and 1 <= k <= E):
            raise CheckpointError(
                f"config.json: num_experts_per_tok={k!r} must be an integer in 1..num_experts={E!r}"
            )
        router = w.get(p + "feed_forward.router.weight", (E, C))
        experts = []
        if w.has(p + "feed_forward.experts.gate_up_proj"):
            gate_up = w.get(p + "feed_forward.experts.gate_up_proj", (E, 2 * F, C), matrix=True)
            down = w.get(p + "feed_forward.experts.down_proj", (E, C, F), matrix=True)
            for j in range(E):
                experts.append(
                    _C.FeedForward(
                        gate_up[j, F:], down[j], gate_weight=gate_up[j, :F], activation=act, dtype=w.dtype
                    )
                )
        else:
            for j in range(E):

                def g(name, *shape):
                    return w.get(f"{p}feed_forward.experts.{j}.{name}.weight", shape, matrix=True)

                experts.append(
                    _C.FeedForward(
                        g("up_proj", F, C),
                        g("down_proj", C, F),
                        gate_weight=g("gate_proj", F, C),
                        activation=act,
                        dtype=w.dtype,
                    )
                )
        return _C.MixtureOfExperts(router, experts, top_k=k, normalize_top_k=False)

    def new_cache(
        self,
        batch_size: int,
        capacity: int = 256,
        policy: str = "full",
        budget: Optional[int] = None,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> HybridCache:
        """A HybridCache: a KVCache (capacity, policy, budget, n_sink, dtype as tfcore.KVCache)
        over the attention layers and a RecurrentState (float32, or bfloat16 with
        dtype="bfloat16") over the Mamba layers."""
        n_attn = self.layer_kinds.count("attention")
        kv = _C.KVCache(
            max(n_attn, 1),
            batch_size,
            self.num_key_value_heads,
            self.head_dim,
            capacity=max(int(capacity), 1),
            policy=policy,
            budget=int(budget or 0),
            n_sink=n_sink,
            dtype=dtype,
        )
        shapes = [
            {} if kind == "attention" else layer[1].state_shapes()
            for kind, layer in zip(self.layer_kinds, self.layers)
        ]
        rs = _C.RecurrentState(
            self.num_layers, batch_size, shapes, dtype="bfloat16" if dtype == "bfloat16" else "float32"
        )
        return HybridCache(kv, rs)

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
        """HF arguments; past_key_values is a HybridCache (created when use_cache=True and none
        is given) continued and updated in place; attention_mask (B, past + T) marks padding
        (attention layers mask it, Mamba layers zero it as HF does). position_ids are accepted
        and unused (Jamba's attention has no positional encoding)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = self.new_cache(B, T)
        if cache is not None and not isinstance(cache, HybridCache):
            raise _C.TfcoreTypeError(
                f"past_key_values must be the HybridCache of model.new_cache() for JambaForCausalLM, got {type(cache).__name__}"
            )
        if cache is not None and cache.batch_size != B:
            raise _C.TfcoreValueError(f"past_key_values has batch_size {cache.batch_size}, input_ids has {B}")
        past = cache.get_seq_length() if cache is not None else 0
        mask = padding_mask(attention_mask, B, past + T, "(batch, past + new)")
        keep = None if mask is None else np.asarray(mask)[:, -T:] != 0
        h = self.embeddings(ids)
        hidden = [h] if output_hidden_states else None
        state = cache.recurrent if cache is not None else None
        j = 0  # index of the attention layer in the KV cache
        for i, layer in enumerate(self.layers):
            if self.layer_kinds[i] == "attention":
                kw = {"past_key_values": cache.key_value, "layer_idx": j} if cache is not None else {}
                h = layer(h, mask, **kw)
                j += 1
            else:
                n1, mixer, n2, ffn = layer
                h = h + mixer(n1(h), keep=keep, state=state, layer_idx=i)
                h = h + ffn(n2(h))
            if hidden is not None:
                hidden.append(h)
        if state is not None:
            state.advance(T)
        h = self.norm_f(h)
        if hidden is not None:
            hidden[-1] = h
        if logits_to_keep:
            h = np.ascontiguousarray(h[:, -logits_to_keep:])
        return ModelOutput(
            logits=self.lm_head(h),
            past_key_values=cache,
            hidden_states=tuple(hidden) if hidden is not None else None,
        )
