"""Classification metrics shared by every module (torchmetrics, so they sync under DDP)."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy (micro) and macro-averaged F1, precision and recall, logged as ``<prefix><name>``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        },
        prefix=prefix,
    )
