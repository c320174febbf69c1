"""int8 as tfcore computes it, emulated on Hugging Face models in float32 (torch): weights
per output channel, and (dynamic) every projection's input per token, symmetric, scale =
max|x| / 127, rounded half to even. Weights on CPUs without VNNI are 7-bit (max|w| / 63):
see Linear.quant_max."""

from __future__ import annotations

import torch


def fake_quant(x, dim=-1, qmax=127):
    """x quantized to integers in [-qmax, qmax] along dim and back to float."""
    s = x.abs().amax(dim=dim, keepdim=True) / qmax
    s = torch.where(s > 0, s, torch.ones_like(s))
    return torch.clamp(torch.round(x * (1 / s)), -qmax, qmax) * s


def tfcore_weight_max() -> int:
    """The int8 weight range tfcore uses on this CPU (127 with VNNI, else 63)."""
    import numpy as np

    import tfcore

    return tfcore.Linear(np.ones((1, 4), np.float32), dtype="int8").quant_max


def emulate_int8(model, activations: bool = True, weight_max: int | None = None):
    """model with every nn.Linear / GPT-2 Conv1D weight fake-quantized per output channel
    (to [-weight_max, weight_max], by default what tfcore uses on this CPU) and, with
    activations=True (tfcore's dtype='int8'), its input per token; activations=False is
    weight-only int8. The LM head is untied from the input embeddings, which stay float32."""
    from transformers.pytorch_utils import Conv1D

    qmax = tfcore_weight_max() if weight_max is None else weight_max
    if hasattr(model, "lm_head"):
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight.data = fake_quant(mod.weight.data, 1, qmax)
        elif isinstance(mod, Conv1D):
            mod.weight.data = fake_quant(mod.weight.data, 0, qmax)
        else:
            continue
        if activations:
            mod.register_forward_pre_hook(lambda m, args: (fake_quant(args[0]),) + tuple(args[1:]))
    return model
