"""int8 as tfcore computes it, emulated on Hugging Face models in float32 (torch): weights
per output channel, and (dynamic) every projection's input per token, symmetric, scale =
max|x| / 127, rounded half to even."""

from __future__ import annotations

import torch


def fake_quant(x, dim=-1):
    """x quantized to int8 along dim and back to float."""
    s = x.abs().amax(dim=dim, keepdim=True) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    return torch.clamp(torch.round(x * (1 / s)), -127, 127) * s


def emulate_int8(model, activations: bool = True):
    """model with every nn.Linear / GPT-2 Conv1D weight fake-quantized per output channel
    and, with activations=True (tfcore's dtype='int8'), its input per token; activations=False
    is weight-only int8. The LM head is untied from the input embeddings, which stay float32."""
    from transformers.pytorch_utils import Conv1D

    if hasattr(model, "lm_head"):
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight.data = fake_quant(mod.weight.data, 1)
        elif isinstance(mod, Conv1D):
            mod.weight.data = fake_quant(mod.weight.data, 0)
        else:
            continue
        if activations:
            mod.register_forward_pre_hook(lambda m, args: (fake_quant(args[0]),) + tuple(args[1:]))
    return model
