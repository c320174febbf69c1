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
from .big_bird import BigBirdModel
from .bloom import BloomForCausalLM, BloomModel
from .gpt2 import GPT2LMHeadModel, GPT2Model
from .llama import LlamaForCausalLM, MistralForCausalLM
from .longformer import LongformerModel
from .opt import OPTForCausalLM
from .vit import DeiTModel, Dinov2Model, Dinov2WithRegistersModel, ViTModel
from .t5 import T5EncoderModel, T5ForConditionalGeneration, T5Model
from .swin import SwinForImageClassification, SwinModel

__all__ = [
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertModel",
    "BigBirdModel",
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
    "BloomForCausalLM",
    "BloomModel",
    "LongformerModel",
    "T5EncoderModel",
    "T5ForConditionalGeneration",
    "T5Model",
    "SwinForImageClassification",
    "SwinModel",
]
