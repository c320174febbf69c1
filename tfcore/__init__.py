"""tfcore: fast CPU inference for transformer models.

A C core over oneDNN with NumPy arrays in and out (no copies for C-contiguous float32),
and Hugging Face-style model classes on top.
"""

from __future__ import annotations

from ._loader import preload_onednn as _preload_onednn

_ONEDNN_PATH = _preload_onednn()

try:
    from . import _C
except ImportError as _e:  # a source checkout shadowing the installed package, most often
    import os as _os

    if not any(f.startswith("_C.") and f.endswith(".so") for f in _os.listdir(_os.path.dirname(__file__))):
        raise ImportError(
            f"tfcore's C extension is not built in {_os.path.dirname(__file__)}: this looks like the "
            "source checkout shadowing an installed tfcore. Run from another directory (or use the "
            "'tfcore' command), or build in place with: pip install -e ."
        ) from _e
    raise
from . import (
    _runtime,
    audio,
    eval,  # tfcore.eval: batch helpers (shadows the builtin only here)
    functional,
    image,
    models,
)
from ._C import (
    Conv1d,
    Conv2d,
    Embedding,
    FeedForward,
    KVCache,
    LayerNorm,
    Linear,
    MixtureOfExperts,
    MultiHeadAttention,
    OneDNNError,
    RecurrentState,
    RMSNorm,
    SwinLayer,
    TfcoreError,
    TfcoreTypeError,
    TfcoreValueError,
    TransformerBlock,
    WindowAttention,
    get_num_threads,
    set_num_threads,
)
from ._runtime import get_weight_cache, set_weight_cache, show_config, supported_dtypes, threads
from .linear_attention_layer import LinearAttention
from .loading import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForCTC,
    AutoModelForImageClassification,
    AutoModelForQuestionAnswering,
    AutoModelForSemanticSegmentation,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from .safetensors import CheckpointError

__version__ = "0.1.0"

__all__ = [
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForSeq2SeqLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
    "AutoModelForCTC",
    "AutoModelForImageClassification",
    "AutoModelForSemanticSegmentation",
    "CheckpointError",
    "models",
    "Conv1d",
    "Conv2d",
    "Embedding",
    "FeedForward",
    "KVCache",
    "RecurrentState",
    "LinearAttention",
    "LayerNorm",
    "Linear",
    "MixtureOfExperts",
    "MultiHeadAttention",
    "RMSNorm",
    "TransformerBlock",
    "WindowAttention",
    "SwinLayer",
    "functional",
    "OneDNNError",
    "TfcoreError",
    "TfcoreTypeError",
    "TfcoreValueError",
    "get_num_threads",
    "get_weight_cache",
    "set_num_threads",
    "set_weight_cache",
    "show_config",
    "supported_dtypes",
    "threads",
]

_runtime.weight_cache_from_env()
