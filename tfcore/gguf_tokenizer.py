"""A GGUF file's tokenizer (``tokenizer.ggml.*`` metadata) rebuilt as a ``tokenizers.Tokenizer``,
and its chat template (``tokenizer.chat_template``) applied with Jinja2 the way Hugging Face's
``apply_chat_template`` does.

Supported: ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE: the vocabulary, the merges,
byte-level pre-tokenization without a prefix space), which is what SmolLM, Qwen, GPT-2 and
most recent llama.cpp conversions use. Control tokens (token type 3) and user-defined tokens
(type 4) become added tokens, so they are matched whole in text (``<|im_start|>``);
``tokenizer.ggml.add_bos_token`` / ``add_eos_token`` wrap each encoding.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import _C
from .gguf import GGUFFile
from .safetensors import CheckpointError

# llama.cpp's token types
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def _strings(md: Mapping[str, Any], key: str, where: str) -> List[str]:
    v = md.get(key)
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise CheckpointError(f"{where}: metadata {key} must be an array of strings")
    return v


def tokenizer_from_metadata(md: Mapping[str, Any], where: str = "GGUF file") -> Any:
    """The ``tokenizers.Tokenizer`` the metadata describes (see the module docstring)."""
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    except ImportError as e:
        raise ImportError(
            "tokenizing text needs the optional 'tokenizers' package: pip install tokenizers"
        ) from e
    kind = md.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise CheckpointError(
            f"{where}: tokenizer.ggml.model is {kind!r}; tfcore rebuilds 'gpt2' (byte-level BPE) "
            "tokenizers from GGUF metadata (pass token ids, or a directory with tokenizer.json)"
        )
    tokens = _strings(md, "tokenizer.ggml.tokens", where)
    merges = _strings(md, "tokenizer.ggml.merges", where)
    types = md.get("tokenizer.ggml.token_type")
    if types is None:
        types = [_NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise CheckpointError(
            f"{where}: tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens"
        )
    vocab: Dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise CheckpointError(f"{where}: merge {m!r} is not two space-separated tokens")
        pairs.append((parts[0], parts[1]))
    try:
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    except Exception as e:  # tokenizers raises plain Exceptions for inconsistent vocab/merges
        raise CheckpointError(
            f"{where}: the GGUF vocabulary and merges do not form a BPE model ({e})"
        ) from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = [
        AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if int(k) == _CONTROL
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, k in zip(tokens, types)
        if int(k) == _USER_DEFINED
    ]
    tok.add_special_tokens(special)
    tok.add_tokens(user)

    def token(key: str) -> Optional[str]:
        i = md.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    add_bos = bool(md.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(md.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if add_bos or add_eos:
        pre = f"{bos} " if add_bos else ""
        post = f" {eos}" if add_eos else ""
        specials = [(t, vocab[t]) for t, on in ((bos, add_bos), (eos, add_eos)) if on]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{pre}$A{post}", pair=f"{pre}$A{post} {pre}$B{post}", special_tokens=specials
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    pad = token("tokenizer.ggml.padding_token_id")
    if pad is not None:
        tok.enable_padding(pad_id=vocab[pad], pad_token=pad)
    return tok


def load_gguf_tokenizer(path: Union[str, os.PathLike]) -> Any:
    """The tokenizer stored in a GGUF file (see :func:`tokenizer_from_metadata`)."""
    f = GGUFFile(path)
    try:
        return tokenizer_from_metadata(f.metadata, str(f.path))
    finally:
        f.close()


def chat_template_of(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """{"chat_template", "bos_token", "eos_token"} of a GGUF file (None where absent)."""
    f = GGUFFile(path)
    try:
        md = f.metadata
        tokens = md.get("tokenizer.ggml.tokens") or []

        def token(key: str) -> Optional[str]:
            i = md.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

        tpl = md.get("tokenizer.chat_template")
        return {
            "chat_template": tpl if isinstance(tpl, str) else None,
            "bos_token": token("tokenizer.ggml.bos_token_id"),
            "eos_token": token("tokenizer.ggml.eos_token_id"),
        }
    finally:
        f.close()


def _check_messages(messages: Any) -> List[Dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise _C.TfcoreTypeError(
            "messages must be a non-empty list of {'role': ..., 'content': ...} dicts, "
            f"got {type(messages).__name__}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or "content" not in m:
            raise _C.TfcoreValueError(
                f"messages[{i}] must be a dict with a 'role' string and 'content', got {m!r}"
            )
    return [dict(m) for m in messages]


def apply_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = False,
    **variables: Any,
) -> str:
    """Render a Jinja2 chat template over messages like ``transformers``'
    ``apply_chat_template(..., tokenize=False)``: a sandboxed environment with
    ``trim_blocks`` and ``lstrip_blocks``, the ``tojson`` filter, ``raise_exception(msg)``
    (raises :class:`tfcore.TfcoreValueError`), ``add_generation_prompt`` and any extra
    variables (``bos_token``, ``eos_token``, ``tools``, ...). Tokenize the result without
    adding special tokens (the template writes them)."""
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise ImportError("chat templates need the optional 'jinja2' package: pip install jinja2") from e
    if not isinstance(template, str) or not template:
        raise _C.TfcoreValueError("this model has no chat template (tokenizer.chat_template is missing)")
    messages = _check_messages(messages)

    def raise_exception(message: str) -> None:
        raise _C.TfcoreValueError(f"chat template: {message}")

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: Any = None,
        separators: Any = None,
        sort_keys: bool = False,
    ):
        import json

        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(template)
        return compiled.render(
            messages=messages, add_generation_prompt=bool(add_generation_prompt), **variables
        )
    except jinja2.TemplateError as e:
        raise _C.TfcoreValueError(f"chat template could not be rendered ({type(e).__name__}: {e})") from None
