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

__all__ = [
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertModel",
    "DistilBertModel",
    "ModelOutput",
    "PreTrainedModel",
    "RobertaModel",
    "XLMRobertaModel",
]
