"""BERT classifiers over token ids (HF ``BertForSequenceClassification``, or
``BertForTokenClassification`` for a label per token), Devlin et al. 2019."""

from __future__ import annotations

from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from distillab.core.config import check_choice, check_int
from distillab.models.encoder_shape import TASKS, encoder_keys, hf_classifier
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import build_pretrained


def build_bert(
    num_labels: int,
    vocab_size: int,
    max_length: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 512,
    dropout: float = 0.1,
    attn_implementation: str = "sdpa",
    pretrained: str | None = None,
    task: str = "classification",
) -> TransformerClassifier:
    """A BERT from shape keys, or from a local pretrained folder when ``pretrained`` is set
    (then the folder's architecture wins over the shape keys; see models/pretrained.py).

    ``num_labels``, ``vocab_size``, ``max_length`` and ``task`` come from the data module
    (``token_classification``: a head on every token, logits [batch, seq, labels]).
    """
    if pretrained:
        return build_pretrained(pretrained, num_labels, vocab_size=vocab_size, max_length=max_length, task=task)
    model_class = {"classification": BertForSequenceClassification, "token_classification": BertForTokenClassification}
    check_choice("task", task, TASKS)
    shape = encoder_keys(hidden_size, num_layers, num_heads, intermediate_size, num_labels, dropout)
    check_int("vocab_size", vocab_size, low=2)
    check_int("max_length", max_length, low=1)
    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=max_length, **shape)
    return hf_classifier(model_class[task], config, attn_implementation, "input_ids")
