"""Model families, named like their Hugging Face classes:
``tfcore.models.BertModel.from_pretrained(directory)``."""
from .base import ModelOutput, PreTrainedModel
from .bert import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    DistilBertModel,
    RobertaModel,
    XLMRobertaModel,
)
from .gpt2 import GPT2LMHeadModel, GPT2Model
from .llama import LlamaForCausalLM, MistralForCausalLM
from .opt import OPTForCausalLM
from .vit import DeiTModel, Dinov2Model, Dinov2WithRegistersModel, ViTModel
from .swin import SwinForImageClassification, SwinModel

__all__ = [
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertModel",
    "DeiTModel",
    "Dinov2Model",
    "Dinov2WithRegistersModel",
    "DistilBertModel",
    "GPT2LMHeadModel",
    "GPT2Model",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "OPTForCausalLM",
    "ModelOutput",
    "PreTrainedModel",
    "RobertaModel",
    "ViTModel",
    "XLMRobertaModel",
    "SwinForImageClassification",
    "SwinModel",
]
