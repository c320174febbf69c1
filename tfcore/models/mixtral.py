"""Mixtral: MixtralModel / MixtralForCausalLM, a Mistral-style decoder (RMSNorm, GQA, RoPE,
optional sliding window) whose MLP is a sparse mixture of experts (``block_sparse_moe``):
a router picks num_experts_per_tok of num_local_experts SwiGLU experts per token and
weights them by their renormalised softmax probabilities (tfcore.MixtureOfExperts).

Checkpoints in either layout load: the per-expert one save_pretrained writes and the Hub
ships (``block_sparse_moe.gate.weight``, ``block_sparse_moe.experts.{j}.w1/w2/w3.weight``:
w1 gate, w3 up, w2 down) and transformers 5's fused in-memory one (``mlp.gate.weight``,
``mlp.experts.gate_up_proj`` (E, 2F, C), ``mlp.experts.down_proj`` (E, C, F)).
"""

from __future__ import annotations

from .. import _C
from ..config import Config
from ..safetensors import CheckpointError
from .base import Weights
from .llama import LlamaForCausalLM, LlamaModel
from .registry import register

__all__ = ["MixtralForCausalLM", "MixtralModel"]


@register("base")
class MixtralModel(LlamaModel):
    """``transformers.MixtralModel``: the final hidden states (no LM head, no generate())."""

    model_types = ("mixtral",)
    sliding_window_key = "sliding_window"

    def feed_forward(self, cfg: Config, w: Weights, i: int) -> _C.MixtureOfExperts:
        """Layer i's sparse MoE block: router and experts from either checkpoint layout."""
        C, F = cfg.require("hidden_size"), cfg.require("intermediate_size")
        E, k = cfg.require("num_local_experts"), cfg.require("num_experts_per_tok")
        if not (isinstance(E, int) and isinstance(k, int) and 1 <= k <= E):
            raise CheckpointError(
                f"config.json: num_experts_per_tok={k!r} must be an integer in 1..num_local_experts={E!r}"
            )
        act = cfg.get("hidden_act", "silu")
        fused = f"layers.{i}.mlp.experts.gate_up_proj"
        experts = []
        if w.has(fused):
            router = w.get(f"layers.{i}.mlp.gate.weight", (E, C))
            gate_up = w.get(fused, (E, 2 * F, C), matrix=True)
            down = w.get(f"layers.{i}.mlp.experts.down_proj", (E, C, F), matrix=True)
            for j in range(E):
                experts.append(
                    _C.FeedForward(
                        gate_up[j, F:], down[j], gate_weight=gate_up[j, :F], activation=act, dtype=w.dtype
                    )
                )
        else:
            p = f"layers.{i}.block_sparse_moe"
            router = w.get(f"{p}.gate.weight", (E, C))
            for j in range(E):

                def g(name, *shape):
                    return w.get(f"{p}.experts.{j}.{name}.weight", shape, matrix=True)

                experts.append(
                    _C.FeedForward(
                        g("w3", F, C), g("w2", C, F), gate_weight=g("w1", F, C), activation=act, dtype=w.dtype
                    )
                )
        return _C.MixtureOfExperts(router, experts, top_k=k, normalize_top_k=True)


@register("causal-lm")
class MixtralForCausalLM(LlamaForCausalLM):
    """``transformers.MixtralForCausalLM``: a MixtralModel (``model.model``), the LM head,
    KV cache and generate(). Decoding one token reads the router and the chosen experts only."""

    model_types = ("mixtral",)
    base_model_class = MixtralModel
