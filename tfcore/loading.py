"""``AutoModel``: pick the tfcore class for a checkpoint from its ``config.json``.

The Auto classes are views over ``tfcore.models.registry``: each asks it for the class
registered for the checkpoint's model_type under its task."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from .config import Config
from .hub import resolve
from .models import registry
from .models.base import PreTrainedModel


def _load(
    directory: Union[str, os.PathLike], task: str, dtype: Any, threads: Optional[int], **kwargs: Any
) -> PreTrainedModel:
    from . import gguf

    if gguf.is_gguf_path(directory):
        model_type = gguf.read_config(directory).get("model_type")
    else:
        directory = resolve(directory, kwargs.pop("revision", None))
        model_type = Config.from_dir(directory).get("model_type")
    cls = registry.lookup(model_type, task, source=str(directory))
    extra = {k: v for k, v in kwargs.items() if v is not None}  # torch_dtype= only when given
    return cls.from_pretrained(directory, dtype=dtype, threads=threads, **extra)


class AutoModel:
    """``AutoModel.from_pretrained(dir)``: the base model of the checkpoint's model_type
    (like ``transformers.AutoModel``)."""

    @staticmethod
    def from_pretrained(
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory with the tfcore class for its config.json model_type; directory
        (or cached hub id), dtype, threads, revision and torch_dtype as PreTrainedModel.from_pretrained."""
        return _load(directory, "base", dtype, threads, revision=revision, torch_dtype=torch_dtype)


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(dir)`` like transformers': a model with generate()."""

    @staticmethod
    def from_pretrained(
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory's causal language model (with its LM head and generate());
        dtype and threads as PreTrainedModel.from_pretrained."""
        return _load(directory, "causal-lm", dtype, threads, revision=revision, torch_dtype=torch_dtype)


class AutoModelForSeq2SeqLM:
    """``AutoModelForSeq2SeqLM.from_pretrained(dir)`` like transformers': an encoder-decoder
    model with its LM head and generate()."""

    @staticmethod
    def from_pretrained(
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory's encoder-decoder language model; dtype and threads as
        PreTrainedModel.from_pretrained."""
        return _load(directory, "seq2seq-lm", dtype, threads, revision=revision, torch_dtype=torch_dtype)


class AutoModelForSequenceClassification:
    """``AutoModelForSequenceClassification.from_pretrained(dir)`` like transformers': the checkpoint's
    sequence classifier (logits over config.id2label; ``model.id2label``)."""

    @staticmethod
    def from_pretrained(
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory's sequence classification model; dtype and threads as
        PreTrainedModel.from_pretrained."""
        return _load(
            directory, "sequence-classification", dtype, threads, revision=revision, torch_dtype=torch_dtype
        )


class AutoModelForTokenClassification:
    """``AutoModelForTokenClassification.from_pretrained(dir)`` like transformers': the checkpoint's
    token classifier (per-token logits, e.g. NER)."""

    @staticmethod
    def from_pretrained(
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory's token classification model; dtype and threads as
        PreTrainedModel.from_pretrained."""
        return _load(
            directory, "token-classification", dtype, threads, revision=revision, torch_dtype=torch_dtype
        )


class AutoModelForQuestionAnswering:
    """``AutoModelForQuestionAnswering.from_pretrained(dir)`` like transformers': the checkpoint's
    extractive question-answering model (start and end logits)."""

    @staticmethod
    def from_pretrained(
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory's question answering model; dtype and threads as
        PreTrainedModel.from_pretrained."""
        return _load(
            directory, "question-answering", dtype, threads, revision=revision, torch_dtype=torch_dtype
        )
