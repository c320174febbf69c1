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
from .vit import DeiTModel, Dinov2Model, Dinov2WithRegistersModel, ViTModel

__all__ = [
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertModel",
    "DeiTModel",
    "Dinov2Model",
    "Dinov2WithRegistersModel",
    "DistilBertModel",
    "ModelOutput",
    "PreTrainedModel",
    "RobertaModel",
    "ViTModel",
    "XLMRobertaModel",
]
