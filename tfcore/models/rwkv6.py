"""RWKV-6 ("Finch", Peng et al. 2024) as flash-linear-attention's ``RWKV6ForCausalLM``
(``model_type: "rwkv6"``, fla's config keys and checkpoint names: ``model.embeddings``,
``model.layers.{i}``, ``model.norm``, ``lm_head``). ``tfcore convert`` turns the ``rwkv``
package's RWKV-x060 ``.pth`` layout into these names (tfcore/_rwkv6_convert.py).

Per block (pre-norm; block 0 first applies ``pre_norm`` when ``norm_first``), on x = norm(h)
and the token shift delta = x_{t-1} - x_t (x_{-1} = 0, or the state's previous token):
    data-dependent lerp (ddlerp), a low-rank projection of the shifted input:
        m_{r,w,k,v,g} = tanh((x + delta * mu_x) A) B_{r,w,k,v,g} + x_bias_{r,w,k,v,g}
        x_n = x + delta * m_n
    r, k, v, g = W_r x_r, W_k x_k, W_v x_v, W_g x_g
    log decay  = -exp(tanh(x_w D1) D2 + d)                 (w_proj: LoRA with bias d)
    o = WKV(r, k, v, log decay, bonus u)                   (tfcore.functional.rwkv6_wkv)
    h += o_proj(GroupNorm_heads(o) * silu(g))              time mix
    h += sigmoid(W_r' x_r') * W_v' relu(W_k' x_k')^2       channel mix, x_n' = x' + delta' * mu_n'
(x' = ffn_norm(h), its own shift). The WKV runs in its recurrent form in float32: RWKV-6's
decays -exp(w) reach the hundreds, where a chunkwise form's in-chunk decay ratios lose
precision (see tfcore/_rwkv6.py).

Decoding carries a tfcore.RecurrentState per layer: "shift_att", "shift_ffn" (hidden,), the
previous token's normed input of each mix, and "wkv" (heads, head_k_dim, head_v_dim), the
matrix state. Memory is constant in the sequence length.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from ..functional import rwkv6_wkv, sigmoid_gate, silu, squared_relu
from ..generation import GenerationMixin
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids
from .decoder import RecurrentStateCache
from .registry import register

__all__ = ["Rwkv6ForCausalLM"]

# fla's x_proj output order: x_bias rows and the 5 low-rank blocks are (r, w, k, v, g)
_R, _W, _K, _V, _G = range(5)


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _shift_delta(x: np.ndarray, prev: Optional[np.ndarray]) -> np.ndarray:
    """x (B, T, C): x_{t-1} - x_t, with x_{-1} = prev (B, C) or 0."""
    delta = np.empty_like(x)
    delta[:, 1:] = x[:, :-1]
    delta[:, 0] = 0.0 if prev is None else prev
    delta -= x
    return delta


class Rwkv6Block:
    """One fla ``RWKV6Block``: time mix (RWKV6Attention) and channel mix (RWKV6FeedForward)
    with their LayerNorms; calls take (B, T, hidden) float32."""

    def __init__(self, g, dims: dict, eps: float, group_eps: float, norm_bias: bool, dtype: str, first: bool):
        """g(key, *shape) reads ``model.layers.{i}.<key>`` (shape checked when given); dims
        holds C, H, K, V (key/value widths), F (intermediate), R (ddlerp rank), Rg (decay rank)."""
        C, H, K, V, F, R, Rg = (dims[n] for n in ("C", "H", "K", "V", "F", "R", "Rg"))

        def norm(name):
            bias = g(f"{name}.bias", C) if norm_bias else np.zeros(C, np.float32)
            return _C.LayerNorm(g(f"{name}.weight", C), bias, eps=eps)

        def lin(key, n_out, n_in, bias_key=None):
            bias = g(bias_key, n_out) if bias_key else None
            return _C.Linear(g(key, n_out, n_in), bias, dtype=dtype)

        self.C, self.H, self.K, self.V, self.R = C, H, K, V, R
        self.group_eps = group_eps
        self.pre_norm = norm("pre_norm") if first else None
        self.attn_norm, self.ffn_norm = norm("attn_norm"), norm("ffn_norm")
        a = "attn"
        self.x_mu = _f32(g(f"{a}.x_proj.0.mu", C))
        # the low-rank ddlerp stays float32 (rank 5 * 32: a few % of the block's weights)
        self.x_down = _C.Linear(_f32(g(f"{a}.x_proj.0.linear.weight", 5 * R, C)))
        up = _f32(g(f"{a}.x_proj.2.weight", C, 5 * R))
        self.x_up = _f32(up.reshape(C, 5, R).transpose(1, 2, 0))  # (5, R, C): m_n = lo_n @ x_up[n]
        self.x_bias = _f32(g(f"{a}.x_bias", 5, C))
        self.r_proj = lin(f"{a}.r_proj.linear.weight", K, C)
        self.k_proj = lin(f"{a}.k_proj.linear.weight", K, C)
        self.v_proj = lin(f"{a}.v_proj.linear.weight", V, C)
        self.g_proj = lin(f"{a}.g_proj.linear.weight", V, C)
        self.w_down = _C.Linear(_f32(g(f"{a}.w_proj.linear.lora.0.weight", Rg, C)))
        self.w_up = _C.Linear(
            _f32(g(f"{a}.w_proj.linear.lora.2.weight", K, Rg)), _f32(g(f"{a}.w_proj.linear.lora.2.bias", K))
        )
        self.bonus = _f32(g(f"{a}.bonus", H, K // H))
        self.g_norm_weight = _f32(g(f"{a}.g_norm.weight", V))
        self.g_norm_bias = _f32(g(f"{a}.g_norm.bias", V))
        self.o_proj = lin(f"{a}.o_proj.weight", C, V)
        f = "ffn"
        self.ffn_key_mu = _f32(g(f"{f}.key.mu", C))
        self.ffn_key = lin(f"{f}.key.linear.weight", F, C)
        self.ffn_value = lin(f"{f}.value.weight", C, F)
        self.ffn_receptance_mu = _f32(g(f"{f}.receptance.mu", C))
        self.ffn_receptance = lin(f"{f}.receptance.linear.weight", C, C)

    def state_shapes(self) -> dict:
        """Per-item shapes of this block's RecurrentState tensors."""
        H = self.H
        return {"shift_att": (self.C,), "shift_ffn": (self.C,), "wkv": (H, self.K // H, self.V // H)}

    def time_mix(self, x: np.ndarray, delta: np.ndarray, keep, wkv_state):
        """x, delta (B, T, C) -> (B, T, V) gated group-normed WKV output, and the new WKV state
        (B, H, Dk, Dv) when wkv_state (the previous one) is given."""
        B, T, C = x.shape
        H, R = self.H, self.R
        dk, dv = self.K // H, self.V // H
        lo = np.tanh(self.x_down(x + delta * self.x_mu)).reshape(B * T, 5, R).transpose(1, 0, 2)
        m = np.matmul(lo, self.x_up).reshape(5, B, T, C)  # (5, B, T, C)
        m += self.x_bias[:, None, None, :]
        m *= delta
        m += x  # m[n] = x + delta * (ddlerp_n + x_bias_n)
        r = self.r_proj(m[_R])
        k = self.k_proj(m[_K])
        v = self.v_proj(m[_V])
        gate = self.g_proj(m[_G])
        # decay logits above 60 give decays exp(-e^60) = 0 exactly in float32; clamped so that
        # exp() stays finite (rwkv6_wkv refuses Inf) where a checkpoint's logits pass ~88
        log_w = -np.exp(np.minimum(self.w_up(np.tanh(self.w_down(m[_W]))), np.float32(60.0)))
        if keep is not None:
            v *= keep[..., None]  # fla: padding contributes no value to the state

        def heads(a, d):
            return np.ascontiguousarray(a.reshape(B, T, H, d).transpose(0, 2, 1, 3))

        out = rwkv6_wkv(
            heads(r, dk),
            heads(k, dk),
            heads(v, dv),
            heads(log_w, dk),
            self.bonus,
            initial_state=wkv_state,
            return_state=wkv_state is not None,
        )
        o, s = out if wkv_state is not None else (out, None)
        o = o.transpose(0, 2, 1, 3)  # (B, T, H, dv)
        mean = o.mean(-1, keepdims=True)
        o = o - mean
        var = np.mean(o * o, -1, keepdims=True)
        o *= 1.0 / np.sqrt(var + np.float32(self.group_eps))
        o = o.reshape(B, T, self.V) * self.g_norm_weight + self.g_norm_bias
        o *= silu(gate)
        return _f32(o), s

    def __call__(self, h: np.ndarray, *, keep=None, state=None, layer_idx: int = 0) -> np.ndarray:
        """h (B, T, C); keep (B, T) bool marks real tokens (fla's handling: padding's normed
        input and value are zeroed); state: a RecurrentState continued and updated (layer
        layer_idx)."""
        residual = self.pre_norm(h) if self.pre_norm is not None else h
        get = (lambda n: state.get(layer_idx, n)) if state is not None else (lambda n: None)  # noqa: E731

        x = self.attn_norm(residual)
        if keep is not None:
            x *= keep[..., None]
        prev = get("shift_att")
        delta = _shift_delta(x, prev)
        if prev is not None:
            prev[...] = x[:, -1]
        o, s = self.time_mix(x, delta, keep, get("wkv"))
        if s is not None:
            state.set(layer_idx, "wkv", s)
        h = self.o_proj(o, residual)  # residual + o_proj(o), the residual fused in the GEMM

        x = self.ffn_norm(h)
        if keep is not None:
            x *= keep[..., None]
        prev = get("shift_ffn")
        delta = _shift_delta(x, prev)
        if prev is not None:
            prev[...] = x[:, -1]
        k = self.ffn_key(_f32(x + delta * self.ffn_key_mu))
        squared_relu(k, out=k)
        v = self.ffn_value(k)
        r = self.ffn_receptance(_f32(x + delta * self.ffn_receptance_mu))
        return h + sigmoid_gate(r, v, out=v)


@register("causal-lm")
class Rwkv6ForCausalLM(RecurrentStateCache, PreTrainedModel, GenerationMixin):
    """flash-linear-attention's ``RWKV6ForCausalLM`` (RWKV-6, "Finch"). generate() decodes with
    a tfcore.RecurrentState: constant memory and time per generated token."""

    float32_only = "state is float32 only (decays near 1 over long contexts need float32's mantissa)"

    model_types = ("rwkv6",)
    base_prefixes = ("",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, L, V = (cfg.require(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
        H = int(cfg.get("num_heads", 4))
        if cfg.get("attn") is not None:
            raise CheckpointError(
                "config.json: attn (fla's hybrid softmax-attention layers inside RWKV-6) is not supported"
            )
        act = cfg.get("hidden_act", "sqrelu")
        if act != "sqrelu":
            raise CheckpointError(f"config.json: hidden_act {act!r} is not supported (RWKV-6 uses 'sqrelu')")
        K = int(C * float(cfg.get("expand_k", 0.5)))
        Vd = int(C * float(cfg.get("expand_v", 1.0)))
        if H <= 0 or K % H or Vd % H or K == 0 or Vd == 0:
            raise CheckpointError(
                f"config.json: key width {K} and value width {Vd} (hidden_size * expand_k / expand_v) "
                f"must be positive multiples of num_heads {H}"
            )
        F = cfg.get("intermediate_size")
        if F is None:
            ratio = cfg.get("hidden_ratio")
            F = int(C * (3.5 if ratio is None else float(ratio)))
            F = 32 * ((F + 31) // 32)  # fla's RWKV6FeedForward rounding
        R = int(cfg.get("proj_low_rank_dim", 32))
        Rg = int(cfg.get("gate_low_rank_dim", 64))
        eps = float(cfg.get("norm_eps", 1e-5))
        # tfcore's key (tfcore convert writes 64e-5, the rwkv package's ln_x eps); fla uses norm_eps
        group_eps = float(cfg.get("group_norm_eps", eps))
        norm_first = bool(cfg.get("norm_first", True))
        norm_bias = bool(cfg.get("norm_bias", True))
        self.vocab_size, self.hidden_size, self.num_layers = V, C, L
        self.num_heads = H
        self.embeddings = _C.Embedding(w.get("model.embeddings.weight", (V, C)))
        dims = {"C": C, "H": H, "K": K, "V": Vd, "F": int(F), "R": R, "Rg": Rg}
        self.blocks = []
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(f"model.layers.{i}.{key}", shape or None, matrix=len(shape) == 2)

            self.blocks.append(
                Rwkv6Block(g, dims, eps, group_eps, norm_bias, w.dtype, first=norm_first and i == 0)
            )
            w.release()
        self.norm = _C.LayerNorm(
            w.get("model.norm.weight", (C,)),
            w.get("model.norm.bias", (C,)) if norm_bias else np.zeros(C, np.float32),
            eps=eps,
        )
        head = w.get("lm_head.weight", (V, C), optional=True, matrix=True)
        if head is None or cfg.get("tie_word_embeddings", False):
            head = self.embeddings.weight
        self.head = _C.Linear(head, dtype=w.dtype)
        self.generation_defaults = {k: cfg.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}

    def _state_layout(self):
        return self.num_layers, self.blocks[0].state_shapes()

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
        state=None,
    ) -> ModelOutput:
        """HF arguments; the state (also accepted as state=) is a tfcore.RecurrentState,
        created when use_cache=True and none is given, continued and updated in place.
        attention_mask (B, past + T) or (B, T) marks left padding as fla does (padding's normed
        inputs and values are zeroed, so a left-padded row equals its unpadded run).
        position_ids are accepted and unused (RWKV has no positions)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        if state is not None and past_key_values is not None and state is not past_key_values:
            raise _C.TfcoreValueError("pass the recurrent state as state= or past_key_values=, not both")
        state = past_key_values if state is None else state
        if state is None and use_cache:
            state = self.new_cache(B)
        if state is not None and not isinstance(state, _C.RecurrentState):
            raise _C.TfcoreTypeError(
                f"past_key_values must be a tfcore.RecurrentState for {type(self).__name__}, got {type(state).__name__}"
            )
        if state is not None:
            if state.batch_size != B:
                raise _C.TfcoreValueError(
                    f"past_key_values has batch_size {state.batch_size}, input_ids has {B}"
                )
            if (
                state.dtype != "float32"
                or state.num_layers != self.num_layers
                or dict(state.shapes(0)) != {n: tuple(s) for n, s in self.blocks[0].state_shapes().items()}
            ):
                raise _C.TfcoreValueError(
                    f"past_key_values was not made by this model's new_cache() (expected float32 "
                    f"{self.num_layers} layers of {self.blocks[0].state_shapes()})"
                )
        past = state.get_seq_length() if state is not None else 0
        keep = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            if mask.ndim != 2 or mask.shape[0] != B or mask.shape[1] not in (T, past + T):
                raise _C.TfcoreValueError(
                    f"attention_mask has shape {mask.shape}, expected ({B}, {T}) or ({B}, {past + T})"
                )
            keep = np.ascontiguousarray(mask[:, -T:] != 0)
            if keep.all():
                keep = None
        h = self.embeddings(ids)
        hidden = [h] if output_hidden_states else None
        for i, block in enumerate(self.blocks):
            h = block(h, keep=keep, state=state, layer_idx=i)
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
            logits=self.head(h),
            past_key_values=state,
            state=state,
            hidden_states=tuple(hidden) if hidden is not None else None,
        )
