"""Text in, token ids out: the checkpoint's ``tokenizer.json`` through the ``tokenizers``
package (an optional dependency: ``pip install tokenizers``), sentence-embedding pooling,
and the settings a sentence-transformers directory stores (truncation length, pooling,
normalization, prompts)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C
from .safetensors import CheckpointError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# sentence-transformers' older 1_Pooling/config.json: one boolean per mode
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# modules.json entries tfcore runs itself (the transformer, pooling, normalization)
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
# a tokenizer_config.json model_max_length at or above this is transformers' "no limit" sentinel
_NO_LIMIT = 10**6


class TruncationWarning(UserWarning):
    """Texts were cut to the tokenizer's max_length (the message says how many, and the limit)."""


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON file ({e})") from None


def _positive_int(value: Any, where: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{where} must be a positive integer, got {value!r}")
    return value


def sentence_transformers_config(directory: Union[str, os.PathLike]) -> Dict[str, Any]:
    """What a sentence-transformers directory says about running it, read from its files.

    Returns a dict (a value is None when no file states it):

    - ``max_seq_length``: tokens kept per text: ``sentence_bert_config.json``'s, else (in a
      sentence-transformers directory) ``tokenizer_config.json``'s ``model_max_length``, where
      sentence-transformers >= 5 saves it
    - ``do_lower_case``: lower-case texts first (``sentence_bert_config.json``)
    - ``pooling_mode``: ``"mean"``, ``"cls"``, ``"max"``, ``"mean_sqrt_len_tokens"``,
      ``"weightedmean"``, ``"lasttoken"``, or a tuple of them (concatenated), from the
      ``Pooling`` module's ``config.json`` (new ``pooling_mode`` or legacy ``pooling_mode_*`` keys)
    - ``include_prompt``: whether prompt tokens are pooled (same file; default True)
    - ``normalize``: True when ``modules.json`` lists a ``Normalize`` module, False when it
      lists modules but no ``Normalize``
    - ``prompts``, ``default_prompt_name``, ``similarity_fn_name``:
      ``config_sentence_transformers.json``
    - ``modules``: the module type names of ``modules.json`` (e.g. ``["Transformer",
      "Pooling", "Normalize"]``); ``unsupported_modules``: those tfcore does not run
      (``Dense``, ...)
    - ``files``: the files read (empty: not a sentence-transformers directory)

    Malformed files raise ``CheckpointError`` naming the file."""
    root = Path(os.path.expanduser(os.fspath(directory)))
    if not root.is_dir():
        raise CheckpointError(f"{directory}: not a directory")
    cfg: Dict[str, Any] = {
        "max_seq_length": None,
        "do_lower_case": None,
        "pooling_mode": None,
        "include_prompt": True,
        "normalize": None,
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": None,
        "modules": [],
        "unsupported_modules": [],
        "files": [],
    }
    pooling_dir: Optional[Path] = None
    modules_path = root / "modules.json"
    if modules_path.is_file():
        modules = _read_json(modules_path)
        if not isinstance(modules, list) or not all(
            isinstance(m, dict) and isinstance(m.get("type"), str) for m in modules
        ):
            raise CheckpointError(f"{modules_path}: expected a list of {{'type': ..., 'path': ...}} entries")
        cfg["files"].append(str(modules_path))
        for m in modules:
            kind = m["type"].rsplit(".", 1)[-1]
            cfg["modules"].append(kind)
            if kind not in _SUPPORTED_MODULES:
                cfg["unsupported_modules"].append(kind)
            if kind == "Pooling":
                pooling_dir = root / str(m.get("path", ""))
        cfg["normalize"] = "Normalize" in cfg["modules"]
    elif (root / "1_Pooling" / "config.json").is_file():
        pooling_dir = root / "1_Pooling"

    sbert_path = root / "sentence_bert_config.json"
    if sbert_path.is_file():
        sbert = _read_json(sbert_path)
        if not isinstance(sbert, dict):
            raise CheckpointError(f"{sbert_path}: expected a JSON object")
        cfg["files"].append(str(sbert_path))
        cfg["max_seq_length"] = _positive_int(sbert.get("max_seq_length"), f"{sbert_path}: max_seq_length")
        if sbert.get("do_lower_case") is not None:
            cfg["do_lower_case"] = bool(sbert["do_lower_case"])

    if pooling_dir is not None and (pooling_dir / "config.json").is_file():
        path = pooling_dir / "config.json"
        pool = _read_json(path)
        if not isinstance(pool, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        cfg["files"].append(str(path))
        mode = pool.get("pooling_mode")
        if mode is None:
            found = [m for k, m in _LEGACY_POOLING_KEYS.items() if pool.get(k)]
            mode = tuple(found) if found else ("mean",)
        modes = (mode,) if isinstance(mode, str) else tuple(mode) if isinstance(mode, list | tuple) else None
        if not modes or any(m not in POOLING_MODES for m in modes):
            raise CheckpointError(f"{path}: pooling mode {mode!r} is not one of {POOLING_MODES}")
        cfg["pooling_mode"] = modes[0] if len(modes) == 1 else modes
        cfg["include_prompt"] = bool(pool.get("include_prompt", True))

    st_path = root / "config_sentence_transformers.json"
    if st_path.is_file():
        st = _read_json(st_path)
        if not isinstance(st, dict):
            raise CheckpointError(f"{st_path}: expected a JSON object")
        cfg["files"].append(str(st_path))
        prompts = st.get("prompts") or {}
        if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
        ):
            raise CheckpointError(f"{st_path}: prompts must map names to strings")
        cfg["prompts"] = dict(prompts)
        name = st.get("default_prompt_name")
        if name is not None and name not in prompts:
            raise CheckpointError(
                f"{st_path}: default_prompt_name {name!r} is not one of the prompts {sorted(prompts)}"
            )
        cfg["default_prompt_name"] = name
        cfg["similarity_fn_name"] = st.get("similarity_fn_name")
    if cfg["files"] and cfg["max_seq_length"] is None:
        cfg["max_seq_length"] = _model_max_length(root)
    return cfg


def _model_max_length(root: Path) -> Optional[int]:
    """tokenizer_config.json's model_max_length, unless absent or transformers' "no limit"."""
    path = root / "tokenizer_config.json"
    if path.is_file():
        tc = _read_json(path)
        n = tc.get("model_max_length") if isinstance(tc, dict) else None
        if isinstance(n, int) and not isinstance(n, bool) and 0 < n < _NO_LIMIT:
            return n
    return None


def default_max_length(directory: Union[str, os.PathLike]) -> Optional[int]:
    """The truncation length a directory states: ``sentence_bert_config.json``'s
    ``max_seq_length`` (what sentence-transformers uses), else ``tokenizer_config.json``'s
    ``model_max_length`` (below transformers' "no limit" sentinel), else None (no truncation).
    The truncation stored inside ``tokenizer.json`` is not used (transformers ignores it too)."""
    n = sentence_transformers_config(directory)["max_seq_length"]
    return n if n is not None else _model_max_length(Path(os.path.expanduser(os.fspath(directory))))


def load_tokenizer(directory: Union[str, os.PathLike], max_length: Optional[int] = None) -> Any:
    """A ``tokenizers.Tokenizer`` from ``directory/tokenizer.json`` (or from a ``.gguf`` file's
    metadata, see :mod:`tfcore.gguf_tokenizer`) that pads to the longest text of a batch and
    truncates each text to ``max_length`` tokens.

    max_length=None takes the directory's rule (``default_max_length``): a
    sentence-transformers directory's ``max_seq_length`` (256 for all-MiniLM-L6-v2), else
    ``tokenizer_config.json``'s ``model_max_length``, else no truncation; the limit stored in
    ``tokenizer.json`` itself is ignored, as transformers and sentence-transformers do.
    ``tokenizer.truncation`` shows the limit in force. ``encode`` warns when it cuts texts."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ImportError(
            "tokenizing text needs the optional 'tokenizers' package: pip install tokenizers"
        ) from e
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int | np.integer) or max_length < 1
    ):
        raise _C.TfcoreValueError(f"max_length must be a positive integer or None, got {max_length!r}")
    from .gguf import is_gguf_path

    if is_gguf_path(directory):  # a llama.cpp GGUF file: the tokenizer from its metadata
        from .gguf_tokenizer import load_gguf_tokenizer

        tok = load_gguf_tokenizer(directory)
        tok.no_truncation()
        if max_length is not None:
            tok.enable_truncation(max_length=int(max_length))
        return tok
    directory = os.path.expanduser(os.fspath(directory))
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
    if max_length is None:
        max_length = default_max_length(directory)
    tok.no_truncation()
    if max_length is not None:
        tok.enable_truncation(max_length=int(max_length))
    return tok


def _check_texts(texts: Sequence[str]) -> List[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise _C.TfcoreTypeError("texts must be a sequence of str")
    if len(texts) == 0:
        raise _C.TfcoreValueError("texts is empty")
    return list(texts)


def _warn_truncated(tokenizer: Any, encodings: Sequence[Any], stacklevel: int = 3) -> int:
    """One TruncationWarning saying how many of the encoded texts were cut, and at what
    limit; returns that count."""
    cut = sum(1 for e in encodings if e.overflowing)
    if cut:
        total = len(encodings)
        limit = (tokenizer.truncation or {}).get("max_length")
        were = "were" if cut != 1 else "was"
        warnings.warn(
            f"{cut} of {total} text{'s' if total != 1 else ''} {were} longer than max_length={limit} "
            f"tokens and {were} truncated (pass max_length= to change the limit)",
            TruncationWarning,
            stacklevel=stacklevel,
        )
    return cut


def encode(tokenizer: Any, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both int64 (B, T), for a batch of texts; one
    ``TruncationWarning`` when the tokenizer cut any of them (how many, and the limit)."""
    items = _check_texts(texts)
    enc = tokenizer.encode_batch(items)
    _warn_truncated(tokenizer, enc)
    return _arrays(enc)


def _arrays(enc: Sequence[Any]) -> Tuple[np.ndarray, np.ndarray]:
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def mean_pooling(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of the real tokens' vectors: (B, T, C), (B, T) -> (B, C), as sentence-transformers."""
    m = np.asarray(attention_mask, dtype=np.float32)[..., None]
    summed = (last_hidden_state * m).sum(axis=1)
    return (summed / np.clip(m.sum(axis=1), 1e-9, None)).astype(np.float32)


def pool(
    last_hidden_state: np.ndarray,
    attention_mask: np.ndarray,
    mode: Union[str, Sequence[str]] = "mean",
    prompt_length: int = 0,
) -> np.ndarray:
    """Sentence vectors from token vectors, as sentence-transformers' ``Pooling`` module:
    (B, T, C), (B, T) -> (B, C) (or (B, k*C) for a tuple of k modes, concatenated).

    mode: ``"mean"`` (average of real tokens), ``"cls"`` (first real token), ``"max"``
    (per-feature max), ``"mean_sqrt_len_tokens"`` (sum / sqrt(count)), ``"weightedmean"``
    (weights 1, 2, ... by position), ``"lasttoken"`` (last real token). prompt_length > 0
    leaves the first prompt_length tokens (the prompt, with its leading special token) out,
    as ``include_prompt: false`` does."""
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    if not modes or any(m not in POOLING_MODES for m in modes):
        raise _C.TfcoreValueError(
            f"pooling mode must be one of {POOLING_MODES} (or a tuple of them), got {mode!r}"
        )
    h = np.asarray(last_hidden_state)
    if h.ndim != 3:
        raise _C.TfcoreValueError(f"last_hidden_state must be (B, T, C), got shape {h.shape}")
    mask = np.asarray(attention_mask)
    if mask.shape != h.shape[:2]:
        raise _C.TfcoreValueError(f"attention_mask has shape {mask.shape}, expected {h.shape[:2]}")
    B, T, _ = h.shape
    m = mask.astype(np.float32)
    first_real = np.argmax(mask != 0, axis=1)  # left padding offset (0 for right padding)
    if prompt_length:
        pos = np.arange(T)[None, :]
        m = np.where(pos < (first_real + int(prompt_length))[:, None], 0.0, m).astype(np.float32)
    rows = np.arange(B)
    out = []
    for md in modes:
        if md == "cls":
            out.append(h[rows, np.argmax(m != 0, axis=1)])
        elif md == "max":
            out.append(np.where(m[..., None] != 0, h, -np.inf).max(axis=1))
        elif md in ("mean", "mean_sqrt_len_tokens"):
            s = (h * m[..., None]).sum(axis=1)
            n = np.clip(m.sum(axis=1, keepdims=True), 1e-9, None)
            out.append(s / (n if md == "mean" else np.sqrt(n)))
        elif md == "weightedmean":
            w = m * (np.arange(1, T + 1, dtype=np.float32)[None, :] - first_real[:, None])
            out.append((h * w[..., None]).sum(axis=1) / np.clip(w.sum(axis=1, keepdims=True), 1e-9, None))
        else:  # lasttoken
            last = T - 1 - np.argmax(m[:, ::-1] != 0, axis=1)
            out.append(h[rows, last] * m[rows, last][:, None])
    return np.ascontiguousarray(np.concatenate(out, axis=-1), dtype=np.float32)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (torch.nn.functional.normalize)."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)


class _IncrementalDecoder:
    """Text of a token stream as it grows, for printing generated tokens as they come.

    Decoding every token so far at each step costs O(n) per token (O(n^2) for a reply). This
    decodes a short window instead: the tokens from ``prefix`` on, where everything before
    ``prefix`` is already printed. The window keeps one printed token before the new ones, so a
    tokenizer whose decoding depends on the neighbour (SentencePiece's leading space, byte-level
    BPE) gives the same text as decoding the whole stream. A window ending inside a multi-byte
    character decodes to U+FFFD: nothing is printed until the character is complete.
    ``skip`` ids (end-of-turn tokens) are left out of the text. ``context``: tokens already shown
    (a prompt's last few), so the first new token decodes as it does after them (its space)."""

    def __init__(self, tokenizer: Any, skip: Sequence[int] = (), context: Sequence[int] = ()):
        self._tok = tokenizer
        self._skip = frozenset(int(i) for i in skip)
        self._ids: List[int] = [int(i) for i in context]
        self._prefix = 0  # window start: printed tokens kept as context
        self._read = len(self._ids)  # tokens [0, _read) are printed

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (maybe "")."""
        if int(token_id) in self._skip:
            return ""
        self._ids.append(int(token_id))
        printed = self._tok.decode(self._ids[self._prefix : self._read])
        text = self._tok.decode(self._ids[self._prefix :])
        if len(text) <= len(printed) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(printed) :]

    def flush(self) -> str:
        """The text not yet returned (a character left incomplete at the end of the stream)."""
        printed = self._tok.decode(self._ids[self._prefix : self._read])
        text = self._tok.decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return text[len(printed) :]
