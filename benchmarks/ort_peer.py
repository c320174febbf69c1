"""ONNX Runtime as a peer: models exported from the same Hugging Face weights, optimized
with onnxruntime.transformers' optimizer, and dynamically quantized to int8 with
onnxruntime.quantization (its standard CPU recipe).

Export uses torch.onnx's dynamo exporter: with transformers 5 the TorchScript exporter
produced wrong graphs here (BERT outputs off by 2.8, cosine 0.84). The optimizer fuses the
LayerNorm/residual and bias-GELU patterns of these graphs but not attention (it matches the
older exporter's attention subgraphs), which is the best ORT offers for these exports.

GPT-2 decoding: ORT has no generate loop of its own; the step graph below is GPT-2's math
written out with explicit past keys/values (read from the HF model's weights) and exported
twice, for the prompt and for single-token steps. It is validated token for token against
tfcore's greedy output (which equals HF's) before timing.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch


def _session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _export(module, args, path, input_names, output_names, dynamic_shapes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            path,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _optimize_and_quantize(path: str, model_type: str, num_heads: int, hidden_size: int):
    """(optimized fp32 path, dynamic int8 path) next to path."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    opt_path, int8_path = path.replace(".onnx", "-opt.onnx"), path.replace(".onnx", "-int8.onnx")
    opt = optimizer.optimize_model(path, model_type=model_type, num_heads=num_heads, hidden_size=hidden_size)
    opt.save_model_to_file(opt_path)
    quantize_dynamic(
        opt_path,
        int8_path,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return opt_path, int8_path


class _Outputs(torch.nn.Module):
    """model(**{name: x}).last_hidden_state with one positional input, for export."""

    def __init__(self, model, name):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x):
        return self.model(**{self.name: x}).last_hidden_state


def encoder_sessions(hf_model, name: str, x: np.ndarray, tmp: str, model_type: str, threads: int) -> dict:
    """{'ort-fp32': run, 'ort-int8': run} for an encoder taking one input (input_ids or
    pixel_values); run(x) -> last_hidden_state."""
    path = os.path.join(tmp, f"{model_type}.onnx")
    batch = torch.export.Dim("batch", max=1024)
    _export(
        _Outputs(hf_model, name), (torch.from_numpy(x),), path, [name], ["last_hidden_state"], ({0: batch},)
    )
    cfg = hf_model.config
    opt_path, int8_path = _optimize_and_quantize(path, model_type, cfg.num_attention_heads, cfg.hidden_size)
    sessions = {"ort-fp32": _session(opt_path, threads), "ort-int8": _session(int8_path, threads)}
    return {k: (lambda x, s=s: s.run(None, {name: x})[0]) for k, s in sessions.items()}


class Gpt2Step(torch.nn.Module):
    """GPT-2 forward over new tokens with explicit past keys/values.

    ids (1, T), past (layers, 2, H, P, D) -> logits of the last token (1, V), present
    (layers, 2, H, P + T, D). Batch 1 (the benchmark's case). The prompt graph has no
    past (P = 0) and a causal mask; the step graph has T = 1 and needs none."""

    def __init__(self, hf, with_past: bool):
        super().__init__()
        self.tr, self.with_past = hf.transformer, with_past
        cfg = hf.config
        self.H, self.D = cfg.n_head, cfg.n_embd // cfg.n_head
        self.eps = cfg.layer_norm_epsilon

    def forward(self, ids, past=None):
        T = ids.shape[1]
        P = past.shape[3] if self.with_past else 0
        pos = torch.arange(P, P + T)
        h = self.tr.wte.weight[ids[0]] + self.tr.wpe.weight[pos]  # (T, C)
        presents = []
        for i, blk in enumerate(self.tr.h):
            a = torch.nn.functional.layer_norm(h, h.shape[-1:], blk.ln_1.weight, blk.ln_1.bias, self.eps)
            qkv = a @ blk.attn.c_attn.weight + blk.attn.c_attn.bias  # (T, 3C)
            q, k, v = (t.reshape(T, self.H, self.D).transpose(0, 1) for t in qkv.split(self.H * self.D, -1))
            if self.with_past:
                k = torch.cat([past[i, 0], k], 1)  # (H, P + T, D)
                v = torch.cat([past[i, 1], v], 1)
            presents.append(torch.stack([k, v]))
            s = q @ k.transpose(1, 2) / self.D**0.5  # (H, T, P + T)
            if not self.with_past:
                s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            o = (s.softmax(-1) @ v).transpose(0, 1).reshape(T, self.H * self.D)
            h = h + o @ blk.attn.c_proj.weight + blk.attn.c_proj.bias
            m = torch.nn.functional.layer_norm(h, h.shape[-1:], blk.ln_2.weight, blk.ln_2.bias, self.eps)
            m = torch.nn.functional.gelu(m @ blk.mlp.c_fc.weight + blk.mlp.c_fc.bias, approximate="tanh")
            h = h + m @ blk.mlp.c_proj.weight + blk.mlp.c_proj.bias
        h = torch.nn.functional.layer_norm(
            h[-1:], h.shape[-1:], self.tr.ln_f.weight, self.tr.ln_f.bias, self.eps
        )
        return h @ self.tr.wte.weight.T, torch.stack(presents)


def gpt2_greedy_runners(hf, prompt_len: int, tmp: str, threads: int) -> dict:
    """{'ort-fp32': run, 'ort-int8': run}; run(ids (1, T0), new_tokens) -> (1, T0 + new) int64."""
    import onnx  # noqa: F401  (needed by the optimizer/quantizer)

    cfg = hf.config
    prompt_path, step_path = os.path.join(tmp, "gpt2-prompt.onnx"), os.path.join(tmp, "gpt2-step.onnx")
    ids = torch.zeros(1, prompt_len, dtype=torch.long)
    tlen = torch.export.Dim("tokens", min=2, max=cfg.n_positions)
    _export(
        Gpt2Step(hf, False).eval(), (ids,), prompt_path, ["input_ids"], ["logits", "present"], ({1: tlen},)
    )
    past = torch.zeros(cfg.n_layer, 2, cfg.n_head, prompt_len, cfg.n_embd // cfg.n_head)
    plen = torch.export.Dim("past", min=2, max=cfg.n_positions - 1)
    _export(
        Gpt2Step(hf, True).eval(),
        (ids[:, :1], past),
        step_path,
        ["input_ids", "past"],
        ["logits", "present"],
        (None, {3: plen}),
    )
    paths = {p: _optimize_and_quantize(p, "gpt2", cfg.n_head, cfg.n_embd) for p in (prompt_path, step_path)}
    runners = {}
    for name, idx in (("ort-fp32", 0), ("ort-int8", 1)):
        prompt, step = _session(paths[prompt_path][idx], threads), _session(paths[step_path][idx], threads)

        def run(ids, new_tokens, prompt=prompt, step=step):
            logits, present = prompt.run(None, {"input_ids": ids})
            out = [ids]
            for t in range(new_tokens):
                nxt = logits.argmax(-1).reshape(1, 1).astype(np.int64)
                out.append(nxt)
                if t + 1 < new_tokens:
                    logits, present = step.run(None, {"input_ids": nxt, "past": present})
            return np.concatenate(out, axis=1)

        runners[name] = run
    return runners
