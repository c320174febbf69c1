"""Checking a tfcore model against Hugging Face transformers on the same checkpoint.

    from tfcore.testing import assert_close_to_reference
    stats = assert_close_to_reference("path/to/checkpoint")   # raises AssertionError if not

Needs torch and transformers (pip install 'tfcore[test]'); tfcore itself never does.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Dict, Optional

import numpy as np

from . import _C


def _load_for_checkpoint(directory):
    """The tfcore class the checkpoint was saved as (config.json ``architectures``, HF's
    class name) when tfcore has it, else the checkpoint's base model (tfcore.AutoModel)."""
    import tfcore
    from tfcore import models
    from tfcore.config import Config
    from tfcore.hub import resolve

    directory = resolve(directory)
    arch = Config.from_dir(directory).get("architectures") or []
    cls = getattr(models, arch[0], None) if arch and isinstance(arch[0], str) else None
    if isinstance(cls, type) and issubclass(cls, models.PreTrainedModel):
        return cls.from_pretrained(directory)
    return tfcore.AutoModel.from_pretrained(directory)


def _reference_class(model, transformers):
    """The transformers class of the same name as the tfcore model's (tfcore names its classes
    after HF's), else the Auto class of the model's task."""
    from tfcore.models import registry

    cls = getattr(transformers, type(model).__name__, None)
    if cls is not None:
        return cls
    tasks = [t for (mt, t), c in registry._REGISTRY.items() if c is type(model)]
    auto = {
        "causal-lm": "AutoModelForCausalLM",
        "seq2seq-lm": "AutoModelForSeq2SeqLM",
        "masked-lm": "AutoModelForMaskedLM",
        "sequence-classification": "AutoModelForSequenceClassification",
        "image-classification": "AutoModelForImageClassification",
    }
    return getattr(transformers, auto.get(tasks[0] if tasks else "base", "AutoModel"))


def _dtype_kwarg(transformers, torch) -> Dict[str, Any]:
    """float32 under the keyword this transformers version reads: ``dtype=`` (4.56 and
    later; ``torch_dtype=`` is deprecated there) or ``torch_dtype=`` before."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": torch.float32} if (major, minor) >= (4, 56) else {"torch_dtype": torch.float32}


def assert_close_to_reference(
    model,
    inputs: Optional[Dict[str, np.ndarray]] = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    reference=None,
) -> Dict[str, float]:
    """Run a tfcore model (or a checkpoint directory: loaded as the class its config.json
    names, e.g. GPT2LMHeadModel, else tfcore.AutoModel) and the transformers class of the
    same name on the same inputs (random token ids, plus decoder ids for encoder-decoders, or
    pixels for vision models, when not given), and assert that the main outputs (logits, or
    last_hidden_state) agree at every real (unpadded) position:

        max |ours - ref| <= atol + rtol * scale,   scale = max |ref|

    An error relative to the reference's scale reads right where an elementwise relative
    error does not (near-zero logits make that huge for a tiny absolute error).

    reference: the checkpoint directory (or a transformers model) to compare with; default
    the directory the tfcore model was loaded from.

    Returns {"max_abs_error", "reference_scale", "relative_error", "elements", "output"}."""
    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError(
            "assert_close_to_reference needs torch and transformers: pip install 'tfcore[test]'"
        ) from None
    if isinstance(model, (str, os.PathLike)):
        model = _load_for_checkpoint(model)
    path = getattr(model, "name_or_path", None)
    if reference is None and not path:
        raise _C.TfcoreValueError(
            "the model must come from from_pretrained(directory) (its path is the reference), or pass reference="
        )
    if reference is None or isinstance(reference, (str, os.PathLike)):
        ref_cls = _reference_class(model, transformers)
        ref = ref_cls.from_pretrained(
            os.fspath(reference if reference is not None else path),
            attn_implementation="eager",
            **_dtype_kwarg(transformers, torch),
        ).eval()
    else:
        ref = reference.eval()
    cfg = model.config
    if inputs is None:
        rng = np.random.default_rng(seed)
        if cfg.get("image_size") is not None:
            size = int(cfg.get("image_size"))
            channels = int(cfg.get("num_channels", 3))
            inputs = {"pixel_values": rng.standard_normal((2, channels, size, size)).astype(np.float32)}
        else:
            vocab = int(cfg.get("vocab_size"))
            inputs = {
                "input_ids": rng.integers(0, vocab, size=(2, 12)),
                "attention_mask": np.ones((2, 12), np.int64),
            }
            if "decoder_input_ids" in inspect.signature(model.forward).parameters:
                inputs["decoder_input_ids"] = rng.integers(0, vocab, size=(2, 5))
    ours = model(**inputs)
    with torch.inference_mode():
        theirs = ref(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()})
    key = "logits" if "logits" in ours else "last_hidden_state"
    if key not in ours or key not in theirs:
        raise AssertionError(
            f"cannot compare: tfcore's {type(model).__name__} returns {list(ours)}, the reference "
            f"{type(ref).__name__} returns {list(theirs.keys())}"
        )
    got, want = np.asarray(ours[key], np.float64), theirs[key].double().numpy()
    if got.shape != want.shape:
        raise AssertionError(f"{key}: tfcore shape {got.shape} vs reference {want.shape}")
    if "attention_mask" in inputs and "decoder_input_ids" not in inputs and got.ndim == 3:
        # padded positions: tfcore's padding-free encoders leave zeros there (HF computes
        # values from pad embeddings that nothing should read); compare the real tokens
        real = np.asarray(inputs["attention_mask"]).astype(bool)
        got, want = got[real], want[real]
    err = np.abs(got - want)
    scale = float(np.abs(want).max()) if want.size else 0.0
    stats = {
        "max_abs_error": float(err.max()),
        "reference_scale": scale,
        "relative_error": float(err.max()) / scale if scale > 0 else float(err.max()),
        "elements": int(err.size),
        "output": key,
    }
    if not np.isfinite(got).all():
        raise AssertionError(f"{key}: tfcore's output holds {int((~np.isfinite(got)).sum())} NaN/inf values")
    if stats["max_abs_error"] > atol + rtol * scale:
        where = tuple(int(i) for i in np.unravel_index(int(err.argmax()), err.shape))
        raise AssertionError(
            f"{type(model).__name__} {key} differs from transformers' {type(ref).__name__}: max abs "
            f"error {stats['max_abs_error']:.3g} at {where} ({got[where]:.6g} vs {want[where]:.6g}), "
            f"{stats['relative_error']:.3g} of the reference's scale {scale:.3g}; "
            f"{int((err > atol + rtol * scale).sum())} of {err.size} elements beyond the tolerance "
            f"atol + rtol * scale = {atol} + {rtol} * {scale:.3g}"
        )
    return stats
