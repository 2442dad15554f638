"""Factories for HF ``transformers`` classifiers and causal LMs, wrapped in one ModelOutput adapter."""

from distillab.models.bert import build_bert
from distillab.models.causal_lm import build_causal_lm
from distillab.models.mlp import build_mlp
from distillab.models.output import ModelOutput, TransformerClassifier
from distillab.models.pretrained import build_pretrained
from distillab.models.vit import build_vit

__all__ = [
    "ModelOutput",
    "TransformerClassifier",
    "build_bert",
    "build_causal_lm",
    "build_mlp",
    "build_pretrained",
    "build_vit",
]
