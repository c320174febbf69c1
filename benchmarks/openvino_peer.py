"""OpenVINO as a peer: the Hugging Face encoder converted with openvino.convert_model from
torch and compiled for the CPU in float32 (INFERENCE_PRECISION_HINT f32: on CPUs with
AVX512_BF16 OpenVINO would otherwise run bf16), latency mode, the same thread count.

OpenVINO's int8 needs calibration (NNCF), so it has no int8 row here; nor a decode row
(that needs optimum-intel's stateful export).
"""

from __future__ import annotations

import numpy as np
import torch


class _Outputs(torch.nn.Module):
    def __init__(self, model, name):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x):
        return self.model(**{self.name: x}).last_hidden_state


def encoder_runner(hf_model, name: str, x: np.ndarray, threads: int):
    """run(x) -> last_hidden_state for an encoder taking one input (input_ids or
    pixel_values), and the ISA OpenVINO's CPU plugin reports for its kernels."""
    import openvino as ov

    with torch.inference_mode():
        model = ov.convert_model(_Outputs(hf_model, name).eval(), example_input=torch.from_numpy(x))
    core = ov.Core()
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()

    def run(x):
        return request.infer({0: x})[0]

    run(x)
    kinds = set()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "primitiveType" in info:
            kind = info["primitiveType"]
            kinds.add(kind.astype(str) if hasattr(kind, "astype") else str(kind))
    return run, sorted(k for k in kinds if k not in ("undef", "unknown_f32"))
