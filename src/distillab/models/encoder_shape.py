"""What every Transformer factory shares: its shape keys checked (a bad shape is a config
error, not a torch one) and passed to HF's config classes under their names there."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, PreTrainedModel

from distillab.core.config import ConfigError, check_int, check_number
from distillab.models.output import TransformerClassifier

# What an encoder's head labels: the whole input (classification) or each token
# (token_classification, logits [batch, seq, labels]); the data module says which.
TASKS = ("classification", "token_classification")


def check_layers(hidden_size: int, num_layers: int, num_heads: int) -> None:
    check_int("hidden_size", hidden_size, low=1)
    check_int("num_layers", num_layers, low=1)
    check_int("num_heads", num_heads, low=1)


def check_head_width(hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads:
        raise ConfigError(
            "num_heads", num_heads, f"must divide hidden_size={hidden_size} (each head gets hidden_size / num_heads)"
        )


def check_encoder_shape(
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    num_labels: int,
    dropout: float,
) -> None:
    check_layers(hidden_size, num_layers, num_heads)
    check_int("intermediate_size", intermediate_size, low=1)
    check_int("num_labels", num_labels, low=2)
    check_number("dropout", dropout, low=0, high=1, high_open=True)
    check_head_width(hidden_size, num_heads)


def hf_shape(hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int) -> dict[str, int]:
    """The shape keys under the names HF's BERT, ViT and Llama configs give them."""
    return {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size,
    }


def encoder_keys(
    hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, num_labels: int, dropout: float
) -> dict[str, Any]:
    """The config keys a BERT-style encoder classifier (BERT, ViT) names alike, checked by
    :func:`check_encoder_shape`; ``dropout`` is both its hidden and its attention dropout."""
    check_encoder_shape(hidden_size, num_layers, num_heads, intermediate_size, num_labels, dropout)
    return {
        **hf_shape(hidden_size, num_layers, num_heads, intermediate_size),
        "num_labels": num_labels,
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
    }


def hf_classifier(
    model_class: type[PreTrainedModel], config: PretrainedConfig, attn_implementation: str, input_name: str
) -> TransformerClassifier:
    """A new (randomly initialised) HF model of ``config`` with the attention kernel asked for."""
    config._attn_implementation = attn_implementation
    return TransformerClassifier(model_class(config), input_name)
