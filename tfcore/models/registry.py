"""Which tfcore class loads a checkpoint of a given ``model_type`` for a given task.

Each family file decorates its concrete classes (in the spirit of timm's ``register_model``)::

    @register("base")
    class BertModel(PreTrainedModel):
        model_types = ("bert",)

and the loaders ask the registry instead of keeping their own tables:
``AutoModel`` is ``lookup(model_type, "base")``, ``AutoModelForCausalLM`` is ``"causal-lm"``,
``AutoModelForSeq2SeqLM`` is ``"seq2seq-lm"``; ``tfcore generate`` reads ``tasks_for``.
A class is filed under each of its ``model_types``; a (model_type, task) pair has one class.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Type, TypeVar

from .. import _C
from ..safetensors import CheckpointError
from .base import PreTrainedModel

# The tasks a class can be registered for, with the noun error messages use for each.
TASKS: Dict[str, str] = {
    "base": "model",  # AutoModel: the bare encoder / decoder / vision model
    "causal-lm": "causal LM",  # AutoModelForCausalLM: LM head and generate()
    "seq2seq-lm": "sequence-to-sequence LM",  # AutoModelForSeq2SeqLM: encoder-decoder with generate()
    "masked-lm": "masked LM",
    "sequence-classification": "sequence classifier",  # AutoModelForSequenceClassification
    "token-classification": "token classifier",  # AutoModelForTokenClassification (NER)
    "question-answering": "question-answering model",  # AutoModelForQuestionAnswering (spans)
    "image-classification": "image classifier",
    "ctc": "CTC speech recognizer",  # AutoModelForCTC (wav2vec 2.0, HuBERT)
    "encoder": "encoder",  # the encoder half of an encoder-decoder (T5EncoderModel)
}

# (model_type, task) -> class, in registration order
_REGISTRY: Dict[Tuple[str, str], Type[PreTrainedModel]] = {}

M = TypeVar("M", bound=Type[PreTrainedModel])


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise _C.TfcoreValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")


def register(task: str) -> Callable[[M], M]:
    """Class decorator: file the class under (model_type, task) for each of its
    ``model_types``. Raises TfcoreValueError if a pair already has a class (most often a
    subclass that inherited its parent's model_types instead of stating its own) or the
    class states no model_types; the class itself is returned unchanged."""
    _check_task(task)

    def file(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, PreTrainedModel)):
            raise _C.TfcoreTypeError(f"register({task!r}) takes a PreTrainedModel subclass, got {cls!r}")
        types = tuple(cls.model_types)
        if not types:
            raise _C.TfcoreValueError(
                f"{cls.__qualname__} has no model_types to register under task {task!r}"
            )
        for mt in types:  # check every pair before filing any
            taken = _REGISTRY.get((mt, task))
            if taken is not None:
                raise _C.TfcoreValueError(
                    f"{cls.__module__}.{cls.__qualname__}: model_type {mt!r} for task {task!r} is already "
                    f"registered by {taken.__module__}.{taken.__qualname__} (set model_types on the subclass)"
                )
        for mt in types:
            _REGISTRY[(mt, task)] = cls
        return cls

    return file


def lookup(model_type, task: str, source: Optional[str] = None) -> Type[PreTrainedModel]:
    """The class registered for (model_type, task). Otherwise raises CheckpointError
    naming the model types supported for the task; source (e.g. the checkpoint directory)
    prefixes the message."""
    _check_task(task)
    cls = _REGISTRY.get((model_type, task)) if isinstance(model_type, str) else None
    if cls is None:
        where = f"{source}: " if source is not None else ""
        raise CheckpointError(
            f"{where}model_type {model_type!r} is not a supported {TASKS[task]}; tfcore supports "
            f"{', '.join(model_types(task)) or 'none'}"
        )
    return cls


def tasks_for(model_type) -> Tuple[str, ...]:
    """The tasks model_type has a class for, in TASKS order (empty if none)."""
    return tuple(t for t in TASKS if isinstance(model_type, str) and (model_type, t) in _REGISTRY)


def model_types(task: str) -> Tuple[str, ...]:
    """The model types with a class for task, sorted."""
    _check_task(task)
    return tuple(sorted(mt for mt, t in _REGISTRY if t == task))


def classes() -> Tuple[Type[PreTrainedModel], ...]:
    """Every registered class once, in registration order."""
    return tuple(dict.fromkeys(_REGISTRY.values()))
