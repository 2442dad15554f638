"""Supervised training of one classifier: teachers, and students trained alone (baselines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
from torch import Tensor, nn

from distillab.evaluation.metrics import classification_metrics
from distillab.losses.composite import LossResult
from distillab.losses.kd import cross_entropy
from distillab.models.output import ModelOutput, TransformerClassifier
from distillab.modules.optim import OptimizerConfig, build_optimizer


class ClassifierModule(L.LightningModule):
    """Trains ``model`` with cross-entropy; logs val/test accuracy, macro F1, precision, recall.

    Subclasses change what is optimised by overriding :meth:`training_loss` and
    :meth:`trainable_parameters`; evaluation is shared.
    """

    def __init__(self, model: TransformerClassifier, num_classes: int, optimizer: OptimizerConfig | None = None):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer or OptimizerConfig()
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")

    def forward(self, inputs: Tensor | dict[str, Tensor]) -> ModelOutput:
        return self.model(inputs)

    def training_loss(self, batch: dict[str, Any]) -> LossResult:
        ce = cross_entropy(self.model(batch["inputs"]).logits, batch["labels"], batch.get("mask"))
        return LossResult(ce, {"ce": ce})

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        result = self.training_loss(batch)
        n = len(batch["labels"])
        self.log("train/loss", result.total, prog_bar=True, batch_size=n)
        self.log_dict({f"train/loss/{k}": v for k, v in result.parts.items()}, batch_size=n)
        return result.total

    def evaluate(self, batch: dict[str, Any], split: str) -> ModelOutput:
        out = self.model(batch["inputs"])
        n = len(batch["labels"])
        self.log(f"{split}/loss", cross_entropy(out.logits, batch["labels"], batch.get("mask")), batch_size=n)
        metrics = self.val_metrics if split == "val" else self.test_metrics
        metrics.update(out.logits, batch["labels"])
        self.log_dict(metrics, prog_bar=split == "val", batch_size=n)
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def configure_optimizers(self) -> dict:
        return build_optimizer(
            self.trainable_parameters(), self.optimizer_config, int(self.trainer.estimated_stepping_batches)
        )
