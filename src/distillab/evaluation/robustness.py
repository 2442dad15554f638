"""Accuracy under attack for every model of a run, into metrics.json (``robust``), the report
and TensorBoard (``robust/<model>/<attack>``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig
from torch import nn

from distillab.data.tensor_datamodule import TensorDataModule
from distillab.robustness import Attack, robust_accuracy


def robustness_report(
    cfg: DictConfig,
    models: Sequence[tuple[str, dict[str, Any], nn.Module]],
    attacks: list[Attack],
    datamodule: TensorDataModule,
) -> None:
    """Add ``robust`` ({"clean": acc, "fgsm@0.1": acc, ...}) to each ``(role, metrics entry, model)``."""
    for _, entry, model in models:
        entry["robust"] = robust_accuracy(model, datamodule.eval_loader("test"), attacks, seed=cfg.seed)
