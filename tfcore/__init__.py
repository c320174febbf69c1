"""tfcore: fast CPU inference for transformer models.

A C core over oneDNN with NumPy arrays in and out (no copies for C-contiguous float32),
and Hugging Face-style model classes on top.
"""
from __future__ import annotations

from ._loader import preload_onednn as _preload_onednn

_ONEDNN_PATH = _preload_onednn()

from . import _C  # noqa: E402
from ._C import (  # noqa: E402
    Embedding,
    FeedForward,
    KVCache,
    LayerNorm,
    Linear,
    MultiHeadAttention,
    RMSNorm,
    TransformerBlock,
    OneDNNError,
    TfcoreError,
    TfcoreTypeError,
    TfcoreValueError,
    get_num_threads,
    set_num_threads,
)
from ._config import show_config, threads  # noqa: E402
from . import functional  # noqa: E402
from . import models  # noqa: E402
from .loading import AutoModel, AutoModelForCausalLM  # noqa: E402
from .safetensors import CheckpointError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AutoModel",
    "AutoModelForCausalLM",
    "CheckpointError",
    "models",
    "Embedding",
    "FeedForward",
    "KVCache",
    "LayerNorm",
    "Linear",
    "MultiHeadAttention",
    "RMSNorm",
    "TransformerBlock",
    "functional",
    "OneDNNError",
    "TfcoreError",
    "TfcoreTypeError",
    "TfcoreValueError",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "threads",
]
