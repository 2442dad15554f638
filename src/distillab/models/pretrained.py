"""Classifiers from a local HF folder (``config.json`` + weights); nothing is downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

from distillab.config import ConfigError, check_int
from distillab.models.output import TransformerClassifier

log = logging.getLogger(__name__)

_AUTO = {"pixel_values": AutoModelForImageClassification, "input_ids": AutoModelForSequenceClassification}


def load_pretrained(pretrained: str, num_labels: int, input_name: str) -> TransformerClassifier:
    """Load a local checkpoint with a classification head sized to ``num_labels``.

    A head of another size (or none) is replaced by a freshly initialised one; HF logs which
    weights were newly initialised.
    """
    folder = Path(pretrained).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError("pretrained", pretrained, "must be a local folder holding an HF config.json and weights")
    check_int("num_labels", num_labels, low=2)
    model = _AUTO[input_name].from_pretrained(
        folder, num_labels=num_labels, ignore_mismatched_sizes=True, local_files_only=True
    )
    log.info("loaded %s from %s with a %d-way head", type(model).__name__, folder, num_labels)
    return TransformerClassifier(model, input_name)
