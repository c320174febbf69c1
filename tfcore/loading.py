"""``AutoModel``: pick the tfcore class for a checkpoint from its ``config.json``."""
from __future__ import annotations

import os
from typing import Dict, Type, Union

from . import models
from .config import Config
from .models.base import PreTrainedModel
from .safetensors import CheckpointError

# HF architecture name -> tfcore class, and model_type -> base model class.
ARCHITECTURES: Dict[str, Type[PreTrainedModel]] = {
    name: getattr(models, name)
    for name in ("BertModel", "BertForMaskedLM", "BertForSequenceClassification", "RobertaModel",
                 "XLMRobertaModel", "DistilBertModel", "ViTModel", "DeiTModel", "Dinov2Model",
                 "Dinov2WithRegistersModel", "GPT2Model", "GPT2LMHeadModel", "LlamaForCausalLM",
                 "MistralForCausalLM", "OPTForCausalLM")
}
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
}
CAUSAL_LMS: Dict[str, Type[PreTrainedModel]] = {
    "gpt2": models.GPT2LMHeadModel,
    "llama": models.LlamaForCausalLM,
    "mistral": models.MistralForCausalLM,
    "opt": models.OPTForCausalLM,
}


class AutoModel:
    """``AutoModel.from_pretrained(dir)``: the base model of the checkpoint's model_type
    (like ``transformers.AutoModel``)."""

    @staticmethod
    def from_pretrained(directory: Union[str, os.PathLike], dtype: str = "float32") -> PreTrainedModel:
        config = Config.from_dir(directory)
        mt = config.get("model_type")
        cls = BASE_MODELS.get(mt)
        if cls is None:
            raise CheckpointError(f"{directory}: model_type {mt!r} is not supported; tfcore supports "
                                  f"{', '.join(sorted(BASE_MODELS))}")
        return cls.from_pretrained(directory, dtype=dtype)


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(dir)`` like transformers': a model with generate()."""

    @staticmethod
    def from_pretrained(directory: Union[str, os.PathLike], dtype: str = "float32") -> PreTrainedModel:
        config = Config.from_dir(directory)
        mt = config.get("model_type")
        cls = CAUSAL_LMS.get(mt)
        if cls is None:
            raise CheckpointError(f"{directory}: model_type {mt!r} is not a supported causal LM; tfcore supports "
                                  f"{', '.join(sorted(CAUSAL_LMS))}")
        return cls.from_pretrained(directory, dtype=dtype)


class AutoModelForArchitecture:
    """The class named in config.json's ``architectures`` (heads included)."""

    @staticmethod
    def from_pretrained(directory: Union[str, os.PathLike], dtype: str = "float32") -> PreTrainedModel:
        config = Config.from_dir(directory)
        for arch in config.get("architectures") or []:
            if arch in ARCHITECTURES:
                return ARCHITECTURES[arch].from_pretrained(directory, dtype=dtype)
        raise CheckpointError(f"{directory}: architectures {config.get('architectures')!r} are not supported; "
                              f"tfcore supports {', '.join(sorted(ARCHITECTURES))}")
