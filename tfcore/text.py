"""Text in, token ids out: the checkpoint's ``tokenizer.json`` through the ``tokenizers``
package (an optional dependency: ``pip install tokenizers``), and sentence-embedding pooling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C
from .safetensors import CheckpointError


def load_tokenizer(directory: Union[str, os.PathLike], max_length: Optional[int] = None) -> Any:
    """A ``tokenizers.Tokenizer`` from ``directory/tokenizer.json`` that pads to the longest
    text of a batch and truncates to max_length (default: none)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ImportError(
            "tokenizing text needs the optional 'tokenizers' package: pip install tokenizers"
        ) from e
    path = Path(directory) / "tokenizer.json"
    if not path.exists():
        raise CheckpointError(f"{directory}: no tokenizer.json (pass token ids instead of text)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a plain Exception on malformed files
        raise CheckpointError(f"{path}: not a valid tokenizer file ({e})") from None
    pad_id = tok.token_to_id("[PAD]")
    if pad_id is None:
        pad_id = tok.token_to_id("<pad>")
    tok.enable_padding(pad_id=pad_id or 0, pad_token=tok.id_to_token(pad_id or 0) or "[PAD]")
    if max_length:
        tok.enable_truncation(max_length=max_length)
    return tok


def encode(tokenizer: Any, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both int64 (B, T), for a batch of texts."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise _C.TfcoreTypeError("texts must be a sequence of str")
    if len(texts) == 0:
        raise _C.TfcoreValueError("texts is empty")
    enc = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def mean_pooling(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of the real tokens' vectors: (B, T, C), (B, T) -> (B, C), as sentence-transformers."""
    m = np.asarray(attention_mask, dtype=np.float32)[..., None]
    summed = (last_hidden_state * m).sum(axis=1)
    return (summed / np.clip(m.sum(axis=1), 1e-9, None)).astype(np.float32)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (torch.nn.functional.normalize)."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)


_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)


def _read_json(path: Path, what: str) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable {what} ({e})") from None


def sentence_transformers_config(directory: Union[str, os.PathLike]) -> dict:
    """What a sentence-transformers directory says about turning token vectors into a
    sentence embedding, read from its ``modules.json``, the Pooling module's
    ``config.json`` (``1_Pooling/``), ``sentence_bert_config.json`` and
    ``config_sentence_transformers.json``; {} when the directory has no ``modules.json``.

    Keys: "pooling" ("mean", "cls", "max", "mean_sqrt_len", "weightedmean" or "lasttoken";
    None without a Pooling module), "normalize" (a Normalize module follows), "max_seq_length"
    (int or None), "do_lower_case", "prompts" (name -> prefix), "default_prompt_name"."""
    d = Path(directory)
    modules_path = d / "modules.json"
    if not modules_path.exists():
        return {}
    modules = _read_json(modules_path, "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise CheckpointError(f"{modules_path}: expected a list of modules, got {type(modules).__name__}")
    cfg: dict = {
        "pooling": None,
        "normalize": False,
        "max_seq_length": None,
        "do_lower_case": False,
        "prompts": {},
        "default_prompt_name": None,
    }
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Pooling":
            pool_path = d / str(m.get("path", "")) / "config.json"
            pool = _read_json(pool_path, "Pooling config") if pool_path.exists() else {}
            if not isinstance(pool, dict):
                raise CheckpointError(f"{pool_path}: expected a JSON object")
            modes = [name for key, name in _POOLING_KEYS if pool.get(key)]
            if len(modes) > 1:
                raise CheckpointError(f"{pool_path}: several pooling modes {modes}; tfcore pools one way")
            cfg["pooling"] = modes[0] if modes else "mean"
        elif kind == "Normalize":
            cfg["normalize"] = True
    sbert_path = d / "sentence_bert_config.json"
    if sbert_path.exists():
        sbert = _read_json(sbert_path, "sentence_bert_config.json")
        if not isinstance(sbert, dict):
            raise CheckpointError(f"{sbert_path}: expected a JSON object")
        msl = sbert.get("max_seq_length")
        if msl is not None and (not isinstance(msl, int) or isinstance(msl, bool) or msl < 1):
            raise CheckpointError(f"{sbert_path}: max_seq_length must be a positive int, got {msl!r}")
        cfg["max_seq_length"] = msl
        cfg["do_lower_case"] = bool(sbert.get("do_lower_case", False))
    st_path = d / "config_sentence_transformers.json"
    if st_path.exists():
        st = _read_json(st_path, "config_sentence_transformers.json")
        if isinstance(st, dict):
            prompts = st.get("prompts") or {}
            if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
                raise CheckpointError(f"{st_path}: prompts must map names to strings")
            cfg["prompts"] = dict(prompts)
            cfg["default_prompt_name"] = st.get("default_prompt_name")
    return cfg
