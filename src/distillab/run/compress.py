"""After training: prune (and recover), quantize to int8, export to ONNX, and measure.

    trained student ──prune──> pruned ──recovery epochs of distillation──> pruned'
        ──make masks permanent──> int8 (dynamic, Linear layers) ──> ONNX (+ onnxruntime check)

(``compression.hf``, the final student as a Hugging Face folder, is written once every model
is measured: run/after_training.py.)

Every model on the way gets a row in the compression report: parameters, non-zero
parameters, size on disk (dense state dict, and zlib-compressed), CPU latency at batch 1
and 64, test accuracy and retention of the teacher's accuracy.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distillab.core.config import ConfigError, build, check_choice
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.compression import (
    add_speedups,
    compression_row,
    count_nonzero,
    count_parameters,
    example_inputs,
)
from distillab.export import export_onnx, onnx_agreement, quantize_int8
from distillab.models.output import TransformerClassifier
from distillab.pruning import GradualPruning, make_permanent
from distillab.pruning.steps import PruningStep
from distillab.run.metrics import ModelEntry

log = logging.getLogger(__name__)


@dataclass
class CompressionPlan:
    pruning: PruningStep | GradualPruning | None
    quantize: str
    onnx: bool
    hf: bool = True  # compression.hf: the final student saved as a Hugging Face folder

    @property
    def gradual(self) -> GradualPruning | None:
        return self.pruning if isinstance(self.pruning, GradualPruning) else None

    @property
    def step(self) -> PruningStep | None:
        return self.pruning if isinstance(self.pruning, PruningStep) else None


@dataclass
class Compressed:
    """What compression made: the pruned model's entry, the ONNX check, and the final models
    by name (``pruned``, ``int8``), for the compression report."""

    pruned: ModelEntry | None = None
    onnx: dict[str, Any] | None = None
    models: dict[str, Any] = field(default_factory=dict)


def plan_compression(cfg: DictConfig) -> CompressionPlan:
    """Build and check the compression keys before anything trains."""
    pruning = build(cfg.pruning, "pruning") if cfg.get("pruning") else None
    if pruning is not None and not isinstance(pruning, (PruningStep, GradualPruning)):
        raise ConfigError("pruning", cfg.pruning.get("_target_"), "must build a pruning step or GradualPruning")
    quantize = check_choice("compression.quantize", cfg.compression.quantize, ("none", "int8"))
    onnx = check_choice("compression.onnx", cfg.compression.onnx, (True, False))
    hf = check_choice("compression.hf", cfg.compression.hf, (True, False))
    if cfg.stage not in ("all", "distill") and (pruning is not None or quantize != "none" or onnx):
        raise ConfigError(
            "stage",
            cfg.stage,
            "pruning, compression.quantize and compression.onnx need a student: use stage=all or distill",
        )
    return CompressionPlan(pruning, quantize, onnx, hf)


def compress(
    plan: CompressionPlan,
    cfg: DictConfig,
    datamodule: TensorDataModule,
    student: TransformerClassifier,
    teacher: TransformerClassifier | None,
    recover: Callable[[TransformerClassifier, int], dict[str, float]],
    test: Callable[[TransformerClassifier], dict[str, float]],
) -> Compressed:
    """Run the plan on the trained student (or teacher, for ``pruning.target=teacher``).

    ``recover(model, epochs)`` distills a pruned student for a few epochs and returns its
    test metrics; ``test(model)`` tests a model.
    """
    done = Compressed()
    models = done.models
    final = student
    if plan.gradual is not None:
        plan.gradual.finalize(student)
    step = plan.step
    if step is not None:
        source = teacher if step.target == "teacher" else student
        if source is None:
            raise ConfigError("pruning.target", step.target, "no such model in this run")
        pruned = copy.deepcopy(source)
        report = step(pruned, datamodule.eval_loader("val"))
        log.info("pruned the %s: %s", step.target, report)
        if step.recovery_epochs and step.target == "student":
            result = recover(pruned, step.recovery_epochs)
        else:
            result = test(pruned)
        make_permanent(pruned)
        done.pruned = {
            "params": count_parameters(pruned),
            "nonzero_params": count_nonzero(pruned),
            "test": result,
            "pruning": report,
            "target": step.target,
        }
        models["pruned"] = pruned
        if step.target == "student":
            final = pruned
    if plan.quantize == "int8":
        models["int8"] = quantize_int8(final)
    if plan.onnx:
        path = export_onnx(final, example_inputs(datamodule, 2), Path(cfg.paths.output_dir) / "student.onnx")
        done.onnx = {"path": str(path), **onnx_agreement(path, final, datamodule.eval_loader("test"))}
        log.info("exported %s: top-1 agreement with PyTorch %.4f", path, done.onnx["top1_agreement"])
    return done


def compression_report(
    cfg: DictConfig,
    models: dict[str, Any],
    datamodule: TensorDataModule,
    reference_acc: float | None,
    own_data: dict[str, TensorDataModule] | None = None,
) -> dict[str, dict[str, Any]]:
    """One row per model, in pipeline order, also sent to TensorBoard as ``compression/<model>/<figure>``.

    ``own_data`` measures a model on other data than ``datamodule`` (a per-domain teacher on its domain).
    """
    own_data = own_data or {}
    rows = {
        name: compression_row(name, model, own_data.get(name, datamodule), reference_acc)
        for name, model in models.items()
    }
    for row in rows.values():
        row.pop("name")
    add_speedups(rows, next(iter(rows)))  # relative to the first row: the teacher, in pipeline order
    return rows
