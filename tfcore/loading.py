"""``AutoModel``: pick the tfcore class for a checkpoint from its ``config.json``."""
from __future__ import annotations

import os
from typing import Dict, Optional, Type, Union

from . import models
from .config import Config
from .models.base import PreTrainedModel
from .safetensors import CheckpointError

# model_type -> the tfcore class AutoModel / AutoModelForCausalLM load.
BASE_MODELS: Dict[str, Type[PreTrainedModel]] = {
    "bert": models.BertModel,
    "roberta": models.RobertaModel,
    "xlm-roberta": models.XLMRobertaModel,
    "distilbert": models.DistilBertModel,
    "vit": models.ViTModel,
    "deit": models.DeiTModel,
    "dinov2": models.Dinov2Model,
    "dinov2_with_registers": models.Dinov2WithRegistersModel,
    "gpt2": models.GPT2Model,
    "bloom": models.BloomModel,
    "longformer": models.LongformerModel,
    "big_bird": models.BigBirdModel,
    "t5": models.T5Model,
    "swin": models.SwinModel,
}
CAUSAL_LMS: Dict[str, Type[PreTrainedModel]] = {
    "gpt2": models.GPT2LMHeadModel,
    "llama": models.LlamaForCausalLM,
    "mistral": models.MistralForCausalLM,
    "opt": models.OPTForCausalLM,
    "bloom": models.BloomForCausalLM,
}


def _load(directory: Union[str, os.PathLike], table: Dict[str, Type[PreTrainedModel]], what: str,
          dtype: str, threads: Optional[int]) -> PreTrainedModel:
    mt = Config.from_dir(directory).get("model_type")
    cls = table.get(mt) if isinstance(mt, str) else None
    if cls is None:
        raise CheckpointError(f"{directory}: model_type {mt!r} is not a supported {what}; tfcore supports "
                              f"{', '.join(sorted(table))}")
    return cls.from_pretrained(directory, dtype=dtype, threads=threads)


class AutoModel:
    """``AutoModel.from_pretrained(dir)``: the base model of the checkpoint's model_type
    (like ``transformers.AutoModel``)."""

    @staticmethod
    def from_pretrained(directory: Union[str, os.PathLike], dtype: str = "float32",
                        threads: Optional[int] = None) -> PreTrainedModel:
        """Load the directory with the tfcore class for its config.json model_type; dtype and
        threads as PreTrainedModel.from_pretrained."""
        return _load(directory, BASE_MODELS, "model", dtype, threads)


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(dir)`` like transformers': a model with generate()."""

    @staticmethod
    def from_pretrained(directory: Union[str, os.PathLike], dtype: str = "float32",
                        threads: Optional[int] = None) -> PreTrainedModel:
        """Load the directory's causal language model (with its LM head and generate());
        dtype and threads as PreTrainedModel.from_pretrained."""
        return _load(directory, CAUSAL_LMS, "causal LM", dtype, threads)


# model_type -> the tfcore encoder-decoder class AutoModelForSeq2SeqLM loads.
SEQ2SEQ_LMS: Dict[str, Type[PreTrainedModel]] = {
    "t5": models.T5ForConditionalGeneration,
}


class AutoModelForSeq2SeqLM:
    """``AutoModelForSeq2SeqLM.from_pretrained(dir)`` like transformers': an encoder-decoder
    model with its LM head and generate()."""

    @staticmethod
    def from_pretrained(directory: Union[str, os.PathLike], dtype: str = "float32",
                        threads: Optional[int] = None) -> PreTrainedModel:
        """Load the directory's encoder-decoder language model; dtype and threads as
        PreTrainedModel.from_pretrained."""
        return _load(directory, SEQ2SEQ_LMS, "sequence-to-sequence LM", dtype, threads)
