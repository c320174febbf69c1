"""RWKV-4 (Peng et al. 2023) as Hugging Face's ``RwkvForCausalLM`` (``model_type: "rwkv"``, HF's
config keys and checkpoint names: ``rwkv.embeddings``, ``rwkv.blocks.{i}``, ``rwkv.ln_out``,
``head``).

Per block (pre-norm; block 0 first applies ``pre_ln``):
    h += output(sigmoid(receptance(r)) * WKV(key(k), value(v)))       time mix, on ln1(h)
    h += sigmoid(receptance(r')) * value(relu(key(k'))^2)            channel mix, on ln2(h)
where k, v, r (k', r') mix each token with the previous one (token shift,
x * time_mix + x_prev * (1 - time_mix)). WKV is the decayed softmax-average of the values
(tfcore.functional.rwkv4_wkv). HF's eval mode divides attention.output and feed_forward.value
of block i by 2^(i // rescale_every) and halves the hidden state after every rescale_every
blocks (keeps fp16 in range); tfcore does the same so logits agree to float32 rounding.

Decoding carries a tfcore.RecurrentState per layer: "shift_att" and "shift_ffn" (hidden,) the
previous token's normed input, and "wkv_num", "wkv_den", "wkv_max" (attention_hidden,) the WKV
sums; the kernels read and update its float32 views in place. Memory is constant in the
sequence length.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ..config import Config
from ..functional import rwkv4_wkv, rwkv_token_shift, sigmoid_gate, squared_relu
from ..generation import GenerationMixin
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids
from .decoder import RecurrentStateCache
from .registry import register

__all__ = ["RwkvForCausalLM"]

# HF's state initial max (use_cache) is -1e30; tfcore's kernels treat den == 0 as empty, so a
# zeroed RecurrentState needs nothing set. A padding token's key is set to this, so its WKV
# weight is exp(-1e38 - k) = 0 next to any real token.
_PAD_KEY = -1e38

_STATE_NAMES = ("shift_att", "shift_ffn", "wkv_num", "wkv_den", "wkv_max")


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class RwkvBlock:
    """One HF ``RwkvBlock``: time mix (RwkvSelfAttention) and channel mix (RwkvFeedForward)
    with their LayerNorms; calls take (B, T, hidden) float32."""

    def __init__(self, g, C: int, A: int, F: int, eps: float, scale: float, dtype: str, first: bool):
        """g(key, *shape) reads ``rwkv.blocks.{i}.<key>``; scale = 2^(i // rescale_every) divides
        attention.output and feed_forward.value as HF's eval mode does."""

        def norm(name):
            return _C.LayerNorm(g(f"{name}.weight", C), g(f"{name}.bias", C), eps=eps)

        def lin(key, n_out, n_in, divide=1.0):
            w = g(key, n_out, n_in)
            if divide != 1.0:
                w = np.asarray(w, np.float32) / np.float32(divide)  # a power of 2: exact
            return _C.Linear(w, dtype=dtype)

        self.pre_ln = norm("pre_ln") if first else None
        self.ln1, self.ln2 = norm("ln1"), norm("ln2")
        self.hidden_size, self.attention_hidden_size = C, A
        att = "attention"
        self.att_mix = _f32(
            np.stack([g(f"{att}.time_mix_{n}", 1, 1, C).reshape(C) for n in ("key", "value", "receptance")])
        )
        self.time_decay = _f32(g(f"{att}.time_decay", A))
        self.time_first = _f32(g(f"{att}.time_first", A))
        self.att_key = lin(f"{att}.key.weight", A, C)
        self.att_value = lin(f"{att}.value.weight", A, C)
        self.att_receptance = lin(f"{att}.receptance.weight", A, C)
        self.att_output = lin(f"{att}.output.weight", C, A, scale)
        ffn = "feed_forward"
        self.ffn_mix = _f32(
            np.stack([g(f"{ffn}.time_mix_{n}", 1, 1, C).reshape(C) for n in ("key", "receptance")])
        )
        self.ffn_key = lin(f"{ffn}.key.weight", F, C)
        self.ffn_receptance = lin(f"{ffn}.receptance.weight", C, C)
        self.ffn_value = lin(f"{ffn}.value.weight", C, F, scale)

    def state_shapes(self) -> dict:
        """Per-item shapes of this block's RecurrentState tensors."""
        C, A = self.hidden_size, self.attention_hidden_size
        return {"shift_att": (C,), "shift_ffn": (C,), "wkv_num": (A,), "wkv_den": (A,), "wkv_max": (A,)}

    def __call__(self, h: np.ndarray, *, keep=None, state=None, layer_idx: int = 0) -> np.ndarray:
        """h (B, T, C); keep (B, T) bool marks real tokens (padding neither shifts into the next
        token nor enters WKV); state: a RecurrentState continued and updated (layer layer_idx)."""
        if self.pre_ln is not None:
            h = self.pre_ln(h)
        s = (lambda n: state.get(layer_idx, n)) if state is not None else (lambda n: None)  # noqa: E731

        x = self.ln1(h)
        if keep is not None:
            x *= keep[..., None]
        k, v, r = rwkv_token_shift(x, self.att_mix, state=s("shift_att"))
        k, v, r = self.att_key(k), self.att_value(v), self.att_receptance(r)
        if keep is not None:
            k[~keep] = _PAD_KEY
        wkv_state = (s("wkv_num"), s("wkv_den"), s("wkv_max")) if state is not None else None
        y = rwkv4_wkv(k, v, self.time_decay, self.time_first, receptance=r, state=wkv_state)
        h = self.att_output(y, h)  # h + output(sigmoid(r) * wkv), the residual fused in the GEMM

        x = self.ln2(h)
        if keep is not None:
            x *= keep[..., None]
        k, r = rwkv_token_shift(x, self.ffn_mix, state=s("shift_ffn"))
        k = self.ffn_key(k)
        squared_relu(k, out=k)
        v = self.ffn_value(k)
        return h + sigmoid_gate(self.ffn_receptance(r), v, out=v)


@register("causal-lm")
class RwkvForCausalLM(RecurrentStateCache, PreTrainedModel, GenerationMixin):
    """Hugging Face's ``RwkvForCausalLM`` (RWKV-4). generate() decodes with a
    tfcore.RecurrentState: constant memory and time per generated token."""

    float32_only = "WKV state is float32 only (its running maximum and sums lose their meaning in bfloat16)"

    model_types = ("rwkv",)
    base_prefixes = ("",)

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        cfg, w = config, weights
        C, L, V = (cfg.require(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
        A = cfg.get("attention_hidden_size") or C
        F = cfg.get("intermediate_size") or 4 * C
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        every = int(cfg.get("rescale_every", 6) or 0)
        if every < 0:
            raise CheckpointError(f"config.json: rescale_every must be >= 0, got {every}")
        self.vocab_size, self.hidden_size, self.num_layers = V, C, L
        self.rescale_every = every
        self.embeddings = _C.Embedding(w.get("rwkv.embeddings.weight", (V, C)))
        self.blocks = []
        for i in w.layer_range(L):

            def g(key, *shape):
                return w.get(f"rwkv.blocks.{i}.{key}", shape or None, matrix=len(shape) == 2)

            scale = float(2 ** (i // every)) if every > 0 else 1.0
            self.blocks.append(RwkvBlock(g, C, A, F, eps, scale, w.dtype, first=i == 0))
            w.release()
        self.ln_out = _C.LayerNorm(
            w.get("rwkv.ln_out.weight", (C,)), w.get("rwkv.ln_out.bias", (C,)), eps=eps
        )
        head = w.get("head.weight", (V, C), optional=True, matrix=True)
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
        """HF arguments; the state (HF's ``state``, also accepted as past_key_values) is a
        tfcore.RecurrentState, created when use_cache=True and none is given, continued and
        updated in place. attention_mask (B, past + T) or (B, T) marks padding (HF's RWKV
        ignores the mask; here left padding is skipped, so a padded row equals its unpadded
        run). position_ids are accepted and unused (RWKV has no positions)."""
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
            if self.rescale_every > 0 and (i + 1) % self.rescale_every == 0:
                h = h / np.float32(2.0)
            if hidden is not None:
                hidden.append(h)
        if state is not None:
            state.advance(T)
        h = self.ln_out(h)
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
