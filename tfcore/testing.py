"""Checking a tfcore model against Hugging Face transformers on the same checkpoint.

    from tfcore.testing import assert_close_to_reference
    stats = assert_close_to_reference("path/to/checkpoint")   # raises AssertionError if not

Needs torch and transformers (pip install 'tfcore[test]'); tfcore itself never does.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from . import _C


def assert_close_to_reference(
    model,
    inputs: Optional[Dict[str, np.ndarray]] = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
) -> Dict[str, float]:
    """Run a tfcore model (or a checkpoint directory, loaded with tfcore.AutoModel) and the
    transformers model of the same directory on the same inputs (random token ids, or
    pixels for vision models, when not given) and assert that the main outputs
    (last_hidden_state or logits) agree: |ours - ref| <= atol + rtol * |ref| at every real
    (unpadded) position.
    Returns {"max_abs_error", "max_rel_error", "elements"}."""
    import os

    import tfcore

    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError(
            "assert_close_to_reference needs torch and transformers: pip install 'tfcore[test]'"
        ) from None
    if isinstance(model, (str, os.PathLike)):
        model = tfcore.AutoModel.from_pretrained(model)
    path = getattr(model, "name_or_path", None)
    if not path:
        raise _C.TfcoreValueError(
            "the model must come from from_pretrained(directory) (its path is the reference)"
        )
    causal = hasattr(model, "generate")
    ref_cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    ref = ref_cls.from_pretrained(path, torch_dtype=torch.float32).eval()
    cfg = model.config
    if inputs is None:
        rng = np.random.default_rng(seed)
        if cfg.get("image_size") is not None:
            size = int(cfg.get("image_size"))
            inputs = {
                "pixel_values": rng.standard_normal((2, int(cfg.get("num_channels", 3)), size, size)).astype(
                    np.float32
                )
            }
        else:
            vocab = int(cfg.get("vocab_size"))
            inputs = {
                "input_ids": rng.integers(0, vocab, size=(2, 12)),
                "attention_mask": np.ones((2, 12), np.int64),
            }
    ours = model(**inputs)
    with torch.inference_mode():
        theirs = ref(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()})
    key = "logits" if causal else "last_hidden_state"
    got, want = np.asarray(ours[key], np.float64), theirs[key].double().numpy()
    if got.shape != want.shape:
        raise AssertionError(f"{key}: tfcore shape {got.shape} vs reference {want.shape}")
    if "attention_mask" in inputs and got.ndim == 3:
        # padded positions: tfcore's padding-free encoders leave zeros there (HF computes
        # values from pad embeddings that nothing should read); compare the real tokens
        real = np.asarray(inputs["attention_mask"]).astype(bool)
        got, want = got[real], want[real]
    err = np.abs(got - want)
    stats = {
        "max_abs_error": float(err.max()),
        "max_rel_error": float((err / np.maximum(np.abs(want), 1e-12)).max()),
        "elements": int(err.size),
    }
    bad = err > atol + rtol * np.abs(want)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])  # in the real positions when masked
        raise AssertionError(
            f"{key} differs from transformers at {bad.sum()} of {err.size} elements "
            f"(first at {where}: {got[where]:.6g} vs {want[where]:.6g}); max abs error "
            f"{stats['max_abs_error']:.3g}, tolerance atol={atol} rtol={rtol}"
        )
    return stats
