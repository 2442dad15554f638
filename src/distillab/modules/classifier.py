"""Supervised training of one classifier: teachers, and students trained alone (baselines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from distillab.evaluation.metrics import classification_metrics
from distillab.losses.composite import LossResult
from distillab.losses.kd import cross_entropy
from distillab.losses.reduce import label_mask
from distillab.models.output import ModelOutput, TransformerClassifier
from distillab.modules.optim import OptimizerConfig, build_optimizer


class ClassifierModule(L.LightningModule):
    """Trains ``model`` with cross-entropy; logs val/test accuracy, macro F1, precision, recall.

    Subclasses change what is optimised by overriding :meth:`training_loss` and
    :meth:`trainable_parameters`; evaluation is shared. ``compile_model`` runs the model's
    forward through ``torch.compile`` (slow to start, faster per step on long runs).
    """

    def __init__(self, model: TransformerClassifier, num_classes: int, optimizer: OptimizerConfig | None = None,
                 compile_model: bool = False):
        super().__init__()
        self.model = model
        # The compiled wrapper shares the model's weights; it is kept out of the module tree
        # so that checkpoints hold the plain model's keys.
        self.__dict__["run_model"] = torch.compile(model) if compile_model else model
        self.optimizer_config = optimizer or OptimizerConfig()
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def forward(self, inputs: Tensor | dict[str, Tensor]) -> ModelOutput:
        return self.model(inputs)

    def training_loss(self, batch: dict[str, Any]) -> LossResult:
        ce = cross_entropy(self.run_model(batch["inputs"]).logits, batch["labels"], label_mask(batch))
        return LossResult(ce, {"ce": ce})

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        result = self.training_loss(batch)
        if self._logs_this_step():
            n = len(batch["labels"])
            self.log("train/loss", result.total, prog_bar=True, batch_size=n)
            self.log_dict({f"train/loss/{k}": v for k, v in result.parts.items()}, batch_size=n)
        return result.total

    def _logs_this_step(self) -> bool:
        """Whether the logger writes this step's values (every ``trainer.log_every_n_steps``).
        A ``self.log`` call costs about 1 ms on a slow CPU, more than a tiny student's
        forward, so the steps whose values Lightning would not write skip it."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    def evaluate(self, batch: dict[str, Any], split: str) -> ModelOutput:
        """Accumulate one val/test batch; the metrics are logged once, at the epoch's end."""
        out = self.run_model(batch["inputs"])
        n = len(batch["labels"])
        loss = self.val_loss if split == "val" else self.test_loss
        loss.update(cross_entropy(out.logits, batch["labels"], batch.get("mask")), weight=n)
        (self.val_metrics if split == "val" else self.test_metrics).update(out.logits, batch["labels"])
        return out

    def log_evaluation(self, split: str) -> None:
        self.log(f"{split}/loss", self.val_loss if split == "val" else self.test_loss)
        self.log_dict(self.val_metrics if split == "val" else self.test_metrics, prog_bar=split == "val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.log_evaluation("test")

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def configure_optimizers(self) -> dict:
        return build_optimizer(
            self.trainable_parameters(), self.optimizer_config, int(self.trainer.estimated_stepping_batches)
        )
