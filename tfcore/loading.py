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


class _AutoClass:
    """What every Auto class does: load a checkpoint with the tfcore class that
    ``tfcore.models.registry`` files under the checkpoint's model_type for the Auto class's
    ``task``. A subclass states its task and what it returns."""

    task = ""

    @classmethod
    def from_pretrained(
        cls,
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> PreTrainedModel:
        """Load the directory (or cached hub id, or a .gguf file) with the tfcore class
        registered for its model_type under this Auto class's task; dtype, threads, revision
        and torch_dtype as PreTrainedModel.from_pretrained."""
        return _load(directory, cls.task, dtype, threads, revision=revision, torch_dtype=torch_dtype)


class AutoModel(_AutoClass):
    """``AutoModel.from_pretrained(dir)``: the base model of the checkpoint's model_type
    (like ``transformers.AutoModel``).

    Every Auto class has ``from_pretrained(directory, dtype="float32", threads=None, *,
    revision=None, torch_dtype=None)``: directory, a cached hub id or a .gguf file; the
    arguments as PreTrainedModel.from_pretrained."""

    task = "base"


class AutoModelForCausalLM(_AutoClass):
    """``AutoModelForCausalLM.from_pretrained(dir)`` like transformers': a model with generate()."""

    task = "causal-lm"


class AutoModelForSeq2SeqLM(_AutoClass):
    """``AutoModelForSeq2SeqLM.from_pretrained(dir)`` like transformers': an encoder-decoder
    model with its LM head and generate()."""

    task = "seq2seq-lm"


class AutoModelForSequenceClassification(_AutoClass):
    """``AutoModelForSequenceClassification.from_pretrained(dir)`` like transformers': the checkpoint's
    sequence classifier (logits over config.id2label; ``model.id2label``)."""

    task = "sequence-classification"


class AutoModelForTokenClassification(_AutoClass):
    """``AutoModelForTokenClassification.from_pretrained(dir)`` like transformers': the checkpoint's
    token classifier (per-token logits, e.g. NER)."""

    task = "token-classification"


class AutoModelForQuestionAnswering(_AutoClass):
    """``AutoModelForQuestionAnswering.from_pretrained(dir)`` like transformers': the checkpoint's
    extractive question-answering model (start and end logits)."""

    task = "question-answering"


class AutoModelForImageClassification(_AutoClass):
    """``AutoModelForImageClassification.from_pretrained(dir)`` like transformers': the
    checkpoint's image classifier (logits over config.id2label; ``model.id2label``): Swin,
    SwinV2, PVT v2, SegFormer, CvT, BEiT and SigLIP's vision tower where HF has the head."""

    task = "image-classification"


class AutoModelForSemanticSegmentation(_AutoClass):
    """``AutoModelForSemanticSegmentation.from_pretrained(dir)`` like transformers': the
    checkpoint's per-pixel classifier (SegFormer: logits at 1/4 of the input resolution)."""

    task = "semantic-segmentation"


class AutoModelForCTC(_AutoClass):
    """``AutoModelForCTC.from_pretrained(dir)`` like transformers': the checkpoint's CTC speech
    recognizer (per-frame logits over characters; ``transcribe`` gives text)."""

    task = "ctc"
